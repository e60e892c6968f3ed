"""What the rollups built from closed days share: maintain builds them, a late delivery forgets
the days it changes, and retention drops them. The rollups: `visit_days` and
`visit_day_values` (per UTC day the sessions began, `visit_days.py`), `local_days` and
`local_day_values` (per day in the site's zone, `local_days.py`). A late delivery also forgets
the open days counted past its events (`open_days.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime

import asyncpg

from topup import local_days, visit_days
from topup.utc import hour_of, quarter_of

VISIT_TABLES = ("visit_days", "visit_day_values")  # per UTC day the sessions began
LOCAL_TABLES = ("local_days", "local_day_values")  # per day in the row's zone
TABLES = VISIT_TABLES + LOCAL_TABLES


_VISIT_DAYS = "t.site_id = ANY($1::uuid[]) AND t.day = ANY($2::date[])"
_LOCAL_DAYS = "t.site_id = ANY($3::uuid[]) AND t.day BETWEEN $5::date - 1 AND $6::date + 1"
_LOCAL_DAY = "(c.ts AT TIME ZONE t.zone)::date"

# One statement, one round trip in every delivery's transaction. A visit day is changed by an
# event of a session begun that day; a local day (in the zone of its row) by an event at one of
# its instants — in its visit_hours hour for `local_days`, at its own time for the values. The
# `= ANY` and range conditions let each delete find its rows by index (a local date lies within
# a day of the UTC date); the join to the pairs keeps it exact.
_FORGET = (
    """
WITH begun AS (SELECT * FROM unnest($1::uuid[], $2::date[]) AS c(site_id, day)),
     touched AS (SELECT * FROM unnest($3::uuid[], $4::timestamptz[]) AS c(site_id, ts)),
"""
    + ",\n".join(
        f"""     {table} AS (DELETE FROM {table} t USING {changes} c
                WHERE {by_index} AND t.site_id = c.site_id AND t.day = {day})"""
        for tables, changes, by_index, day in (
            (VISIT_TABLES, "begun", _VISIT_DAYS, "c.day"),
            (LOCAL_TABLES, "touched", _LOCAL_DAYS, _LOCAL_DAY),
        )
        for table in tables
    )
    # An open day counted past its earliest event here (`upto` is a quarter hour).
    + """,
     earliest AS (SELECT * FROM unnest($7::uuid[], $8::date[], $9::timestamptz[])
                  AS c(site_id, day, ts)),
     open_days AS (DELETE FROM open_days t USING earliest c
                   WHERE t.site_id = c.site_id AND t.day = c.day AND t.upto > c.ts)"""
    + "\nSELECT 1"
)


def touched_instants(
    events: Iterable[tuple[uuid.UUID, datetime]],
) -> set[tuple[uuid.UUID, datetime]]:
    """(site, quarter hour) pairs of these events (site, UTC instant): every zone's offset is a
    multiple of 15 minutes, so they hold the local dates of the events in every zone, and the
    open days are counted up to a quarter hour. Per delivery they are a handful, however many
    its events (per event this is on process's hot path)."""
    return {(site, quarter_of(t)) for site, t in events}


async def forget(
    conn: asyncpg.Connection,
    begun: Iterable[tuple[uuid.UUID, date]],
    touched: Iterable[tuple[uuid.UUID, datetime]],
) -> None:
    """In a delivery's transaction (holding its sites' locks): delete the rollup days its events
    change — the visit days its sessions began on (`begun`: site, UTC day) and the local days of
    its events' instants (`touched`: site, quarter hour) — so the next `topup maintain` builds
    them again and meanwhile queries read the summaries; and the open days counted past one of
    its events."""
    quarters = set(touched)
    if not quarters:
        return
    # The local days: the quarters and their hours (the `visit_hours` rows the events change).
    touched = sorted(quarters | {(site, hour_of(q)) for site, q in quarters})
    instants = [instant for _, instant in touched]
    earliest: dict[tuple[uuid.UUID, date], datetime] = {}
    for site, quarter in sorted(quarters):
        earliest.setdefault((site, quarter.date()), quarter)
    begun = list(begun)
    await conn.execute(
        _FORGET,
        [site for site, _ in begun],
        [day for _, day in begun],
        [site for site, _ in touched],
        instants,
        min(instants).date(),
        max(instants).date(),
        [site for site, _ in earliest],
        [day for _, day in earliest],
        list(earliest.values()),
    )


async def build_closed_days(
    conn: asyncpg.Connection, first: date, now: datetime
) -> tuple[int, int]:
    """Build every rollup's closed days from `first` on that are not built yet (a transaction
    per site and day); how many visit days and local days."""
    return (
        await visit_days.build_closed_days(conn, first, now),
        await local_days.build_closed_days(conn, first, now),
    )


async def drop_before(conn: asyncpg.Connection, first: date) -> None:
    """Delete the days before the oldest one retention keeps (their rows are gone)."""
    for table in TABLES:
        await conn.execute(f"DELETE FROM {table} WHERE day < $1", first)
