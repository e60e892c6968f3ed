"""Stats queries as PostgreSQL over `events` and `initial_events`.

Every query has the same shape:

    ev   the site's events in the range, each with its session's attributes (initial_events)
    e    ev plus each session's exit page (its last page view in the range)
    f    e narrowed by the filters
    s    per session that has a matching event: page views, duration, start
    ea   event metrics (visitors, pageviews, events) of f, grouped by the dimensions
    sa   visit metrics (visits, bounce rate, duration, views per visit) of those sessions,
         grouped by the same dimensions (a time dimension by the session's start)

Names come only from the tables in `stats_request`; every value is a bind parameter.
"""

from __future__ import annotations

from typing import Any

from query.stats_request import (
    DIMENSIONS,
    PROPS_PREFIX,
    SESSION_METRICS,
    TIME_DIMENSIONS,
    Combination,
    Condition,
    Filter,
    StatsQuery,
)
from topup.tiers import Tier

VISIT_COLUMNS = (
    "referrer_source AS source",
    "channel",
    "referrer",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_content",
    "utm_term",
    "device",
    "browser",
    "browser_version",
    "os",
    "os_version",
    "screen",
    "country",
    "region",
    "city",
    "entry_page",
    "distinct_id",
)

# How a visitor is counted, by tier (README, "Processing").
VISITOR = {
    Tier.BANNER_FREE: "e.session_id::text",
    Tier.PRIVACY_POLICY: "coalesce(e.visitor_id::text, 's' || e.session_id::text)",
    Tier.FULL: "coalesce('d' || i.distinct_id, e.visitor_id::text, 's' || e.session_id::text)",
}
# A session whose initial event is at most this long before the range still counts.
SESSION_SLACK = "interval '2 days'"


SESSION_COLUMNS = (
    "coalesce(sa.visits, 0) AS visits, sa.visit_duration, sa.bounce_rate, sa.views_per_visit,"
)


class Params:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _column(dimension: str, params: Params) -> str:
    if dimension.startswith(PROPS_PREFIX):
        return f"(props ->> {params.add(dimension[len(PROPS_PREFIX) :])})"
    return DIMENSIONS[dimension][0]


def _bucket(interval: str, column: str, zone_param: str) -> str:
    # Local wall-clock time in the site's zone, truncated: buckets follow the site's days.
    return f"date_trunc('{interval}', {column} AT TIME ZONE {zone_param})"


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _condition(node: Condition, params: Params) -> str:
    column = _column(node.dimension, params)
    values = list(node.values)
    if node.operator in ("is", "is_not"):
        test = f"{column} = ANY({params.add(values)}::text[])"
    elif node.operator in ("contains", "contains_not"):
        patterns = [f"%{_escape_like(v)}%" for v in values]
        test = f"{column} ILIKE ANY({params.add(patterns)}::text[])"
    else:
        test = f"{column} ~ ANY({params.add(values)}::text[])"
    if node.operator.endswith("_not"):
        # NULL (not set) is "not" any value.
        return f"({column} IS NULL OR NOT ({test}))"
    return f"coalesce({test}, false)"


def where(node: Filter | None, params: Params) -> str:
    if node is None:
        return "true"
    if isinstance(node, Condition):
        return _condition(node, params)
    assert isinstance(node, Combination)
    if node.operator == "not":
        return f"NOT ({where(node.children[0], params)})"
    joiner = " AND " if node.operator == "and" else " OR "
    return "(" + joiner.join(where(c, params) for c in node.children) + ")"


def build(
    query: StatsQuery, site_id: Any, tier: Tier, visit_filter: Filter | None = None
) -> tuple[str, list[Any]]:
    """The SQL and parameters answering `query` for one site.

    Rows: the dimension values (d0, d1, …) then one column per metric name. `visit_filter`,
    used for conversion_rate's baseline, narrows `base_visitors`.
    """
    p = Params()
    site, start, end = p.add(site_id), p.add(query.start), p.add(query.end)
    zone = p.add(query.timezone) if query.interval else ""
    dims = list(query.dimensions)
    event_dims, session_dims = [], []
    for i, dim in enumerate(dims):
        if dim in TIME_DIMENSIONS:
            assert query.interval is not None
            event_dims.append(f"{_bucket(query.interval, 'ts', zone)} AS d{i}")
            session_dims.append(f"{_bucket(query.interval, 's.started', zone)} AS d{i}")
        else:
            column = _column(dim, p)
            event_dims.append(f"{column} AS d{i}")
            session_dims.append(f"d.d{i}")
    plain = [f"{_column(d, p)} AS d{i}" for i, d in enumerate(dims) if d not in TIME_DIMENSIONS]
    group = ", ".join(f"d{i}" for i in range(len(dims)))
    group_by = f"GROUP BY {group}" if dims else ""
    filters = where(query.filter, p)
    # The groups' key as a text array: arrays compare NULL elements as equal and hash, so the
    # event and visit aggregates join on it (a FULL JOIN needs a hashable condition).
    key = (
        (", ARRAY[" + ", ".join(f"d{i}::text" for i in range(len(dims))) + "] AS k") if dims else ""
    )
    session_metrics = SESSION_METRICS & set(query.metrics)

    sql = f"""
WITH ev AS (
    SELECT e.ts, e.name, e.pathname, e.hostname, e.props, e.session_id,
           {VISITOR[tier]} AS visitor, {", ".join("i." + c for c in VISIT_COLUMNS)}
    FROM events e
    JOIN initial_events i ON i.site_id = e.site_id AND i.session_id = e.session_id
    WHERE e.site_id = {site} AND e.ts >= {start} AND e.ts < {end}
      AND i.site_id = {site} AND i.ts >= {start}::timestamptz - {SESSION_SLACK} AND i.ts < {end}
),
exits AS (
    SELECT DISTINCT ON (session_id) session_id, pathname AS exit_page
    FROM ev WHERE name = 'pageview' ORDER BY session_id, ts DESC
),
e AS (SELECT ev.*, x.exit_page FROM ev LEFT JOIN exits x USING (session_id)),
f AS (SELECT * FROM e WHERE {filters}),
ea AS (
    SELECT *{key} FROM (
        SELECT {", ".join([*event_dims, ""])}
               count(DISTINCT visitor) AS visitors,
               count(*) FILTER (WHERE name = 'pageview') AS pageviews,
               count(*) AS events
        FROM f {group_by}) g
)"""
    if session_metrics:
        distinct_dims = ", ".join([*plain, "session_id"])
        sql += f""",
s AS (
    SELECT session_id, count(*) FILTER (WHERE name = 'pageview') AS pageviews,
           extract(epoch FROM max(ts) - min(ts)) AS duration, min(ts) AS started
    FROM e WHERE session_id IN (SELECT session_id FROM f) GROUP BY session_id
),
sa AS (
    SELECT *{key} FROM (
        SELECT {", ".join([*session_dims, ""])}
               count(*) AS visits,
               avg(s.duration) AS visit_duration,
               100.0 * avg(CASE WHEN s.pageviews <= 1 THEN 1 ELSE 0 END) AS bounce_rate,
               avg(s.pageviews) AS views_per_visit
        FROM (SELECT DISTINCT {distinct_dims} FROM f) d JOIN s USING (session_id)
        {group_by}) g
)"""
    totals = "(SELECT count(DISTINCT visitor) FROM f) AS total_visitors"
    base = (
        f"(SELECT count(DISTINCT visitor) FROM e WHERE {where(visit_filter, p)}) AS base_visitors"
    )
    select_dims = [
        f"coalesce(ea.d{i}, sa.d{i}) AS d{i}" if session_metrics else f"ea.d{i}"
        for i in range(len(dims))
    ]
    if session_metrics and dims:
        join = "ea FULL OUTER JOIN sa ON ea.k = sa.k"
    elif session_metrics:
        join = "ea CROSS JOIN sa"  # one row each
    else:
        join = "ea"
    sql += f"""
SELECT {", ".join([*select_dims, ""])}
       coalesce(ea.visitors, 0) AS visitors, coalesce(ea.pageviews, 0) AS pageviews,
       coalesce(ea.events, 0) AS events,
       {SESSION_COLUMNS if session_metrics else ""}
       {totals}, {base}
FROM {join}"""
    return sql, p.values
