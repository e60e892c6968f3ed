"""What the rollups built from closed days share: maintain builds them, a late delivery forgets
the days it changes, and retention drops them. The rollups: `visit_days` and
`visit_day_values` (per UTC day the sessions began, `visit_days.py`), `local_days` and
`local_day_values` (per day in the site's zone, `local_days.py`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date, datetime, timedelta

import asyncpg

from topup import local_days, visit_days

TABLES = ("visit_days", "visit_day_values", "local_days", "local_day_values")


# One statement, one round trip in every delivery's transaction.
_FORGET = (
    "WITH "
    + ", ".join(
        f"{table} AS (DELETE FROM {table} WHERE site_id = ANY($1::uuid[]) AND day >= $2)"
        for table in TABLES
    )
    + " SELECT 1"
)


async def forget(conn: asyncpg.Connection, site_ids: Iterable[uuid.UUID], earliest: date) -> None:
    """In a delivery's transaction (holding its sites' locks): delete the days its events, the
    earliest on UTC day `earliest`, can change — from the day before on, in both rollups: an
    event changes its own day's sessions and those begun the day before, and an instant's local
    date is at most a day before its UTC date."""
    await conn.execute(_FORGET, list(site_ids), earliest - timedelta(days=1))


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
