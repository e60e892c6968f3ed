"""Query benchmark: the dashboard's overview on a generated site (1M events in quick mode, 10M
in full), against the straightforward SQL (count distinct over the raw event tables, one query
per widget) on the same data in the same run.

The overview is what the dashboard loads: aggregate with previous-period comparison, daily
timeseries, top pages, sources, countries, devices, over the last 30 days.
"""

from __future__ import annotations

import statistics
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import msgspec

from loadtest.generate import generate
from loadtest.pg_usage import Meter
from query import stats, stats_request
from query.archive_reader import LocalArchiveReader, Row, scanned_bytes
from topup.database import connect
from topup.tiers import Tier, kept_fields

OVERVIEW = [
    {"metrics": ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"],
     "date_range": "30d", "include": {"comparisons": {"mode": "previous_period"}}},
    {"metrics": ["visitors", "pageviews"], "date_range": "30d", "dimensions": ["time:day"]},
    {"metrics": ["visitors", "pageviews"], "date_range": "30d", "dimensions": ["event:page"], "pagination": {"limit": 9}},
    {"metrics": ["visitors"], "date_range": "30d", "dimensions": ["visit:source"], "pagination": {"limit": 9}},
    {"metrics": ["visitors"], "date_range": "30d", "dimensions": ["visit:country"], "pagination": {"limit": 9}},
    {"metrics": ["visitors"], "date_range": "30d", "dimensions": ["visit:device"], "pagination": {"limit": 9}},
]  # fmt: skip

# The straightforward SQL for the same widgets: join, filter by site and range, count distinct.
NAIVE = [
    """SELECT count(DISTINCT e.visitor_id), count(DISTINCT e.session_id),
              count(*) FILTER (WHERE e.name = 'pageview')
       FROM events e WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $3""",
    """SELECT count(DISTINCT e.visitor_id), count(DISTINCT e.session_id),
              count(*) FILTER (WHERE e.name = 'pageview')
       FROM events e WHERE e.site_id = $1 AND e.ts >= $2::timestamptz - ($3::timestamptz - $2::timestamptz) AND e.ts < $2""",
    """SELECT date_trunc('day', e.ts), count(DISTINCT e.visitor_id), count(*) FILTER (WHERE e.name = 'pageview')
       FROM events e WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $3 GROUP BY 1""",
    """SELECT e.pathname, count(DISTINCT e.visitor_id) AS v, count(*) FROM events e
       WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $3 GROUP BY 1 ORDER BY v DESC LIMIT 9""",
    """SELECT i.referrer_source, count(DISTINCT e.visitor_id) AS v FROM events e
       JOIN initial_events i ON i.site_id = e.site_id AND i.session_id = e.session_id
       WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $3 GROUP BY 1 ORDER BY v DESC LIMIT 9""",
    """SELECT i.country, count(DISTINCT e.visitor_id) AS v FROM events e
       JOIN initial_events i ON i.site_id = e.site_id AND i.session_id = e.session_id
       WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $3 GROUP BY 1 ORDER BY v DESC LIMIT 9""",
    """SELECT i.device, count(DISTINCT e.visitor_id) AS v FROM events e
       JOIN initial_events i ON i.site_id = e.site_id AND i.session_id = e.session_id
       WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $3 GROUP BY 1 ORDER BY v DESC LIMIT 9""",
]  # fmt: skip


def _queries(site_id: Any) -> list[stats_request.StatsQuery]:
    today = datetime.now(UTC).date()
    out = []
    for body in OVERVIEW:
        parsed = msgspec.convert({"site_id": str(site_id)} | body, stats_request.QueryBody)
        out.append(stats_request.check(
            parsed, tier=Tier.PRIVACY_POLICY, kept=kept_fields(Tier.PRIVACY_POLICY, None),
            zone="UTC", today=today, created=date(2020, 1, 1)))  # fmt: skip
    return out


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


async def _overview(stores: stats.Stores, queries: list[stats_request.StatsQuery], site_id: Any,
                    truth: Any) -> None:  # fmt: skip
    """The dashboard's overview, once; its page views must equal the generator's truth (the
    benchmark must time right answers)."""
    answers = [
        await stats.answer(stores, query, site_id, Tier.PRIVACY_POLICY, {}) for query in queries
    ]
    first = queries[0].first_day.isoformat()
    expected = sum(n for day, n in truth.pageviews_by_day.items() if day >= first)
    if answers[0].results[0].metrics[2] != expected:
        raise AssertionError(f"overview pageviews {answers[0].results[0].metrics[2]} != {expected}")


async def run(database_url: str, full: bool) -> dict[str, Any]:
    events = 10_000_000 if full else 1_000_000
    with tempfile.TemporaryDirectory(prefix="topup-bench-archive-") as archive:
        started = time.perf_counter()
        site_id, truth = await generate(
            database_url, events, days=30, seed=3, archive=Path(archive)
        )
        generated_s = time.perf_counter() - started
        queries = _queries(site_id)
        # The same overview from the archive (a range outside the recent window is answered
        # there): what Athena would scan for it, per event in the range.
        archived = ScanMeter(Path(archive))
        conn = await connect(database_url)
        try:
            started = time.perf_counter()
            await _overview(stats.Stores(conn, archived, 0), queries, site_id, truth)
            archive_s = time.perf_counter() - started
        finally:
            await conn.close()
    conn = await connect(database_url)
    try:
        stores = stats.Stores(conn, None, 30)
        ours, naive = [], []
        in_range = await conn.fetchval(
            "SELECT count(*) FROM events WHERE site_id = $1 AND ts >= $2 AND ts < $3",
            site_id, queries[0].start, queries[0].end,
        )  # fmt: skip
        async with Meter(conn) as on_postgres:
            await _overview(stores, queries, site_id, truth)
        for _ in range(5):
            t = time.perf_counter()
            for query in queries:
                await stats.answer(stores, query, site_id, Tier.PRIVACY_POLICY, {})
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            for sql in NAIVE:
                await conn.fetch(sql, site_id, queries[0].start, queries[0].end)
            naive.append(time.perf_counter() - t)
    finally:
        await conn.close()
    mine, theirs = _summary(ours), _summary(naive)
    cpu = on_postgres.usage.cpu_s
    return {
        "events": truth.events, "generated_s": round(generated_s, 1),
        "overview": mine, "naive_overview": theirs,
        "speedup_p50": round(theirs["p50_ms"] / mine["p50_ms"], 2),
        # Cost model inputs: the database's CPU for one overview, and the archive's bytes.
        "overview_postgres_cpu_s": None if cpu is None else round(cpu, 3),
        "overview_events_in_range": in_range,
        "archive_overview_s": round(archive_s, 2),
        "archive_overview_queries": archived.queries,
        "archive_overview_scanned_bytes": archived.bytes,
    }  # fmt: skip
