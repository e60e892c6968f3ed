"""Keeping `visit_hours` (migration 0004): each session's page views, events, first and last
instant and exit page per UTC hour, and whether the session began on an earlier UTC day (0009),
added to in the delivery's transaction from exactly the events it stored, so the summary always
equals what `topup_rebuild_visit_hours` computes from `events` and `initial_events`."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import date, datetime
from typing import Any

import asyncpg
import msgspec

from process.rows import EventRow, utc_hour, visitor_key
from process.upsert import upsert

Key = tuple[uuid.UUID, datetime, int, int]  # site, hour, session, visitor
Began = dict[tuple[uuid.UUID, int], date]  # (site, session) → the UTC day of its initial row


class HourSummary(msgspec.Struct):
    pageviews: int
    events: int
    first_ts: datetime
    last_ts: datetime
    exit_ts: datetime | None
    exit_page: str | None
    continued: bool  # the session began on an earlier UTC day than this hour


def summarise(
    events: list[EventRow], began: Began, hours: dict[Key, HourSummary] | None = None
) -> dict[Key, HourSummary]:
    """Stored events by their sessions' hours (added to `hours`, which may hold earlier events
    of the same delivery). A session without an initial row counts as begun in the hour's day,
    as in the rebuild. The exit page is the last page view, by instant, then path."""
    hours = {} if hours is None else hours
    for event in events:  # per event: what follows is written for speed
        ts, page = event.ts, event.pathname
        hour = utc_hour(event)
        key = (event.site_id, hour, event.session_id, visitor_key(event))
        summary = hours.get(key)
        if summary is None:
            day = began.get((event.site_id, event.session_id))
            continued = day is not None and day < hour.date()
            summary = hours[key] = HourSummary(0, 0, ts, ts, None, None, continued)
        summary.events += 1
        if ts < summary.first_ts:
            summary.first_ts = ts
        elif ts > summary.last_ts:
            summary.last_ts = ts
        if event.name == "pageview":
            summary.pageviews += 1
            if summary.exit_ts is None or (ts, page) > (summary.exit_ts, summary.exit_page):
                summary.exit_ts, summary.exit_page = ts, page
    return hours


def by_day(hours: dict[Key, HourSummary]) -> Counter[tuple[uuid.UUID, date]]:
    """The events in `hours` by site and UTC day."""
    days: Counter[tuple[uuid.UUID, date]] = Counter()
    for (site, hour, _, _), summary in hours.items():
        days[site, hour.date()] += summary.events
    return days


COLUMNS = (
    "site_id", "hour", "session_id", "visitor", "pageviews", "events", "first_ts", "last_ts",
    "exit_ts", "exit_page", "continued",
)  # fmt: skip


class Rows(msgspec.Struct):
    """A delivery's hours as they are written: the new sessions' rows (COPY), and the rest's
    additions (insert-or-update), keyed by the primary key."""

    new: list[tuple[Any, ...]]
    added: dict[Key, tuple[Any, ...]]


def rows(hours: dict[Key, HourSummary], begun: set[tuple[uuid.UUID, int]] | None) -> Rows:
    """`begun`: the sessions that began in this delivery (their initial rows are new), whose
    hours cannot be stored yet, so they are copied in (a bulk insert costs the server far less
    than an insert-or-update); a session key names the UTC day it began, so no older row shares
    it. Should one be stored after all, the COPY fails on the key and the delivery is written
    again the careful way, without `begun`."""
    out = Rows([], {})
    for key, hour in hours.items():
        values = msgspec.structs.astuple(hour)
        if begun is not None and (key[0], key[2]) in begun:
            out.new.append(key + values)
        else:
            out.added[key] = values
    return out


async def add(conn: asyncpg.Connection, rows: Rows) -> None:
    """Add a delivery's hours to their sessions' hours. Of the exit page already stored and the
    delivery's, the later page view (by instant, then path) wins, whichever came first."""
    if rows.new:
        await conn.copy_records_to_table("visit_hours", records=rows.new, columns=list(COLUMNS))
    await upsert(
        conn,
        f"""INSERT INTO visit_hours AS v ({", ".join(COLUMNS)})
           SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::bigint[], $4::bigint[],
                                $5::int[], $6::int[], $7::timestamptz[], $8::timestamptz[],
                                $9::timestamptz[], $10::text[], $11::boolean[])
           ON CONFLICT (site_id, hour, session_id, visitor) DO UPDATE SET
               pageviews = v.pageviews + EXCLUDED.pageviews,
               events = v.events + EXCLUDED.events,
               first_ts = least(v.first_ts, EXCLUDED.first_ts),
               last_ts = greatest(v.last_ts, EXCLUDED.last_ts),
               (exit_ts, exit_page) = (
                   SELECT x.ts, x.page
                   FROM (VALUES (v.exit_ts, v.exit_page), (EXCLUDED.exit_ts, EXCLUDED.exit_page))
                       AS x(ts, page)
                   ORDER BY x.ts DESC NULLS LAST, x.page DESC LIMIT 1)""",
        rows.added,
    )
