"""Two dashboard queries from the closed days in the site's zone (see `topup/local_days.py`):
- the daily graph — visitors, page views or events per day, no filter (`local_days`);
- page views and events per page or per event name, filtered at most by that same dimension
  (`local_day_values`): the custom events card, and pages by page views (the top pages card
  counts visitors: `visit_days_sql`).

The range's built days are read from these rows; the rest of the range — the days not built yet
(today, yesterday, a day a late delivery changed) and a day the range cuts — is asked of the
ordinary path (`rest`). Both give the same numbers for a day: a graph bucket counts over its
own rows only, and page views and events are plain counts, which add up (tests compare them).
The graph is not for the `full` tier: its visitors are consented ids visit_hours does not hold.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from query import visit_sql
from query.stats_request import TIME_DIMENSIONS, StatsQuery
from query.stats_sql import POSTGRES, Params, column, named_dimensions, where
from topup.local_days import EVENT_VALUES, local_midnight
from topup.tiers import Tier

GRAPH_METRICS = frozenset({"visitors", "pageviews", "events"})
VALUE_METRICS = frozenset({"pageviews", "events"})

Rest = Callable[[StatsQuery], Awaitable[list[Mapping[str, Any]]]]

# The range's whole local days that are built, with their bounds as Postgres reckons them (as
# visit_sql's buckets are), so the rest of the range is cut where its buckets begin and end.
_BUILT = f"""
SELECT day, sessions, visitors, pageviews, events, lo, hi FROM (
    SELECT l.*, {local_midnight("l.day", "l.zone")} AS lo,
           {local_midnight("(l.day + 1)", "l.zone")} AS hi
    FROM local_days l
    WHERE l.site_id = $1 AND l.zone = $2 AND l.day >= $3 AND l.day <= $4
) d
WHERE lo >= $5 AND hi <= $6
ORDER BY day
"""


def _graph(query: StatsQuery, tier: Tier) -> bool:
    return (
        tier is not Tier.FULL
        and query.filter is None
        and query.dimensions[0] in TIME_DIMENSIONS
        and query.interval == "day"
        and set(query.metrics) <= GRAPH_METRICS
        and visit_sql.answers(query, None)  # the days' bounds fall on whole UTC hours
    )


def _values(query: StatsQuery) -> bool:
    dimension = query.dimensions[0]
    return (
        dimension in EVENT_VALUES
        and set(query.metrics) <= VALUE_METRICS
        and named_dimensions(query, None) == {dimension}
    )


def answers(query: StatsQuery, tier: Tier) -> bool:
    """Whether the local days can answer this query (if any of its days is built)."""
    return len(query.dimensions) == 1 and (_graph(query, tier) or _values(query))


async def fetch(
    conn: asyncpg.Connection, query: StatsQuery, site_id: Any, tier: Tier, rest: Rest
) -> list[Mapping[str, Any]] | None:
    """The rows the ordinary path gives for this query; None when none of its days is built."""
    zone = ZoneInfo(query.timezone)
    first = query.start.astimezone(zone).date() - timedelta(days=1)
    last = query.end.astimezone(zone).date() + timedelta(days=1)
    built = await conn.fetch(_BUILT, site_id, query.timezone, first, last, query.start, query.end)
    if not built:
        return None
    parts = [
        await rest(query.shifted(start, end, query.first_day, query.last_day))
        for start, end in _outside(query, [(r["lo"], r["hi"]) for r in built])
    ]
    if query.dimensions[0] not in TIME_DIMENSIONS:
        days = await _value_rows(conn, query, site_id, [r["day"] for r in built])
        return _added(days, *parts)
    visitors = "sessions" if tier is Tier.BANNER_FREE else "visitors"
    rows: list[Mapping[str, Any]] = [
        {"d0": datetime.combine(r["day"], time()), "visitors": r[visitors],
         "pageviews": r["pageviews"], "events": r["events"]}
        for r in built
        if r["sessions"]  # as visit_sql, no row for a day without any
    ]  # fmt: skip
    for part in parts:  # other buckets than the built days'
        rows += part
    return rows


def _outside(
    query: StatsQuery, built: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The spans of [start, end) outside the built days (ascending, disjoint)."""
    spans, cursor = [], query.start
    for lo, hi in built:
        if lo > cursor:
            spans.append((cursor, lo))
        cursor = hi
    if cursor < query.end:
        spans.append((cursor, query.end))
    return spans


async def _value_rows(
    conn: asyncpg.Connection, query: StatsQuery, site_id: Any, days: list[Any]
) -> list[Mapping[str, Any]]:
    """The page views and events per value over these days, the query's filter applied."""
    dimension = query.dimensions[0]
    sql = Params(POSTGRES)
    text = f"""
SELECT d0, sum(pageviews)::bigint AS pageviews, sum(events)::bigint AS events FROM (
    SELECT value AS d0, value AS {column(dimension, sql)}, pageviews, events
    FROM local_day_values
    WHERE site_id = {sql.add(site_id)} AND zone = {sql.add(query.timezone)}
      AND dimension = {sql.add(dimension)} AND day = ANY({sql.add(days)}::date[])
) t
WHERE {where(query.filter, sql)}
GROUP BY d0"""
    text, values = sql.finish(text)
    return list(await conn.fetch(text, *values))


def _added(*parts: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows per value, their page views and events summed over the parts."""
    sums: dict[Any, list[int]] = {}
    for part in parts:
        for r in part:
            total = sums.setdefault(r["d0"], [0, 0])
            total[0] += r["pageviews"]
            total[1] += r["events"]
    return [{"d0": v, "pageviews": p, "events": e} for v, (p, e) in sums.items()]
