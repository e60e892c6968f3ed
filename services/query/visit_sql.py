"""Visit-level stats queries over `visit_hours` (migration 0004) instead of raw events.

A query whose dimensions and filters are all visit attributes (source, channel, UTM tags, device,
browser, OS, screen, location, entry and exit page) or time, and whose metrics do not need an
event filter (not conversion_rate), has the same answer from each session's hourly summaries as
from its events, provided the range starts and ends on whole UTC hours and, for time buckets,
every local day of the range does too. That is every preset range in every zone with a
whole-hour offset. The SQL has the shape of `stats_sql.build` (`e`, `f`, `ea`, `s`, `sa`, and
the same final SELECT), with `r` (a session's hours in the range) in place of its events.
Postgres only: the archive keeps no summary, and archive ranges are not the dashboard's
everyday ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from query.stats_request import DIMENSIONS, SESSION_METRICS, TIME_DIMENSIONS, Filter, StatsQuery
from query.stats_sql import (
    POSTGRES,
    VISIT_AGGREGATES,
    Params,
    filtered_aggregates,
    group_key,
    grouped,
    join_sessions,
    named_dimensions,
    outcome,
    where,
)
from topup.tiers import Tier

# How a visitor is counted, as in `stats_sql.VISITOR`: `visitor` is the events' visitor_id,
# or their session_id where it is NULL.
VISITOR = {
    Tier.BANNER_FREE: "v.session_id",
    Tier.PRIVACY_POLICY: "v.visitor",
    Tier.FULL: "coalesce('d' || i.distinct_id, CAST(v.visitor AS VARCHAR))",
}


def on_the_hour(instant: datetime) -> bool:
    return instant.minute == instant.second == instant.microsecond == 0


def _whole_hour_offsets(zone: str, start: datetime, end: datetime) -> bool:
    """Whether each local day of the range begins on a whole UTC hour (true for all but a few
    zones, such as Asia/Kolkata or Australia/Adelaide)."""
    tz = ZoneInfo(zone)
    instant = start
    while True:
        offset = instant.astimezone(tz).utcoffset()
        if offset is None or offset % timedelta(hours=1):
            return False
        if instant >= end:
            return True
        instant = min(instant + timedelta(days=1), end)


def answers(query: StatsQuery, visit_filter: Filter | None) -> bool:
    """Whether `visit_hours` gives this query's exact answer."""
    if "conversion_rate" in query.metrics:
        return False
    for dimension in named_dimensions(query, visit_filter):
        if dimension not in TIME_DIMENSIONS and not (
            dimension.startswith("visit:") and dimension in DIMENSIONS
        ):
            return False
    if not (on_the_hour(query.start) and on_the_hour(query.end)):
        return False
    if any(d in TIME_DIMENSIONS for d in query.dimensions):
        return _whole_hour_offsets(query.timezone, query.start, query.end)
    return True


def build(
    query: StatsQuery, site_id: Any, tier: Tier, visit_filter: Filter | None = None
) -> tuple[str, list[Any]]:
    """The SQL and parameters answering `query` (one that `answers` accepts) for one site; rows
    as `stats_sql.build` gives them."""
    p = Params(POSTGRES)
    site = p.add(site_id)
    start, end = POSTGRES.instant(query.start, p), POSTGRES.instant(query.end, p)
    dims = list(query.dimensions)
    hour_dims, session_dims, plain = [], [], []
    for i, dim in enumerate(dims):
        if dim in TIME_DIMENSIONS:
            unit = f"'{query.interval}'"
            local_hour = POSTGRES.local("hour", query.timezone)
            hour_dims.append(f"date_trunc({unit}, {local_hour}) AS d{i}")
            session_dims.append(
                f"date_trunc({unit}, {POSTGRES.local('s.started', query.timezone)}) AS d{i}"
            )
        else:
            hour_dims.append(f"{grouped(dim, p)} AS d{i}")
            session_dims.append(f"s.d{i}")
            plain.append(f"{grouped(dim, p)} AS d{i}")
    group_by = "GROUP BY " + ", ".join(f"d{i}" for i in range(len(dims))) if dims else ""
    filters = where(query.filter, p)
    session_metrics = SESSION_METRICS & set(query.metrics)
    named = {DIMENSIONS[d][0] for d in named_dimensions(query, visit_filter) if d in DIMENSIONS}
    session_join, visit_select = join_sessions("v", "initial_events", named, tier, site, start, end)
    sql = f"""
WITH r AS (
    SELECT v.hour, v.session_id, v.pageviews, v.events, v.first_ts, v.last_ts, v.exit_ts,
           v.exit_page AS hour_exit_page, {VISITOR[tier]} AS visitor{visit_select}
    FROM visit_hours v{session_join}
    WHERE v.site_id = {site} AND v.hour >= {start} AND v.hour < {end}
),"""
    if "exit_page" in named:
        sql += """
exits AS (
    SELECT DISTINCT ON (session_id) session_id, hour_exit_page AS exit_page FROM r
    WHERE exit_ts IS NOT NULL ORDER BY session_id, exit_ts DESC, hour_exit_page DESC
),
e AS (SELECT r.*, x.exit_page FROM r LEFT JOIN exits x ON x.session_id = r.session_id),"""
    else:
        sql += """
e AS (SELECT * FROM r),"""
    sql += filtered_aggregates(
        query, filters, hour_dims, group_by, "sum(pageviews) AS pageviews, sum(events) AS events"
    )
    if session_metrics:
        # Visit filters keep or drop a whole session, so f holds all of a kept session's hours.
        session_group = "".join(f", {d.split(' AS ')[-1]}" for d in plain)
        sql += f""",
s AS (
    SELECT session_id, {", ".join([*plain, ""])}
           sum(pageviews) AS pageviews, {POSTGRES.seconds_between("min(first_ts)", "max(last_ts)")}
           AS duration, min(first_ts) AS started
    FROM f GROUP BY session_id{session_group}
),
sa AS (
    SELECT *{group_key(len(dims))} FROM (
        SELECT {", ".join([*session_dims, ""])}
               {VISIT_AGGREGATES}
        FROM s {group_by}) g
)"""
    sql += outcome(query, p, visit_filter, session_metrics)
    return p.finish(sql)
