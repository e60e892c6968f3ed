"""`topup maintain`: upcoming day partitions, retention, the daily visitor-hash salts, the
closed days' visit totals (`visit_days`) and graph buckets (`local_days`), today's and
yesterday's visitors per value so far (`open_days`), and the local archive's compaction."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec

from topup import open_days, rollups
from topup.archive_compaction import CompactionReport, compact
from topup.settings import Settings

PARTITION_DAYS_AHEAD = 7


class MaintenanceReport(msgspec.Struct, frozen=True):
    partitions_created: int
    partitions_dropped: list[str]
    salts_created: int
    salts_deleted: int
    counters_deleted: int = 0
    visit_days_built: int = 0
    local_days_built: int = 0
    open_days_built: int = 0
    archive: CompactionReport | None = None  # None: no local archive to compact


def utc_today() -> date:
    return datetime.now(UTC).date()


async def ensure_partitions(conn: asyncpg.Connection, first: date, last: date) -> int:
    """Create the day partitions of both event tables from `first` to `last`, inclusive."""
    return int(await conn.fetchval("SELECT topup_create_partitions($1, $2)", first, last))


async def drop_expired_partitions(conn: asyncpg.Connection, keep_from: date) -> list[str]:
    """Drop the day partitions before `keep_from` (the oldest day retention keeps)."""
    return [r[0] for r in await conn.fetch("SELECT topup_drop_partitions($1)", keep_from)]


async def rotate_salts(conn: asyncpg.Connection, today: date) -> tuple[int, int]:
    """Make sure today's and tomorrow's salts exist; delete salts of days before yesterday.

    A day's salt lives from its creation to the end of the next day (yesterday's is kept so a
    session that crosses midnight keeps its visitor id), so none outlives 48 hours of use.
    """
    created = 0
    for day in (today, today + timedelta(days=1)):
        inserted = await conn.fetchval(
            """INSERT INTO salts (day, salt) VALUES ($1, $2)
               ON CONFLICT (day) DO NOTHING RETURNING day""",
            day,
            os.urandom(32),
        )
        created += inserted is not None
    deleted = await conn.fetch(
        "DELETE FROM salts WHERE day < $1 RETURNING day", today - timedelta(days=1)
    )
    return created, len(deleted)


def local_archive(settings: Settings) -> Path | None:
    """The local archive's folder, when this deployment writes one and it exists (in AWS, Glue
    compacts the archive)."""
    root = Path(settings.data_dir) / "archive"
    return root if settings.archive == "local" and root.is_dir() else None


async def maintain(
    conn: asyncpg.Connection,
    *,
    retention_days: int,
    today: date | None = None,
    archive: Path | None = None,
    now: datetime | None = None,
) -> MaintenanceReport:
    now = datetime.now(UTC) if now is None else now
    today = now.date() if today is None else today
    keep_from = today - timedelta(days=retention_days)
    async with conn.transaction():
        created = await ensure_partitions(
            conn, today - timedelta(days=1), today + timedelta(days=PARTITION_DAYS_AHEAD)
        )
        dropped = await drop_expired_partitions(conn, keep_from)
        await rollups.drop_before(conn, keep_from)
        salts_created, salts_deleted = await rotate_salts(conn, today)
        # Rate-limit counters of hours that are over (they hold visitor hashes: keep none longer).
        counters = await conn.execute(
            "DELETE FROM visitor_counters WHERE hour < now() - interval '2 hours'"
        )
    built, built_local = await rollups.build_closed_days(conn, keep_from, now)
    built_open = await open_days.build_open_days(conn, now)
    compaction = None if archive is None else await asyncio.to_thread(compact, archive, today)
    return MaintenanceReport(
        created, dropped, salts_created, salts_deleted, int(counters.split()[-1]), built,
        built_local, built_open, compaction,
    )  # fmt: skip
