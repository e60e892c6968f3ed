"""Query benchmark: the dashboard's overview on a generated site (1M events in quick mode, 10M
in full), against the straightforward SQL (count distinct over the raw event tables, one query
per widget) on the same data in the same run.

The overview is what the dashboard loads: aggregate with previous-period comparison, daily
timeseries, top pages, sources, countries, devices, over the last 30 days.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from loadtest.generate import generate
from query import stats, stats_request
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


async def run(database_url: str, full: bool) -> dict[str, Any]:
    events = 10_000_000 if full else 1_000_000
    started = time.perf_counter()
    site_id, truth = await generate(database_url, events, days=30, seed=3)
    generated_s = time.perf_counter() - started
    queries = _queries(site_id)
    conn = await connect(database_url)
    try:
        stores = stats.Stores(conn, None, 30)
        ours, naive = [], []
        answer = await stats.answer(stores, queries[0], site_id, Tier.PRIVACY_POLICY, {})
        # The benchmark must time right answers: the page views equal the generator's truth.
        first = queries[0].first_day.isoformat()
        expected = sum(n for day, n in truth.pageviews_by_day.items() if day >= first)
        if answer.results[0].metrics[2] != expected:
            raise AssertionError(f"overview pageviews {answer.results[0].metrics[2]} != {expected}")
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
    return {
        "events": truth.events, "generated_s": round(generated_s, 1),
        "overview": mine, "naive_overview": theirs,
        "speedup_p50": round(theirs["p50_ms"] / mine["p50_ms"], 2),
    }  # fmt: skip
