"""Referrer → source name and acquisition channel.

Source: `utm_source` (or Plausible's `ref` / `source` query parameters) when the page URL has
one, else the referrer's registrable domain (tldextract, offline with its bundled suffix list),
named from `SOURCES` when known (`google.com` → Google). A referrer on the site itself (the
page's registrable domain, or one of the site's domains) is internal navigation, not a source.

Channel, first rule that matches:
1. `utm_medium` is paid (GA4's `^(.*cp.*|ppc|retargeting|paid.*)$`) and the source is a search
   engine, social network or video site: Paid Search, Paid Social or Paid Video.
2. `utm_medium` is display, banner, cpm, interstitial: Display; any other paid medium: Paid Other.
3. `utm_medium` is affiliate: Affiliates.
4. `utm_medium` is email/e-mail/newsletter, or the source is a mail client: Email.
5. The source is a search engine: Organic Search; a social network: Organic Social; a video
   site: Organic Video.
6. `utm_medium` is social/social-network/sm: Organic Social.
7. Any other source: Referral.
8. No source: Direct.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

import msgspec
import tldextract

_extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

SEARCH, SOCIAL, VIDEO, EMAIL, OTHER = "search", "social", "video", "email", "other"

# registrable domain (or host) → (source name, category)
SOURCES: dict[str, tuple[str, str]] = {
    "google": ("Google", SEARCH), "bing.com": ("Bing", SEARCH),
    "duckduckgo.com": ("DuckDuckGo", SEARCH), "yahoo": ("Yahoo!", SEARCH),
    "baidu.com": ("Baidu", SEARCH), "yandex": ("Yandex", SEARCH),
    "ecosia.org": ("Ecosia", SEARCH), "search.brave.com": ("Brave Search", SEARCH),
    "startpage.com": ("Startpage", SEARCH), "qwant.com": ("Qwant", SEARCH),
    "naver.com": ("Naver", SEARCH), "kagi.com": ("Kagi", SEARCH),
    "perplexity.ai": ("Perplexity", SEARCH), "chatgpt.com": ("ChatGPT", OTHER),
    "facebook.com": ("Facebook", SOCIAL), "fb.com": ("Facebook", SOCIAL),
    "instagram.com": ("Instagram", SOCIAL), "t.co": ("Twitter", SOCIAL),
    "twitter.com": ("Twitter", SOCIAL), "x.com": ("Twitter", SOCIAL),
    "linkedin.com": ("LinkedIn", SOCIAL), "lnkd.in": ("LinkedIn", SOCIAL),
    "reddit.com": ("Reddit", SOCIAL), "pinterest": ("Pinterest", SOCIAL),
    "tiktok.com": ("TikTok", SOCIAL), "threads.net": ("Threads", SOCIAL),
    "bsky.app": ("Bluesky", SOCIAL), "mastodon.social": ("Mastodon", SOCIAL),
    "news.ycombinator.com": ("Hacker News", SOCIAL), "vk.com": ("VKontakte", SOCIAL),
    "youtube.com": ("YouTube", VIDEO), "youtu.be": ("YouTube", VIDEO),
    "vimeo.com": ("Vimeo", VIDEO), "twitch.tv": ("Twitch", VIDEO),
    "mail.google.com": ("Gmail", EMAIL), "outlook.live.com": ("Outlook.com", EMAIL),
    "mail.yahoo.com": ("Yahoo! Mail", EMAIL), "github.com": ("GitHub", OTHER),
}  # fmt: skip
# utm_source values people actually type, mapped onto the same names.
_UTM_SOURCES = {
    "fb": "facebook.com", "ig": "instagram.com", "twitter": "twitter.com", "x": "x.com",
    "hn": "news.ycombinator.com", "hackernews": "news.ycombinator.com",
}  # fmt: skip
_BY_NAME = {name.lower(): (name, category) for name, category in SOURCES.values()}

_PAID = re.compile(r"^(.*cp.*|ppc|retargeting|paid.*)$")
_DISPLAY = frozenset({"display", "banner", "cpm", "interstitial", "expandable"})
_EMAIL = frozenset({"email", "e-mail", "e_mail", "e mail", "newsletter"})
_SOCIAL_MEDIUM = frozenset({"social", "social-network", "social-media", "sm", "social network"})


class Utm(msgspec.Struct, frozen=True):
    source: str | None = None
    medium: str | None = None
    campaign: str | None = None
    content: str | None = None
    term: str | None = None
    # Plausible's `ref` / `source` query parameters: a source when there is no utm_source.
    ref: str | None = None


NO_UTM = Utm()


class Acquisition(msgspec.Struct, frozen=True):
    referrer: str | None  # origin + path
    full_referrer: str | None
    source: str | None
    channel: str


@lru_cache(maxsize=8192)
def registrable_domain(host: str) -> str:
    parts = _extract(host)
    return parts.top_domain_under_public_suffix or host


@lru_cache(maxsize=4096)
def _known(host: str) -> tuple[str, str] | None:
    host = host.lower().removeprefix("www.").removeprefix("m.")
    if host in SOURCES:
        return SOURCES[host]
    domain = registrable_domain(host)
    if domain in SOURCES:
        return SOURCES[domain]
    label = _extract(host).domain  # google.de, yandex.ru, …
    return SOURCES.get(label)


def _utm(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    value = values[0].strip() if values else ""
    return value[:300] or None


def source_for_utm(value: str) -> tuple[str, str]:
    lowered = value.lower()
    if lowered in _BY_NAME:
        return _BY_NAME[lowered]
    known = _known(_UTM_SOURCES.get(lowered, lowered))
    return known if known is not None else (value, OTHER)


def channel(source: str | None, category: str, medium: str | None) -> str:
    medium = (medium or "").lower()
    paid = {SEARCH: "Paid Search", SOCIAL: "Paid Social", VIDEO: "Paid Video"}
    if _PAID.match(medium) and category in paid:
        return paid[category]
    if medium in _DISPLAY:
        return "Display"
    if _PAID.match(medium):
        return "Paid Other"
    if medium == "affiliate":
        return "Affiliates"
    if medium in _EMAIL or category == EMAIL:
        return "Email"
    if category in (SEARCH, SOCIAL, VIDEO):
        return {SEARCH: "Organic Search", SOCIAL: "Organic Social", VIDEO: "Organic Video"}[
            category
        ]
    if medium in _SOCIAL_MEDIUM:
        return "Organic Social"
    return "Direct" if source is None else "Referral"


def utm_tags(page_url: str) -> Utm:
    """The campaign tags in a page URL's query."""
    if "?" not in page_url:
        return NO_UTM
    query = parse_qs(urlsplit(page_url).query)
    return Utm(
        source=_utm(query, "utm_source"),
        medium=_utm(query, "utm_medium"),
        campaign=_utm(query, "utm_campaign"),
        content=_utm(query, "utm_content"),
        term=_utm(query, "utm_term"),
        ref=_utm(query, "ref") or _utm(query, "source"),
    )


def _external_referrer(
    page_host: str, referrer: str | None, site_domains: list[str]
) -> tuple[str, str] | None:
    """(host, origin + path) of a referrer from outside the site, else None."""
    if not referrer:
        return None
    try:
        ref = urlsplit(referrer)
    except ValueError:
        return None
    if ref.scheme not in ("http", "https", "android-app") or not ref.hostname:
        return None
    host = ref.hostname.lower()
    internal = registrable_domain(host) == registrable_domain(page_host) or any(
        host == d or host.endswith("." + d) for d in site_domains
    )
    return None if internal else (host, f"{ref.scheme}://{host}{ref.path or '/'}")


def acquisition(
    page_host: str, referrer: str | None, utm: Utm, site_domains: list[str]
) -> Acquisition:
    """Where the visit came from: its source and channel, from the tags and the referrer."""
    return _acquisition(page_host, referrer, utm.source or utm.ref, utm.medium, tuple(site_domains))


@lru_cache(maxsize=20_000)
def _acquisition(
    page_host: str, referrer: str | None, tagged: str | None, medium: str | None,
    site_domains: tuple[str, ...],
) -> Acquisition:  # fmt: skip
    # Cached: referrers and campaign tags repeat heavily in real traffic.
    external = _external_referrer(page_host, referrer, list(site_domains))
    if tagged:
        source, category = source_for_utm(tagged)
    elif external:
        known = _known(external[0])
        source, category = known if known else (registrable_domain(external[0]), OTHER)
    else:
        source, category = None, OTHER
    return Acquisition(
        referrer=external[1] if external else None,
        full_referrer=referrer if external else None,
        source=source,
        channel=channel(source, category, medium),
    )
