"""The pipeline's steps with realistic inputs: real User-Agent strings, real referrers, headers as
CloudFront sends them."""

import uuid
from datetime import date

import pytest

from process import geo, user_agents
from process.referrers import acquisition, utm_tags
from process.visitors import session_key, tab_session_keys, visitor_hash
from tests.fixtures import (
    CHROME_MAC,
    FIREFOX_WINDOWS,
    GOOGLEBOT,
    HEADLESS,
    SAFARI_IPHONE,
    SAMSUNG_TABLET,
)
from topup.wire import RequestContext


@pytest.mark.parametrize(
    ("ua", "bot", "browser", "version", "os", "device"),
    [
        (CHROME_MAC, False, "Chrome", "130.0.6723", "Mac OS X", "Desktop"),
        (SAFARI_IPHONE, False, "Mobile Safari", "17.4", "iOS", "Mobile"),
        (FIREFOX_WINDOWS, False, "Firefox", "132.0", "Windows", "Desktop"),
        (SAMSUNG_TABLET, False, "Chrome", "130.0.6723", "Android", "Tablet"),
        (GOOGLEBOT, True, "Googlebot", "2.1", None, "Desktop"),
        (HEADLESS, True, "HeadlessChrome", "130.0.0", "Linux", "Desktop"),
        ("curl/8.5.0", True, "curl", "8.5.0", None, "Desktop"),
        ("python-requests/2.32.3", True, "Python Requests", "2.32", None, "Desktop"),
        ("", True, None, None, None, None),
    ],
)
def test_user_agents(ua, bot, browser, version, os, device):
    agent = user_agents.classify(ua)
    assert agent.is_bot is bot
    if not bot:
        assert (agent.browser, agent.browser_version, agent.os, agent.device) == (
            browser,
            version,
            os,
            device,
        )


def test_iphone_model_and_maker():
    agent = user_agents.classify(SAFARI_IPHONE)
    assert (agent.device_model, agent.device_manufacturer) == ("iPhone", "Apple")


@pytest.mark.parametrize(
    ("width", "device"), [(390, "Mobile"), (820, "Tablet"), (1280, "Laptop"), (1920, "Desktop")]
)
def test_screen_classes(width, device):
    assert user_agents.device_from_screen(width) == device


@pytest.mark.parametrize(
    ("page", "referrer", "source", "channel", "stored_referrer"),
    [
        (
            "https://example.com/",
            "https://www.google.com/",
            "Google",
            "Organic Search",
            "https://www.google.com/",
        ),
        (
            "https://example.com/",
            "https://www.google.co.uk/search?q=analytics",
            "Google",
            "Organic Search",
            "https://www.google.co.uk/search",
        ),
        (
            "https://example.com/",
            "https://duckduckgo.com/",
            "DuckDuckGo",
            "Organic Search",
            "https://duckduckgo.com/",
        ),
        (
            "https://example.com/",
            "https://t.co/abc123",
            "Twitter",
            "Organic Social",
            "https://t.co/abc123",
        ),
        (
            "https://example.com/",
            "https://l.facebook.com/l.php?u=x",
            "Facebook",
            "Organic Social",
            "https://l.facebook.com/l.php",
        ),
        (
            "https://example.com/",
            "https://news.ycombinator.com/item?id=42",
            "Hacker News",
            "Organic Social",
            "https://news.ycombinator.com/item",
        ),
        (
            "https://example.com/",
            "https://www.youtube.com/watch?v=x",
            "YouTube",
            "Organic Video",
            "https://www.youtube.com/watch",
        ),
        (
            "https://example.com/",
            "https://blog.someone.co.uk/post/1?ref=x",
            "someone.co.uk",
            "Referral",
            "https://blog.someone.co.uk/post/1",
        ),
        ("https://example.com/", None, None, "Direct", None),
        ("https://example.com/b", "https://example.com/a", None, "Direct", None),  # internal
        (
            "https://shop.example.com/",
            "https://www.example.com/",
            None,
            "Direct",
            None,
        ),  # same site
        (
            "https://example.com/?utm_source=google&utm_medium=cpc",
            "https://www.google.com/",
            "Google",
            "Paid Search",
            "https://www.google.com/",
        ),
        (
            "https://example.com/?utm_source=fb&utm_medium=paid_social",
            None,
            "Facebook",
            "Paid Social",
            None,
        ),
        ("https://example.com/?utm_source=weekly&utm_medium=email", None, "weekly", "Email", None),
        (
            "https://example.com/?utm_source=partner&utm_medium=affiliate",
            None,
            "partner",
            "Affiliates",
            None,
        ),
        ("https://example.com/?utm_source=adnet&utm_medium=cpm", None, "adnet", "Display", None),
        ("https://example.com/?ref=producthunt", None, "producthunt", "Referral", None),
        (
            "https://example.com/",
            "https://mail.google.com/",
            "Gmail",
            "Email",
            "https://mail.google.com/",
        ),
    ],
)
def test_referrer_sources_and_channels(page, referrer, source, channel, stored_referrer):
    from urllib.parse import urlsplit

    host = urlsplit(page).hostname.removeprefix("www.")
    result = acquisition(host, referrer, utm_tags(page), ["example.com"])
    assert (result.source, result.channel, result.referrer) == (source, channel, stored_referrer)


def test_utm_tags():
    tags = utm_tags(
        "https://e.com/?utm_source=news&utm_medium=email&utm_campaign=launch&utm_content=a&utm_term=b"
    )
    assert (tags.source, tags.medium, tags.campaign, tags.content, tags.term) == (
        "news",
        "email",
        "launch",
        "a",
        "b",
    )


def test_geo_from_cloudfront_headers():
    context = RequestContext(ip="81.169.145.105", country="de", region="BE", city="S%C3%A3o%20Paulo",
                             timezone="Europe/Berlin")  # fmt: skip
    where = geo.locate(context, may_use_ip=False)
    assert (where.country, where.region, where.city, where.timezone) == (
        "DE",
        "DE-BE",
        "São Paulo",
        "Europe/Berlin",
    )


def test_geo_from_the_address_only_when_the_tier_may_use_it():
    context = RequestContext(ip="81.169.145.105")
    assert geo.locate(context, may_use_ip=True).country == "DE"
    assert geo.locate(context, may_use_ip=False) == geo.NOWHERE
    assert geo.locate(RequestContext(ip="127.0.0.1"), may_use_ip=True).country is None


def test_visitor_hash_depends_on_salt_site_ip_and_agent():
    site, other = uuid.uuid4(), uuid.uuid4()
    salt, tomorrow = b"s" * 32, b"t" * 32
    base = visitor_hash(salt, site, "1.2.3.4", CHROME_MAC)
    assert base == visitor_hash(salt, site, "1.2.3.4", CHROME_MAC)
    assert len({base, visitor_hash(tomorrow, site, "1.2.3.4", CHROME_MAC),
                visitor_hash(salt, other, "1.2.3.4", CHROME_MAC),
                visitor_hash(salt, site, "1.2.3.5", CHROME_MAC),
                visitor_hash(salt, site, "1.2.3.4", FIREFOX_WINDOWS)}) == 5  # fmt: skip
    assert -(2**63) <= base < 2**63
    assert session_key(site, "tab") != session_key(other, "tab")


def test_a_tabs_two_session_keys_are_its_keys_for_the_day_and_the_day_before():
    """Process makes both keys of a tab at once (its hot path); they are the stored keys."""
    site, day = uuid.uuid4(), date(2026, 3, 1)  # the day before is in another month
    for tab in ("tab", "onglet-é-ß-✓"):
        today, yesterday = tab_session_keys(site, tab, day)
        assert today == session_key(site, tab, day)
        assert yesterday == session_key(site, tab, date(2026, 2, 28))
        assert today != yesterday


def test_geo_from_the_operators_maxmind_database(tmp_path):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, database_type="GeoLite2-City", ipv4_compatible=True)
    writer.insert_network(
        IPSet(["81.169.145.0/24"]),
        {"country": {"iso_code": "DE"}, "subdivisions": [{"iso_code": "BE"}],
         "city": {"names": {"en": "Berlin", "de": "Berlin"}}, "location": {"time_zone": "Europe/Berlin"}},
    )  # fmt: skip
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    try:
        geo.warm_up(str(path))
        where = geo.locate(RequestContext(ip="81.169.145.105"), may_use_ip=True)
        assert (where.country, where.region, where.city, where.timezone) == (
            "DE",
            "DE-BE",
            "Berlin",
            "Europe/Berlin",
        )
        assert geo.locate(RequestContext(ip="8.8.8.8"), may_use_ip=True) == geo.NOWHERE
        assert geo.locate(RequestContext(ip="81.169.145.105"), may_use_ip=False) == geo.NOWHERE
    finally:
        geo._maxmind = None  # back to the bundled country data for the other tests
        geo._lookup.cache_clear()


def test_warm_up_compiles_the_crawler_pattern_before_the_first_delivery(monkeypatch):
    """Its ~30 ms belong in the function's start-up, not in the first delivery."""
    from crawlerdetect import crawlerdetect

    monkeypatch.setattr(user_agents, "_parser", None)
    monkeypatch.setattr(user_agents, "_crawlers", crawlerdetect.CrawlerDetect())
    crawlerdetect.get_compiled_crawler_regex.cache_clear()
    user_agents.warm_up()
    assert crawlerdetect.get_compiled_crawler_regex.cache_info().currsize == 1
