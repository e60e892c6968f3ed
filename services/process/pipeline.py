"""The journey of one event, as a list of named steps (the shape of Plausible's
`ingestion/event.ex`). Each step enriches the event or drops it with a `DropReason`; the runner
stops at the first drop and times every step. Reading `STEPS` tells you the product.

Steps that need the database (sites, salts) read what `Batch.prepare` loaded for the whole
delivery; the session step and the write happen in `store.py`, inside one transaction.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from urllib.parse import urlsplit

import asyncpg

from process import geo, user_agents
from process.drops import DropReason
from process.referrers import NO_UTM, Acquisition, Utm, acquisition, utm_tags
from process.site_directory import SiteConfig, SiteDirectory
from process.visitors import Salts, session_key, tab_session_keys, visitor_hash
from topup.tiers import Tier
from topup.wire import IngestedEvent, PropValue

_SPAM_REFERRERS = frozenset(
    {
        "semalt.com", "buttons-for-website.com", "darodar.com", "best-seo-offer.com",
        "ilovevitaly.com", "priceg.com", "hulfingtonpost.com", "free-social-buttons.com",
        "get-free-traffic-now.com", "trafficmonetize.org", "event-tracking.com", "4webmasters.org",
    }
)  # fmt: skip


@dataclass(slots=True)
class Work:
    """One event on its way through the steps: what arrived, and what the steps added."""

    raw: IngestedEvent
    site: SiteConfig | None = None
    hostname: str = ""
    pathname: str = ""
    agent: user_agents.Agent | None = None
    location: geo.Location = geo.NOWHERE
    utm: Utm = NO_UTM
    acquisition: Acquisition | None = None
    visitor_id: int | None = None
    session_id: int = 0
    continued_session: int | None = None  # the tab's session key had it begun the day before
    distinct_id: str | None = None
    props: dict[str, PropValue] | None = None
    screen: str | None = None
    device: str | None = None

    @property
    def day(self) -> date:
        return self.raw.received_at.date()


@dataclass(slots=True)
class Batch:
    """What the steps share for one delivery: the sites and salts it needs, loaded once."""

    sites: SiteDirectory
    salts: Salts
    salt_by_day: dict[date, bytes] = field(default_factory=dict)
    # A visitor's and a tab's events share their hashes: each is made once per delivery (and
    # forgotten with it, so no address outlives the delivery in memory either).
    visitor_ids: dict[tuple[uuid.UUID, str, str, date], int] = field(default_factory=dict)
    session_keys: dict[tuple[uuid.UUID, str, date], tuple[int, int]] = field(default_factory=dict)

    def visitor_id(self, site_id: uuid.UUID, ip: str, user_agent: str, day: date) -> int:
        key = (site_id, ip, user_agent, day)
        found = self.visitor_ids.get(key)
        if found is None:
            found = self.visitor_ids[key] = visitor_hash(
                self.salt_by_day[day], site_id, ip, user_agent
            )
        return found

    def tab_session(self, site_id: uuid.UUID, tab: str, day: date) -> tuple[int, int]:
        """(the key of a tab's session begun on `day`, of one begun the day before)."""
        key = (site_id, tab, day)
        found = self.session_keys.get(key)
        if found is None:
            found = self.session_keys[key] = tab_session_keys(site_id, tab, day)
        return found

    async def prepare(self, conn: asyncpg.Connection, events: list[IngestedEvent]) -> None:
        await self.sites.load(
            conn,
            {e.site_id for e in events if e.site_id is not None},
            {_plausible_domain(e.domain) for e in events if e.site_id is None and e.domain},
        )
        for day in {e.received_at.date() for e in events}:
            self.salt_by_day[day] = await self.salts.for_day(conn, day)


def _plausible_domain(domain: str) -> str:
    # Plausible's `d` may name several sites ("a.com,b.com"); the first one owns the event.
    return domain.split(",", 1)[0].strip().lower().removeprefix("www.")


# -- the steps, in order ------------------------------------------------------------------


def resolve_site(work: Work, batch: Batch) -> DropReason | None:
    raw = work.raw
    if raw.site_id is not None:
        work.site = batch.sites.by_id(raw.site_id)
    elif raw.domain:
        work.site = batch.sites.by_domain(_plausible_domain(raw.domain))
    return DropReason.UNKNOWN_SITE if work.site is None else None


def check_allowance(work: Work, batch: Batch) -> DropReason | None:
    # A quick check against the cached allowance; the exact grant is made when writing.
    assert work.site is not None
    return DropReason.OVER_ALLOWANCE if work.site.allowance_remaining <= 0 else None


@lru_cache(maxsize=20_000)
def _page(url: str, hash_mode: bool) -> tuple[str, str]:
    """(host without www., path) of a page URL; pages repeat, so parse each once."""
    page = urlsplit(url)
    path = page.path or "/"
    if hash_mode and page.fragment:
        path += "#" + page.fragment
    return (page.hostname or "").lower().removeprefix("www."), path


@lru_cache(maxsize=4096)
def _on_domains(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == domain or host.endswith("." + domain) for domain in domains)


@lru_cache(maxsize=4096)
def _is_spam(referrer: str) -> bool:
    host = (urlsplit(referrer).hostname or "").lower().removeprefix("www.")
    return host in _SPAM_REFERRERS


def check_hostname(work: Work, batch: Batch) -> DropReason | None:
    """The page must be on one of the site's domains or their subdomains; `www.` is ignored."""
    assert work.site is not None
    work.hostname, work.pathname = _page(work.raw.url, work.raw.hash_mode)
    if _on_domains(work.hostname, tuple(work.site.domains)):
        return None
    return DropReason.HOSTNAME_NOT_ALLOWED


def drop_bots(work: Work, batch: Batch) -> DropReason | None:
    work.agent = user_agents.classify(work.raw.context.user_agent)
    if work.agent.is_bot:
        return DropReason.BOT
    if work.raw.referrer and _is_spam(work.raw.referrer):
        return DropReason.BOT
    return None


def put_geolocation(work: Work, batch: Batch) -> None:
    assert work.site is not None
    may_use_ip = work.site.tier is not Tier.BANNER_FREE
    work.location = geo.locate(work.raw.context, may_use_ip=may_use_ip)


def put_user_agent(work: Work, batch: Batch) -> None:
    raw = work.raw
    if raw.screen_width:
        work.device = user_agents.device_from_screen(raw.screen_width)
        if raw.screen_height:
            work.screen = f"{raw.screen_width}x{raw.screen_height}"
    elif work.agent is not None:
        work.device = work.agent.device


def put_utm_tags(work: Work, batch: Batch) -> None:
    work.utm = utm_tags(work.raw.url)


def put_referrer(work: Work, batch: Batch) -> None:
    assert work.site is not None
    work.acquisition = acquisition(work.hostname, work.raw.referrer, work.utm, work.site.domains)


def put_visitor_id(work: Work, batch: Batch) -> None:
    """banner_free: none (the session is the visitor); privacy_policy and full: the daily
    keyed hash; full also keeps the consented `distinct_id`. Then the session key."""
    assert work.site is not None
    raw, site, day = work.raw, work.site, work.day
    if site.tier is not Tier.BANNER_FREE and raw.context.ip and raw.context.user_agent:
        work.visitor_id = batch.visitor_id(site.id, raw.context.ip, raw.context.user_agent, day)
    if site.tier is Tier.FULL:
        work.distinct_id = raw.distinct_id
    if raw.session_id:
        # A session's key names the UTC day it began: the event continues yesterday's session
        # if there is one (store.py decides), else it is today's. So a key never spans more
        # than two days, and a tab id used again later is a new visit.
        work.session_id, work.continued_session = batch.tab_session(site.id, raw.session_id, day)
    elif work.visitor_id is not None:
        # Plausible-format senders have no tab session: a visitor's day is one visit.
        work.session_id = session_key(site.id, f"visitor:{work.visitor_id}:{day}")
    else:
        # Nothing links events without a session id or a hash: each is its own visit.
        work.session_id = session_key(site.id, f"event:{raw.event_id}")


def apply_tier(work: Work, batch: Batch) -> None:
    """Forget whatever the site's tier (narrowed by its allowed_fields) does not keep."""
    assert work.site is not None
    kept = work.site.kept
    work.props = work.raw.props if "props" in kept else None
    if "visitor_id" not in kept:
        work.visitor_id = None
    if "distinct_id" not in kept:
        work.distinct_id = None
    if "screen" not in kept:
        work.screen = None


Step = Callable[[Work, Batch], DropReason | None]

STEPS: list[Step] = [
    resolve_site,
    check_allowance,
    check_hostname,
    drop_bots,
    put_geolocation,
    put_user_agent,
    put_utm_tags,
    put_referrer,
    put_visitor_id,
    apply_tier,
]  # then, in store.py: the session (first event → initial_events) and the write


class StepTimes:
    """Nanoseconds spent in each step over a delivery (exported as span attributes)."""

    def __init__(self) -> None:
        self.ns = dict.fromkeys((s.__name__ for s in STEPS), 0)

    def as_attributes(self) -> dict[str, int]:
        return {f"topup.step.{name}_ns": ns for name, ns in self.ns.items()}


def run(
    works: list[Work], batch: Batch, times: StepTimes
) -> tuple[list[Work], list[tuple[Work, DropReason]]]:
    """Pass a delivery's events through the steps; an event's first drop ends its journey.

    Each step runs over every event still on its way before the next step starts: the same
    order for each event, but timed once per step rather than once per event and step.
    """
    dropped: list[tuple[Work, DropReason]] = []
    for step in STEPS:
        started = time.perf_counter_ns()
        alive = []
        for work in works:
            reason = step(work, batch)
            if reason is None:
                alive.append(work)
            else:
                dropped.append((work, reason))
        works = alive
        times.ns[step.__name__] += time.perf_counter_ns() - started
    return works, dropped
