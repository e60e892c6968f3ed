"""The stored shape of an event: one row for `events`, and for a session's first event one row
for `initial_events`. The same rows go to Postgres and to the archive."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

import msgspec

from process.pipeline import Work
from topup.utc import hour_of


class EventRow(msgspec.Struct, array_like=True, frozen=True):
    event_id: uuid.UUID
    site_id: uuid.UUID
    ts: datetime
    session_id: int
    visitor_id: int | None
    name: str
    hostname: str
    pathname: str
    props: dict[str, Any] | None


class InitialRow(msgspec.Struct, array_like=True, frozen=True):
    event_id: uuid.UUID
    site_id: uuid.UUID
    ts: datetime
    session_id: int
    visitor_id: int | None
    distinct_id: str | None
    hostname: str
    entry_page: str
    referrer: str | None
    referrer_source: str | None
    channel: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_content: str | None
    utm_term: str | None
    country: str | None
    region: str | None
    city: str | None
    timezone: str | None
    device: str | None
    browser: str | None
    browser_version: str | None
    os: str | None
    os_version: str | None
    screen: str | None
    device_model: str | None
    device_manufacturer: str | None


def event_row(work: Work) -> EventRow:
    assert work.site is not None
    return EventRow(
        work.raw.event_id, work.site.id, work.raw.received_at, work.session_id, work.visitor_id,
        work.raw.name, work.hostname, work.pathname, work.props,
    )  # fmt: skip


def _major(version: str | None) -> str | None:
    return None if version is None else version.split(".", 1)[0]


# The attributes of `InitialRow` a tier may not keep (DESIGN.md's tier table; `topup.tiers`).
_BY_TIER = frozenset(
    {
        "referrer_source", "channel", "utm_source", "utm_medium", "utm_campaign", "utm_content",
        "utm_term", "country", "region", "city", "timezone", "device", "browser",
        "browser_version", "os", "os_version", "device_model", "device_manufacturer",
    }
)  # fmt: skip


@lru_cache(maxsize=64)
def _not_kept(kept: frozenset[str]) -> tuple[int, ...]:
    """The positions in `InitialRow` of the attributes a site keeping `kept` does not keep."""
    return tuple(
        i
        for i, name in enumerate(InitialRow.__struct_fields__)
        if name in _BY_TIER and name not in kept
    )


def initial_row(work: Work) -> InitialRow:
    """The session's attributes, each kept only if the site's tier keeps it."""
    assert work.site is not None and work.acquisition is not None and work.agent is not None
    kept, acq, agent, where, utm = (
        work.site.kept,
        work.acquisition,
        work.agent,
        work.location,
        work.utm,
    )
    full_versions = "full_versions" in kept
    if "full_referrer" in kept:
        referrer = acq.full_referrer
    else:
        referrer = acq.referrer if "referrer" in kept else None
    row: list[Any] = [
        work.raw.event_id, work.site.id, work.raw.received_at, work.session_id, work.visitor_id,
        work.distinct_id, work.hostname, work.pathname, referrer, acq.source, acq.channel,
        utm.source, utm.medium, utm.campaign, utm.content, utm.term,
        where.country, where.region, where.city, where.timezone, work.device,
        agent.browser,
        agent.browser_version if full_versions else _major(agent.browser_version),
        agent.os,
        agent.os_version if full_versions else _major(agent.os_version),
        work.screen, agent.device_model, agent.device_manufacturer,
    ]  # fmt: skip
    for position in _not_kept(kept):  # per event: far cheaper than asking per attribute
        row[position] = None
    return InitialRow(*row)


def visitor_key(event: EventRow) -> int:
    """Who an event counts for: its visitor id, or its session where the tier keeps none."""
    return event.session_id if event.visitor_id is None else event.visitor_id


def utc_hour(event: EventRow) -> datetime:
    """The UTC hour an event falls in (what the summaries and the rate limit are kept by)."""
    return hour_of(event.ts)


def as_tuple(row: EventRow | InitialRow) -> tuple[Any, ...]:
    return msgspec.structs.astuple(row)
