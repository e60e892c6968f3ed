"""Realistic visitor traffic, for the load test, the benchmarks and generated test data.

The mixes below (browsers, referrers, countries, pages) are shipped with the repository so every
run is offline and reproducible: `Visitor(seed)` always makes the same visit.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

USER_AGENTS = [
    (30, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.92 Safari/537.36", (1920, 1080)),
    (18, "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", (390, 844)),
    (14, "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.86 Mobile Safari/537.36", (412, 915)),
    (12, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15", (1440, 900)),
    (8, "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0", (1536, 864)),
    (6, "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.68", (1366, 768)),
    (5, "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", (820, 1180)),
    (4, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", (2560, 1440)),
    (3, "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36", (384, 854)),
]  # fmt: skip
BOT_AGENTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/130.0.0.0 Safari/537.36",
]  # fmt: skip
REFERRERS = [
    (40, None),
    (25, "https://www.google.com/"),
    (5, "https://www.bing.com/"),
    (4, "https://duckduckgo.com/"),
    (6, "https://t.co/x8Yz2"),
    (4, "https://www.reddit.com/r/analytics/comments/abc/"),
    (3, "https://news.ycombinator.com/item?id=42424242"),
    (3, "https://www.linkedin.com/feed/"),
    (2, "https://www.youtube.com/watch?v=dQw4w9WgXcQ"),
    (4, "https://blog.example.org/2026/11/privacy-first-analytics"),
]  # fmt: skip
UTMS = [
    (85, ""),
    (5, "utm_source=newsletter&utm_medium=email&utm_campaign=november"),
    (4, "utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=analytics"),
    (3, "utm_source=facebook&utm_medium=paid_social&utm_campaign=launch"),
    (3, "ref=producthunt"),
]  # fmt: skip
COUNTRIES = [
    (30, ("US", "CA", "San Francisco", "America/Los_Angeles")),
    (12, ("DE", "BE", "Berlin", "Europe/Berlin")),
    (10, ("GB", "ENG", "London", "Europe/London")),
    (8, ("FR", "IDF", "Paris", "Europe/Paris")),
    (8, ("IN", "KA", "Bengaluru", "Asia/Kolkata")),
    (6, ("BR", "SP", "S%C3%A3o%20Paulo", "America/Sao_Paulo")),
    (6, ("JP", "13", "Tokyo", "Asia/Tokyo")),
    (5, ("NL", "NH", "Amsterdam", "Europe/Amsterdam")),
    (5, ("AU", "NSW", "Sydney", "Australia/Sydney")),
    (10, ("CA", "ON", "Toronto", "America/Toronto")),
]  # fmt: skip
PAGES = [
    (30, "/"), (12, "/pricing"), (10, "/docs"), (8, "/docs/install"), (6, "/docs/api"),
    (8, "/blog"), (5, "/blog/privacy-first-analytics"), (4, "/blog/ten-dollars-per-million"),
    (5, "/about"), (4, "/signup"), (4, "/login"), (2, "/careers"), (2, "/contact"),
]  # fmt: skip
CUSTOM_EVENTS = [
    (6, "Signup", {"plan": ["free", "pro", "team"]}),
    (4, "Download", {"file": ["guide.pdf", "report.pdf"]}),
    (3, "Outbound Link: Click", {"url": ["https://github.com/topup", "https://twitter.com/topup"]}),
]  # fmt: skip


def pick(rng: random.Random, weighted: list) -> object:
    weights = [item[0] for item in weighted]
    chosen = rng.choices(weighted, weights=weights)[0]
    return chosen[1] if len(chosen) == 2 else chosen[1:]


@dataclass
class Hit:
    """One event as the tracker would send it, with the request context it would arrive with."""

    name: str
    url: str
    referrer: str | None
    session: str
    props: dict[str, str] | None
    user_agent: str
    screen: tuple[int, int]
    ip: str
    geo: tuple[str, str, str, str]


def visit(rng: random.Random, host: str, visit_no: int) -> Iterator[Hit]:
    """A session: a landing page, a few more pages, sometimes a custom event."""
    ua, screen = pick(rng, USER_AGENTS)  # type: ignore[misc]
    referrer = pick(rng, REFERRERS)
    utm = pick(rng, UTMS)
    geo = pick(rng, COUNTRIES)
    ip = f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    session = f"s{visit_no:x}{rng.getrandbits(32):08x}"
    pages = 1 if rng.random() < 0.45 else rng.randint(2, 8)  # ~45% bounce
    for n in range(pages):
        path = pick(rng, PAGES)
        query = f"?{utm}" if n == 0 and utm else ""
        yield Hit(
            "pageview",
            f"https://{host}{path}{query}",
            referrer if n == 0 else None,
            session,
            None,
            ua,
            screen,
            ip,
            geo,
        )  # type: ignore[arg-type]
        if rng.random() < 0.08:
            name, props = pick(rng, CUSTOM_EVENTS)  # type: ignore[misc]
            chosen = {key: rng.choice(values) for key, values in props.items()}
            yield Hit(name, f"https://{host}{path}", None, session, chosen, ua, screen, ip, geo)  # type: ignore[arg-type]


def hits(seed: int, host: str, visits: int) -> Iterator[Hit]:
    rng = random.Random(seed)
    for number in range(visits):
        yield from visit(rng, host, number)
