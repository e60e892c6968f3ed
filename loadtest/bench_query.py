"""Query benchmark: the dashboard's overview on a generated site (1M events in the last 30 days
in quick mode, 10M in full, and as many in the 30 days before, so the top stats' comparison
with the previous period costs what it costs a steady site), against the straightforward SQL
(count distinct over the raw event tables, one query per widget) on the same data in the same
run.

The overview is what the dashboard loads for the last 30 days (`loadtest/overview.py`): first
the top stats with their previous-period comparison and the daily graph, together; then the
first tab of each card, together — channels, top pages, countries, devices (each by visitors),
custom events. The straightforward SQL runs in the same two concurrent phases. Each query alone
is timed too, and the top pages by page views, which the dashboard does not ask for.

What the overview costs depends on the hour: the rollups hold the closed days, and the rest is
read from the session summaries — today so far, and before 02:00 UTC yesterday too — and, for
the cards, from today's counts so far (`open_days`, counted up to a quarter hour at least 20
minutes old; process counts on once a count is 15 minutes behind) plus the events since. Both are timed at their worst moment, the counts ending 50 minutes before the
events do (`BEHIND`): today's for the last 30 days (run it late in the UTC day, e.g. under
`faketime '2026-11-27 22:45:00'`, for the end of a day), and yesterday's at 23:00 for the 30
days up to yesterday, whose last day is always left to the summaries whole (but for the top
stats, which take its totals cut at midnight). The bench also times building those counts:
yesterday from midnight to 23:00, and on to the day's end.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from loadtest import overview
from loadtest.generate import generate
from loadtest.pg_usage import Meter
from query import stats, stats_request
from query.archive_reader import LocalArchiveReader, Row, scanned_bytes
from topup import open_days
from topup.database import connect, create_pool
from topup.tiers import Tier, kept_fields
from topup.visit_days import midnight

FIRST, CARDS = overview.phases("30d")
TOP_STATS = FIRST["top stats"]
# Timed alone, not part of the overview.
EXTRA = {"top pages by page views": {"metrics": ["pageviews"], "dimensions": ["event:page"],
                                     "date_range": "30d", "pagination": {"limit": 9}}}  # fmt: skip

# The straightforward SQL for the same widgets: join, filter by site and range, count distinct.
_BY_SESSION = """SELECT i.{column}, count(DISTINCT e.visitor_id) AS v FROM events e
       JOIN initial_events i ON i.site_id = e.site_id AND i.session_id = e.session_id
       WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $3 GROUP BY 1 ORDER BY v DESC LIMIT 9"""
NAIVE_FIRST = [
    """SELECT count(DISTINCT e.visitor_id), count(DISTINCT e.session_id),
              count(*) FILTER (WHERE e.name = 'pageview')
       FROM events e WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $3""",
    """SELECT count(DISTINCT e.visitor_id), count(DISTINCT e.session_id),
              count(*) FILTER (WHERE e.name = 'pageview')
       FROM events e WHERE e.site_id = $1 AND e.ts >= $2::timestamptz - ($3::timestamptz - $2::timestamptz) AND e.ts < $2""",
    """SELECT date_trunc('day', e.ts), count(DISTINCT e.visitor_id), count(*) FILTER (WHERE e.name = 'pageview')
       FROM events e WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $3 GROUP BY 1""",
]
NAIVE_CARDS = [
    _BY_SESSION.format(column="channel"),
    """SELECT e.pathname, count(DISTINCT e.visitor_id) AS v FROM events e WHERE e.site_id = $1
       AND e.ts >= $2 AND e.ts < $3 GROUP BY 1 ORDER BY v DESC LIMIT 9""",
    _BY_SESSION.format(column="country"),
    _BY_SESSION.format(column="device"),
    """SELECT e.name, count(*) AS n FROM events e WHERE e.site_id = $1 AND e.ts >= $2
       AND e.ts < $3 AND e.name <> 'pageview' GROUP BY 1 ORDER BY n DESC LIMIT 9""",
]  # fmt: skip

Work = Callable[[asyncpg.Connection], Awaitable[Any]]


def _query(site_id: Any, body: dict[str, Any]) -> stats_request.StatsQuery:
    parsed = msgspec.convert({"site_id": str(site_id)} | body, stats_request.QueryBody)
    return stats_request.check(
        parsed, tier=Tier.PRIVACY_POLICY, kept=kept_fields(Tier.PRIVACY_POLICY, None),
        zone="UTC", today=datetime.now(UTC).date(), created=date(2020, 1, 1))  # fmt: skip


def _answering(query: stats_request.StatsQuery, site_id: Any, pool: asyncpg.Pool) -> Work:
    async def work(conn: asyncpg.Connection) -> Any:
        stores = stats.Stores(conn, None, 30, pool)  # as the service builds them
        return await stats.answer(stores, query, site_id, Tier.PRIVACY_POLICY, {})

    return work


def _fetching(sql: str, site_id: Any, query: stats_request.StatsQuery) -> Work:
    async def work(conn: asyncpg.Connection) -> Any:
        return await conn.fetch(sql, site_id, query.start, query.end)

    return work


async def _load(pool: asyncpg.Pool, phases: list[list[Work]]) -> float:
    """Seconds to run the phases one after the other, each phase's work concurrently, each on
    its own connection (as the query service answers the dashboard's parallel requests)."""

    async def on_a_connection(work: Work) -> None:
        async with pool.acquire() as conn:
            await work(conn)

    started = time.perf_counter()
    for phase in phases:
        await asyncio.gather(*(on_a_connection(work) for work in phase))
    return time.perf_counter() - started


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p95_ms": round(p95 * 1000, 1)}


class ScanMeter(LocalArchiveReader):
    """The local archive, adding up the bytes Athena would scan for each query it answers."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.bytes = 0
        self.queries = 0

    async def fetch(
        self, sql: str, params: list[Any], site_id: uuid.UUID, start: datetime, end: datetime
    ) -> list[Row]:
        self.bytes += scanned_bytes(self.root, sql, site_id, start, end)
        self.queries += 1
        return await super().fetch(sql, params, site_id, start, end)


async def _overview(stores: stats.Stores, site_id: Any, truth: Any) -> None:
    """The overview's queries one after the other; its page views must equal the generator's
    truth (the benchmark must time right answers)."""
    answers = [
        await stats.answer(stores, _query(site_id, body), site_id, Tier.PRIVACY_POLICY, {})
        for body in (FIRST | CARDS).values()
    ]
    first = _query(site_id, TOP_STATS).first_day.isoformat()
    expected = sum(n for day, n in truth.pageviews_by_day.items() if day >= first)
    if answers[0].results[0].metrics[2] != expected:
        raise AssertionError(f"overview pageviews {answers[0].results[0].metrics[2]} != {expected}")


async def _alone(pool: asyncpg.Pool, work: Work) -> float:
    return statistics.median([await _load(pool, [[work]]) for _ in range(3)])


# How far behind the events process lets a count fall: it counts on once it is `STALE_AFTER`
# behind its possible end, which is a quarter hour `MARGIN` before the latest delivery.
BEHIND = open_days.MARGIN + open_days.STALE_AFTER + timedelta(minutes=15)


async def _count_behind(
    conn: asyncpg.Connection, site_id: Any, tier: Tier, day: date, end: datetime
) -> float:
    """Count `day` from midnight up to `BEHIND` before `end`, as at the worst moment; seconds."""
    await conn.execute("DELETE FROM open_days WHERE site_id = $1 AND day = $2", site_id, day)
    started = time.perf_counter()
    await open_days.build_open_day(
        conn, site_id, tier, day, open_days.open_upto(day, end - BEHIND + open_days.MARGIN)
    )
    took = time.perf_counter() - started
    await open_days.refresh_statistics(conn)  # as maintain does after its builds
    return took


async def run(database_url: str, full: bool) -> dict[str, Any]:
    events = 10_000_000 if full else 1_000_000
    with tempfile.TemporaryDirectory(prefix="topup-bench-archive-") as archive:
        started, until = time.perf_counter(), datetime.now(UTC)  # the events end here
        site_id, truth = await generate(
            database_url, 2 * events, days=60, seed=3, archive=Path(archive)
        )
        generated_s = time.perf_counter() - started
        # The same overview from the archive (a range outside the recent window is answered
        # there): what Athena would scan for it, per event in the range.
        archived = ScanMeter(Path(archive))
        conn = await connect(database_url)
        try:
            started = time.perf_counter()
            await _overview(stats.Stores(conn, archived, 0), site_id, truth)
            archive_s = time.perf_counter() - started
            await _overview(stats.Stores(conn, None, 30), site_id, truth)
        finally:
            await conn.close()
    top = _query(site_id, TOP_STATS)
    conn = await connect(database_url)
    pool = await create_pool(database_url, max_size=len(NAIVE_CARDS))
    ours = [
        [_answering(_query(site_id, b), site_id, pool) for b in phase.values()]
        for phase in (FIRST, CARDS)
    ]
    today, tier = datetime.now(UTC).date(), Tier.PRIVACY_POLICY
    # Today counted as process leaves it at its worst moment (the events end at `until`).
    await _count_behind(conn, site_id, tier, today, until)
    to_yesterday = [
        (today - timedelta(days=30)).isoformat(),
        (today - timedelta(days=1)).isoformat(),
    ]
    late = [
        [_answering(_query(site_id, b), site_id, pool) for b in phase.values()]
        for phase in overview.phases(to_yesterday)
    ]
    naive = [
        [_fetching(sql, site_id, top) for sql in phase] for phase in (NAIVE_FIRST, NAIVE_CARDS)
    ]
    try:
        in_range = await conn.fetchval(
            "SELECT count(*) FROM events WHERE site_id = $1 AND ts >= $2 AND ts < $3",
            site_id, top.start, top.end,
        )  # fmt: skip
        async with Meter(conn) as on_postgres:
            await _load(pool, ours)
        mine, theirs = [], []
        for _ in range(5):
            mine.append(await _load(pool, ours))
            theirs.append(await _load(pool, naive))
        # Yesterday counted as at the worst moment before its end (built again from midnight).
        yesterday = today - timedelta(days=1)
        open_day_build_s = await _count_behind(conn, site_id, tier, yesterday, midnight(today))
        worst = [await _load(pool, late) for _ in range(5)]
        started = time.perf_counter()
        await open_days.build_open_day(conn, site_id, tier, yesterday, midnight(today))
        open_day_last_hours_s = time.perf_counter() - started
        alone = {
            name: round(1000 * await _alone(pool, _answering(_query(site_id, body), site_id, pool)))
            for name, body in (FIRST | CARDS | EXTRA).items()
        }
    finally:
        await pool.close()
        await conn.close()
    ours_summary, naive_overview = _summary(mine), _summary(theirs)
    cpu = on_postgres.usage.cpu_s
    return {
        "events": in_range, "generated_events": truth.events,
        "generated_s": round(generated_s, 1),
        "overview": ours_summary, "naive_overview": naive_overview,
        "overview_to_yesterday": _summary(worst),  # a whole day, counted up to 23:00
        "open_day_build_s": round(open_day_build_s, 2),  # yesterday from midnight to 23:00
        "open_day_last_hours_s": round(open_day_last_hours_s, 2),  # and on to its end
        "speedup_p50": round(naive_overview["p50_ms"] / ours_summary["p50_ms"], 2),
        "alone_p50_ms": alone,
        # Cost model inputs: the database's CPU for one overview, and the archive's bytes.
        "overview_postgres_cpu_s": None if cpu is None else round(cpu, 3),
        "overview_events_in_range": in_range,
        "archive_overview_s": round(archive_s, 2),
        "archive_overview_queries": archived.queries,
        "archive_overview_scanned_bytes": archived.bytes,
    }  # fmt: skip
