"""Privacy, audited per tier: after a realistic batch, every column of every table, the archive,
the logs and the spans are scanned. The tier's fields must be there and nothing else: no IP
address, no User-Agent string, no client ids, no distinct id outside `full`, no old salt."""

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from process.app import create_app
from tests.conftest import LiveServer
from tests.fixtures import CHROME_MAC, IP_DE, IP_US, SAFARI_IPHONE, deliver, delivery_body, event
from topup import accounts, open_days, sites
from topup.archive_tables import open_tables
from topup.maintenance import maintain, utc_today
from topup.tiers import Tier
from topup.visit_days import midnight

TAB_SESSION = "tab-secret-7f3a9c"
DISTINCT = "distinct-4b1d8e2f"
REFERRER = "https://news.example.org/article/42?utm_id=private-token&q=my+search"
SECRETS = [IP_DE, IP_US, CHROME_MAC, SAFARI_IPHONE, "AppleWebKit/537.36 (KHTML", TAB_SESSION]


@pytest.fixture(scope="module")
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def realistic_batch(site_id):
    berlin = {"country": "DE", "region": "BE", "city": "Berlin", "timezone": "Europe/Berlin"}
    return [
        event(site_id, "https://example.com/pricing?utm_source=news&utm_medium=email&utm_campaign=launch",
              referrer=REFERRER, session=TAB_SESSION, props={"plan": "pro"}, distinct_id=DISTINCT,
              geo=berlin, ua=SAFARI_IPHONE, screen=(390, 844)),
        event(site_id, "https://example.com/signup", name="Signup", session=TAB_SESSION,
              props={"plan": "pro"}, distinct_id=DISTINCT, geo=berlin, ua=SAFARI_IPHONE, screen=(390, 844)),
        event(site_id, "https://example.com/", session="tab-other", ip=IP_US, ua=CHROME_MAC,
              distinct_id=None, geo=None),
    ]  # fmt: skip


async def every_value(db) -> str:
    """Every row of every table (partitions included), as text."""
    tables = await db.fetch(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
    )
    dump = []
    for table in tables:
        rows = await db.fetch(f'SELECT t::text AS row FROM "{table["relname"]}" t')
        dump.extend(r["row"] for r in rows)
    return "\n".join(dump)


def archive_values(data_dir: str) -> tuple[str, list[dict], list[dict]]:
    tables = open_tables(Path(data_dir) / "archive")
    events = tables["events"].scan().to_arrow().to_pylist()
    initials = tables["initial_events"].scan().to_arrow().to_pylist()
    return repr(events) + repr(initials), events, initials


@pytest.mark.parametrize("tier", list(Tier))
async def test_each_tier_stores_its_fields_and_nothing_else(tier, settings, db, caplog, spans):
    caplog.set_level(logging.DEBUG)
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(
        db, account.id, name="x", domains=["example.com"], tier=tier, allowance=100
    )
    server = LiveServer(create_app(settings))
    async with server, server.client() as client:
        answer = await deliver(client, delivery_body([realistic_batch(site.id)]))
        assert answer.status_code == 200
    await maintain(db, retention_days=35)
    if tier is not Tier.FULL:  # the open day's counts, to the batch's end
        upto = midnight(utc_today() + timedelta(days=1))
        assert await open_days.build_open_day(db, site.id, tier, utc_today(), upto)

    stored = await every_value(db)
    archived, archived_events, archived_initials = archive_values(settings.data_dir)
    logs = caplog.text
    finished = spans.get_finished_spans()
    assert any(s.name == "process.delivery" for s in finished)
    span_text = repr([(s.name, dict(s.attributes or {})) for s in finished])
    for place, text in (
        ("postgres", stored),
        ("archive", archived),
        ("logs", logs),
        ("spans", span_text),
    ):
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} found in {place}"
        if tier is not Tier.FULL:
            assert DISTINCT not in text, f"distinct id found in {place} for {tier}"

    first = await db.fetchrow("SELECT * FROM initial_events WHERE entry_page = '/pricing'")
    other = await db.fetchrow("SELECT * FROM initial_events WHERE entry_page = '/'")
    signup = await db.fetchrow("SELECT * FROM events WHERE name = 'Signup'")
    # The basics, in every tier.
    assert (first["country"], first["region"], first["device"], first["browser"], first["os"]) == (
        "DE", "DE-BE", "Mobile", "Mobile Safari", "iOS")  # fmt: skip
    assert (first["utm_source"], first["utm_medium"], first["utm_campaign"], first["channel"]) == (
        "news", "email", "launch", "Email")  # fmt: skip
    assert first["referrer_source"] == "news"
    assert signup["name"] == "Signup" and signup["pathname"] == "/signup"

    if tier is Tier.BANNER_FREE:
        assert first["referrer"] == "https://news.example.org/article/42"
        assert (first["visitor_id"], first["distinct_id"], first["city"], first["timezone"]) == (
            None,
        ) * 4
        assert (first["browser_version"], first["os_version"], first["screen"]) == (None,) * 3
        assert (first["device_model"], first["device_manufacturer"]) == (None, None)
        assert signup["props"] is None and signup["visitor_id"] is None
        assert other["country"] is None  # no CloudFront headers, and no IP use at all
        # the dashboard's session summaries and open days' members hold no visitor hash either
        assert await db.fetchval("SELECT bool_and(visitor = session_id) FROM visit_hours")
        assert await db.fetchval(
            "SELECT bool_and(member IN (SELECT session_id FROM events)) FROM open_day_members"
        )
    elif tier is Tier.PRIVACY_POLICY:
        assert first["referrer"] == "https://news.example.org/article/42"
        assert first["visitor_id"] is not None and first["distinct_id"] is None
        assert (first["city"], first["timezone"], first["screen"]) == (
            "Berlin",
            "Europe/Berlin",
            "390x844",
        )
        assert (first["browser_version"], first["os_version"]) == ("17", "17")  # majors only
        assert (first["device_model"], first["device_manufacturer"]) == (None, None)
        assert signup["props"] == {"plan": "pro"} and signup["visitor_id"] == first["visitor_id"]
        assert other["country"] == "US"  # from the address, which is then forgotten
    else:
        assert first["referrer"] == REFERRER
        assert first["distinct_id"] == DISTINCT and first["visitor_id"] is not None
        assert (first["browser_version"], first["os_version"]) == ("17.4", "17.4")
        assert (first["device_model"], first["device_manufacturer"]) == ("iPhone", "Apple")
        assert signup["props"] == {"plan": "pro"}

    # The archive holds the same fields as Postgres.
    archived_first = next(r for r in archived_initials if r["entry_page"] == "/pricing")
    for column in (
        "visitor_id",
        "distinct_id",
        "city",
        "referrer",
        "browser_version",
        "device_model",
    ):
        assert archived_first[column] == first[column], column
    assert len(archived_events) == 3

    salts = await db.fetch("SELECT day FROM salts")
    assert all(r["day"] >= utc_today() - timedelta(days=1) for r in salts)


async def test_allowed_fields_narrow_the_tier(settings, db):
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(
        db, account.id, name="x", domains=["example.com"], tier=Tier.FULL, allowance=100,
        allowed_fields=["country", "channel", "props"],
    )  # fmt: skip
    server = LiveServer(create_app(settings))
    async with server, server.client() as client:
        assert (await deliver(client, delivery_body([realistic_batch(site.id)]))).status_code == 200
    first = await db.fetchrow("SELECT * FROM initial_events WHERE entry_page = '/pricing'")
    assert first["country"] == "DE" and first["channel"] == "Email"
    kept = {k for k, v in dict(first).items() if v is not None}
    assert kept == {
        "event_id",
        "site_id",
        "ts",
        "session_id",
        "hostname",
        "entry_page",
        "country",
        "channel",
    }
    assert DISTINCT not in await every_value(db)
