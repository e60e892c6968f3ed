"""Writing a delivery to Postgres: one transaction, idempotent, exact usage and allowance.

In order, inside the transaction:
1. Record the delivery's request id; if it is already there, the delivery was written before
   and nothing else happens (a Firehose retry).
2. Take a transaction-scoped advisory lock per site (in id order, so no deadlocks): deliveries
   for the same site write one at a time, which makes "first event of a session" and the
   allowance exact under concurrency.
3. Find which sessions already exist; the first event of a new session also gets an
   `initial_events` row, and later events inherit the session's visitor id. An event continues
   its tab's session begun yesterday or today (the key names the day it began), else it begins
   one: no session spans more than two UTC days. Delete the rollup days the events change (the
   visit days their sessions began on, the local days of their instants; `rollups.forget`):
   mostly none, since days are built after they end.
4. Hold each visitor to the site's hourly limit (the daily visitor hash where the tier keeps
   one, else the session): events beyond it are `rate_limited`, so a script sending events
   with a site's id costs that site at most the limit per visitor and hour.
5. Grant allowance per site in one statement (check and decrement together); events beyond it
   (the latest ones) are `over_allowance`. Then COPY the granted events in: event ids are fresh
   UUIDv7s, so straight into the table, while process works out the initial rows and the
   session hours meanwhile. If one is already stored (an overlapping delivery), the
   transaction is rolled back and redone `careful`: right after taking the locks (so no other
   delivery can store one of these meanwhile), the events already stored are looked up and
   skipped, counted nowhere — not as accepted again, nor toward their visitor's hourly limit.
   The events the rate limit or the allowance cut never reach the COPY, so when some are cut
   they are looked up, and if one is stored the delivery goes the careful way too.
6. Insert the initial rows, add the stored events to their sessions' `visit_hours` (the
   summary the dashboard's visit-level queries read; a row says whether its session began on
   an earlier UTC day, from the session's initial row), add the day's usage (accepted, and dropped
   by reason), and record the delivery's totals.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Generator
from datetime import UTC, date, datetime
from operator import attrgetter
from typing import Any, TypeVar

import asyncpg
import msgspec

from process import visit_hours
from process.drops import ACCEPTED, DropReason
from process.pipeline import Work
from process.rows import (
    EventRow,
    InitialRow,
    as_tuple,
    event_row,
    initial_row,
    utc_hour,
    visitor_key,
)
from process.upsert import upsert
from topup import rollups
from topup.archive_layout import EVENT_COLUMNS, INITIAL_COLUMNS
from topup.site_lock import lock_sites

NIL_SITE = uuid.UUID(int=0)  # where drops of events without a known site are counted
SESSION_LOOKBACK_DAYS = 1
T = TypeVar("T")
PAUSE_EVERY = 500  # events between the points where `_meanwhile` lets the event loop run

Drop = tuple[uuid.UUID | None, date, DropReason]
Pending = tuple[EventRow, Work | None]  # an event's row, and its work if its session is new
Hours = dict[visit_hours.Key, visit_hours.HourSummary]  # a delivery's additions to visit_hours


class Written(msgspec.Struct):
    """What a delivery stored: the rows to archive, and its totals."""

    events: list[EventRow]
    initials: list[InitialRow]
    accepted: int
    dropped: int


class Partitions:
    """The day partitions known to exist, so a delivery creates a day's partition at most once
    per process (`topup maintain` also creates them a week ahead)."""

    def __init__(self) -> None:
        self.days: set[date] = set()

    async def ensure(self, conn: asyncpg.Connection, days: set[date]) -> None:
        missing = days - self.days
        if missing:
            await conn.execute("SELECT topup_create_partitions($1, $2)", min(missing), max(missing))
            self.days.update(missing)


class Session(msgspec.Struct, frozen=True):
    """A session begun in an earlier delivery: its visitor id and the UTC day of its initial
    row."""

    visitor_id: int | None
    began: date


# (site, session) → its visitor id and the UTC day it began, for the given sessions begun since
# a day. LATERAL and the (site, session, ts) index (migration 0012): a look-up per session,
# whatever the planner believes of a day's partition not analysed yet.
EXISTING_SESSIONS = """
    SELECT s.site_id, s.session_id, i.visitor_id, (i.ts AT TIME ZONE 'UTC')::date AS began
    FROM unnest($1::uuid[], $2::bigint[]) AS s(site_id, session_id)
    CROSS JOIN LATERAL (
        SELECT i.visitor_id, i.ts FROM initial_events i
        WHERE i.site_id = s.site_id AND i.session_id = s.session_id
          AND i.ts >= ($3::date - $4::int)::timestamp AT TIME ZONE 'UTC'
        ORDER BY i.ts LIMIT 1) i"""


async def _existing_sessions(
    conn: asyncpg.Connection, kept: list[Work]
) -> dict[tuple[uuid.UUID, int], Session]:
    """(site, session) → the session, for sessions begun in an earlier delivery."""
    pairs = {(w.site.id, w.session_id) for w in kept if w.site is not None} | {
        (w.site.id, w.continued_session)
        for w in kept
        if w.site is not None and w.continued_session is not None
    }
    since = min(w.raw.received_at for w in kept).date()
    rows = await conn.fetch(
        EXISTING_SESSIONS,
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        since,
        SESSION_LOOKBACK_DAYS,
    )
    return {(r["site_id"], r["session_id"]): Session(r["visitor_id"], r["began"]) for r in rows}


_in_time_order = attrgetter("raw.received_at", "raw.event_id")


def _sessions(kept: list[Work], existing: dict[tuple[uuid.UUID, int], Session]) -> list[Pending]:
    """Each event's row in time order, with its work when its session is new in this delivery
    (so the first of its events that is stored can begin it)."""
    visitors = {key: session.visitor_id for key, session in existing.items()}
    new: set[tuple[uuid.UUID, int]] = set()
    out: list[Pending] = []
    for work in sorted(kept, key=_in_time_order):
        assert work.site is not None
        key = (work.site.id, work.session_id)
        if (
            work.continued_session is not None
            and (work.site.id, work.continued_session) in visitors
        ):
            work.session_id = work.continued_session  # the tab's session from yesterday goes on
            key = (work.site.id, work.session_id)
        if key in visitors:
            work.visitor_id = visitors[key]  # a session keeps the visitor id it began with
        else:
            visitors[key] = work.visitor_id
            new.add(key)
        out.append((event_row(work), work if key in new else None))
    return out


def _changed_days(
    kept: list[Work], existing: dict[tuple[uuid.UUID, int], Session]
) -> tuple[set[tuple[uuid.UUID, date]], set[tuple[uuid.UUID, datetime]]]:
    """The rollup days these events (sessions resolved) can change: the UTC days their sessions
    began — a stored session's initial row's, a new session's any of its events' (its initial
    row comes from the first one stored) — and their instants (for the local days). A superset
    of what is stored: events the rate limit or the allowance refuses only make a day be built
    again."""
    begun: set[tuple[uuid.UUID, date]] = set()
    for work in kept:
        assert work.site is not None
        session = existing.get((work.site.id, work.session_id))
        begun.add((work.site.id, work.day if session is None else session.began))
    touched = rollups.touched_instants(
        (w.site.id, w.raw.received_at) for w in kept if w.site is not None
    )
    return begun, touched


def _beginnings(stored: list[Pending]) -> list[InitialRow]:
    """The initial row of each new session: from its first stored event, which is not its
    first event when that one was rate limited or refused (a session is never left without
    its attributes)."""
    begun: set[tuple[uuid.UUID, int]] = set()
    initials = []
    for event, work in stored:
        if work is not None and (key := (event.site_id, event.session_id)) not in begun:
            begun.add(key)
            initials.append(initial_row(work))
    return initials


async def _copy(
    conn: asyncpg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple]
) -> None:
    """COPY rows straight into the table. Event ids are fresh UUIDv7s, so almost always none is
    stored yet; when one is (an overlapping redelivery), the COPY fails on the primary key, the
    delivery's transaction is rolled back, and `write_delivery` runs again `careful`."""
    if rows:
        await conn.copy_records_to_table(table, records=rows, columns=list(columns))


class _StoredBeforeError(Exception):
    """Some events this delivery cut (rate limit, allowance) were stored by an overlapping one:
    they must not count as cut, so the delivery is written again `careful`."""


async def _stored_before(
    conn: asyncpg.Connection, events: list[tuple[uuid.UUID, datetime]]
) -> set[uuid.UUID]:
    """Of these events (id, instant), those already stored. Holding their sites' locks, so no
    other delivery stores one meanwhile."""
    instants = [ts for _, ts in events]
    stored = await conn.fetch(
        """SELECT event_id FROM events
           WHERE event_id = ANY($1::uuid[]) AND ts BETWEEN $2 AND $3""",
        [event_id for event_id, _ in events],
        min(instants),
        max(instants),
    )
    return {r["event_id"] for r in stored}


async def _not_stored_yet(conn: asyncpg.Connection, kept: list[Work]) -> list[Work]:
    """The careful way: the events an overlapping delivery has not stored already."""
    already = await _stored_before(conn, [(w.raw.event_id, w.raw.received_at) for w in kept])
    return [w for w in kept if w.raw.event_id not in already]


VisitorHour = tuple[uuid.UUID, int, datetime]  # what the rate limit counts by: site, visitor, hour


def _visitor_hours(rows: list[Pending]) -> list[VisitorHour]:
    return [(e.site_id, visitor_key(e), utc_hour(e)) for e, _ in rows]


async def _rate_limit(
    conn: asyncpg.Connection,
    rows: list[Pending],
    keys: list[VisitorHour],
    limits: dict[uuid.UUID, int],
) -> tuple[list[Pending], list[EventRow]]:
    """Keep each visitor's events up to the site's hourly limit; the rest are rate limited.
    `keys`: each event's visitor and hour (`_visitor_hours`)."""
    added: Counter[VisitorHour] = Counter(keys)
    # Count them all in at once; the counts past the limit come back, so the usual case
    # (nobody past it) takes this one statement.
    over = await upsert(
        conn,
        """WITH counted AS (
               INSERT INTO visitor_counters AS c (site_id, visitor, hour, events)
               SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[], $4::int[])
               ON CONFLICT (site_id, visitor, hour)
               DO UPDATE SET events = c.events + EXCLUDED.events
               RETURNING site_id, visitor, hour, events)
           SELECT c.* FROM counted c JOIN unnest($5::uuid[], $6::int[]) AS l(site_id, most)
             ON l.site_id = c.site_id WHERE c.events > l.most""",
        {key: (n,) for key, n in added.items()},
        list(limits),
        list(limits.values()),
    )
    earlier = {}  # the visitors now past the limit: their counts before this delivery
    for r in over:
        key = (r["site_id"], r["visitor"], r["hour"])
        earlier[key] = r["events"] - added[key]
    if not earlier:
        return rows, []
    kept: list[Pending] = []
    limited: list[EventRow] = []
    cut: Counter[VisitorHour] = Counter()
    for key, (event, work) in zip(keys, rows, strict=True):  # in time order: the latest go
        if key not in earlier or earlier[key] < limits[event.site_id]:
            earlier[key] = earlier.get(key, 0) + 1
            kept.append((event, work))
        else:
            cut[key] += 1
            limited.append(event)
    await _add_counts(
        conn,
        """UPDATE visitor_counters c SET events = c.events - k.n
           FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[], $4::int[])
               AS k(site_id, visitor, hour, n)
           WHERE c.site_id = k.site_id AND c.visitor = k.visitor AND c.hour = k.hour""",
        cut,
    )  # only the events kept stay counted
    return kept, limited


async def _grant_allowance(
    conn: asyncpg.Connection, wanted: Counter[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """Take up to `wanted[site]` events from each site's allowance, in one statement."""
    rows = await conn.fetch(
        """WITH wanted AS (
               SELECT * FROM unnest($1::uuid[], $2::bigint[]) AS w(site_id, n)),
           locked AS (
               SELECT s.id, least(s.allowance_remaining, w.n) AS granted
               FROM sites s JOIN wanted w ON w.site_id = s.id
               ORDER BY s.id FOR UPDATE OF s),
           taken AS (
               UPDATE sites s SET allowance_remaining = s.allowance_remaining - l.granted
               FROM locked l WHERE s.id = l.id)
           SELECT id, granted FROM locked""",
        list(wanted),
        list(wanted.values()),
    )
    return {r["id"]: r["granted"] for r in rows}


def _within_allowance(
    rows: list[Pending], wanted: Counter[uuid.UUID], granted: dict[uuid.UUID, int]
) -> tuple[list[Pending], list[EventRow]]:
    """The events each site's grant covers, in time order, and those beyond it."""
    if all(n <= granted.get(site, 0) for site, n in wanted.items()):
        return rows, []  # the usual case: allowance enough for all
    taken: Counter[uuid.UUID] = Counter()
    stored: list[Pending] = []
    refused: list[EventRow] = []
    for event, work in rows:
        if taken[event.site_id] < granted.get(event.site_id, 0):
            taken[event.site_id] += 1
            stored.append((event, work))
        else:
            refused.append(event)
    return stored, refused


async def _add_usage(
    conn: asyncpg.Connection, counts: Counter[tuple[uuid.UUID, date, str]]
) -> None:
    await _add_counts(
        conn,
        """INSERT INTO usage_daily (site_id, day, outcome, events)
           SELECT * FROM unnest($1::uuid[], $2::date[], $3::text[], $4::bigint[])
           ON CONFLICT (site_id, day, outcome)
           DO UPDATE SET events = usage_daily.events + EXCLUDED.events""",
        counts,
    )


async def _add_counts(conn: asyncpg.Connection, sql: str, counts: Counter[Any]) -> None:
    """Add each count to its key's row: `sql` takes one array per key part, then the counts."""
    await upsert(conn, sql, {key: (n,) for key, n in counts.items()})


async def _grant(
    conn: asyncpg.Connection, rows: list[Pending]
) -> tuple[list[Pending], list[EventRow]]:
    """The events each site's allowance covers, taken from it, and those beyond it."""
    if not rows:
        return [], []
    wanted = Counter(e.site_id for e, _ in rows)
    return _within_allowance(rows, wanted, await _grant_allowance(conn, wanted))


def _session_rows(
    stored: list[Pending], existing: dict[tuple[uuid.UUID, int], Session]
) -> Generator[None, None, tuple[list[InitialRow], Hours]]:
    """The new sessions' initial rows, and the stored events' additions to their hours; it
    pauses now and then (`_meanwhile`)."""
    initials = _beginnings(stored)
    yield
    began = {key: session.began for key, session in existing.items()} | {
        (i.site_id, i.session_id): i.ts.astimezone(UTC).date() for i in initials
    }
    hours: Hours = {}
    for start in range(0, len(stored), PAUSE_EVERY):
        yield
        visit_hours.summarise([e for e, _ in stored[start : start + PAUSE_EVERY]], began, hours)
    return initials, hours


async def _meanwhile(
    statement: Awaitable[object], work: Callable[[], T] | Generator[None, None, T]
) -> T:
    """Do `work` in Python while the database runs `statement` (sent first): the server's time
    and process's overlap instead of adding up. Where `work` yields, the event loop runs: it
    sends what the socket would not take at once of a long statement (a COPY's rows), so the
    server is not left waiting. `statement` has finished when this returns."""
    running = asyncio.ensure_future(statement)
    try:
        await asyncio.sleep(0)  # it sends the statement and waits for the server's answer
        if not isinstance(work, Generator):
            return work()
        while True:
            try:
                next(work)
            except StopIteration as finished:
                return finished.value
            await asyncio.sleep(0)
    finally:
        await running  # the connection is free again, and its error (if any) is raised


async def _store_events(
    conn: asyncpg.Connection,
    rows: list[Pending],
    existing: dict[tuple[uuid.UUID, int], Session],
    copied: list[tuple[Any, ...]],
) -> tuple[list[Pending], list[EventRow], list[InitialRow], Hours]:
    """Store the events the allowance covers: those stored and those refused, with the new
    sessions' initial rows and the stored events' session hours. `copied`: the COPY rows of
    the events before the rate limit (`rows` or more)."""
    # None of these events is stored yet (else UniqueViolationError, and careful), so the
    # allowance is granted first and the events beyond it are never copied.
    stored, refused = await _grant(conn, rows)
    if len(copied) != len(stored):  # some were rate limited or refused
        copied = [as_tuple(e) for e, _ in stored]
    copy = _copy(conn, "events", EVENT_COLUMNS, copied)
    return stored, refused, *await _meanwhile(copy, _session_rows(stored, existing))


async def write_delivery(
    conn: asyncpg.Connection,
    request_id: str,
    kept: list[Work],
    drops: list[Drop],
    partitions: Partitions,
) -> Written | None:
    """Store a delivery's events; None if this request id was stored before."""
    try:
        return await _write(conn, request_id, kept, drops, partitions, careful=False)
    except (asyncpg.UniqueViolationError, _StoredBeforeError):
        # Some of these events were stored by an overlapping delivery: go the careful way.
        return await _write(conn, request_id, kept, drops, partitions, careful=True)


async def _write(
    conn: asyncpg.Connection,
    request_id: str,
    kept: list[Work],
    drops: list[Drop],
    partitions: Partitions,
    *,
    careful: bool,
) -> Written | None:
    usage: Counter[tuple[uuid.UUID, date, str]] = Counter(
        (site or NIL_SITE, day, reason.value) for site, day, reason in drops
    )
    if kept:
        # Before the delivery's transaction: a day's partition made inside it would be rolled
        # back with it (an overlapping redelivery is written again, `careful`), while
        # `partitions` would go on believing it is there.
        await partitions.ensure(conn, {w.raw.received_at.date() for w in kept})
    async with conn.transaction():
        fresh = await conn.fetchval(
            """INSERT INTO processed_deliveries (request_id, accepted, dropped) VALUES ($1, 0, 0)
               ON CONFLICT (request_id) DO NOTHING RETURNING request_id""",
            request_id,
        )
        if fresh is None:
            return None
        rows: list[Pending] = []
        limited: list[EventRow] = []
        copied: list[tuple[Any, ...]] = []
        existing: dict[tuple[uuid.UUID, int], Session] = {}
        if kept:
            site_ids = list({w.site.id for w in kept if w.site is not None})
            await lock_sites(conn, site_ids)
            if careful:
                kept = await _not_stored_yet(conn, kept)
        if kept:
            existing = await _existing_sessions(conn, kept)
            rows = _sessions(kept, existing)
            forget = rollups.forget(conn, *_changed_days(kept, existing))
            keys = await _meanwhile(forget, lambda: _visitor_hours(rows))
            limits = {w.site.id: w.site.visitor_hourly_limit for w in kept if w.site is not None}
            limiting = asyncio.ensure_future(_rate_limit(conn, rows, keys, limits))
            copied = await _meanwhile(limiting, lambda: [as_tuple(e) for e, _ in rows])
            rows, limited = limiting.result()
            usage.update((e.site_id, e.ts.date(), DropReason.RATE_LIMITED.value) for e in limited)
        stored, refused, initials, hours = await _store_events(conn, rows, existing, copied)
        cut = limited + refused
        if cut and not careful and await _stored_before(conn, [(e.event_id, e.ts) for e in cut]):
            raise _StoredBeforeError  # the COPY would have found them; it never saw these
        usage.update((e.site_id, e.ts.date(), DropReason.OVER_ALLOWANCE.value) for e in refused)
        initial_rows = [as_tuple(i) for i in initials]
        copy_initials = _copy(conn, "initial_events", INITIAL_COLUMNS, initial_rows)
        begun = None if careful else {(i.site_id, i.session_id) for i in initials}
        hours_rows = await _meanwhile(copy_initials, lambda: visit_hours.rows(hours, begun))
        await visit_hours.add(conn, hours_rows)
        # Every stored event is in exactly one of its session's hours.
        usage.update(
            {(site, day, ACCEPTED): n for (site, day), n in visit_hours.by_day(hours).items()}
        )
        await _add_usage(conn, usage)
        dropped = len(drops) + len(limited) + len(refused)
        await conn.execute(
            "UPDATE processed_deliveries SET accepted = $2, dropped = $3 WHERE request_id = $1",
            request_id,
            len(stored),
            dropped,
        )
    return Written([e for e, _ in stored], initials, len(stored), dropped)


async def stored_rows(
    conn: asyncpg.Connection, request_id: str, event_ids: list[uuid.UUID]
) -> Written | None:
    """For a delivery written before but not yet archived: its stored rows, to archive now.
    None when there is nothing left to do (already archived)."""
    archived = await conn.fetchrow(
        "SELECT archived_at, accepted, dropped FROM processed_deliveries WHERE request_id = $1",
        request_id,
    )
    if archived is None or archived["archived_at"] is not None:
        return None
    events = await conn.fetch(
        f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE event_id = ANY($1::uuid[])", event_ids
    )
    initials = await conn.fetch(
        f"SELECT {', '.join(INITIAL_COLUMNS)} FROM initial_events WHERE event_id = ANY($1::uuid[])",
        event_ids,
    )
    return Written(
        [EventRow(*r) for r in events],
        [InitialRow(*r) for r in initials],
        archived["accepted"],
        archived["dropped"],
    )


async def mark_archived(conn: asyncpg.Connection, request_id: str) -> None:
    await conn.execute(
        "UPDATE processed_deliveries SET archived_at = now() WHERE request_id = $1", request_id
    )


def drops_by_site(works: list[tuple[Work, DropReason]]) -> list[Drop]:
    return [
        (w.site.id if w.site else None, w.raw.received_at.date(), reason) for w, reason in works
    ]
