"""Stats queries as SQL over `events` and `initial_events`, for two stores.

The same builder writes PostgreSQL (the recent store) and Trino, Athena's dialect (the archive;
locally transpiled to DuckDB with sqlglot). The SQL keeps to what both dialects share; the few
differences (placeholders, regular expressions, JSON properties, epoch seconds, de-duplication)
live in `Dialect`. Every query has the same shape:

    ev   the site's events in the range, each with its session's attributes (initial_events)
    e    ev plus each session's exit page (its last page view in the range)
    f    e narrowed by the filters
    s    per session that has a matching event: page views, duration, start
    ea   event metrics (visitors, pageviews, events) of f, grouped by the dimensions
    sa   visit metrics (visits, bounce rate, duration, views per visit) of those sessions,
         grouped by the same dimensions (a time dimension by the session's start)

Names come only from the tables in `stats_request`. Every value is a bind parameter, except the
range's instants and the site's time zone, which are ours (computed, or checked against the
IANA database) and are written as literals where Athena cannot take a parameter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
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
from topup.archive_layout import EVENT_COLUMNS
from topup.tiers import Tier

VISIT_COLUMNS = (
    "referrer_source AS source", "channel", "referrer", "utm_source", "utm_medium",
    "utm_campaign", "utm_content", "utm_term", "device", "browser", "browser_version", "os",
    "os_version", "screen", "country", "region", "city", "entry_page", "distinct_id",
)  # fmt: skip
SESSION_COLUMNS = (
    "coalesce(sa.visits, 0) AS visits, sa.visit_duration, sa.bounce_rate, sa.views_per_visit,"
)

# Visit metrics over `s`, one row per session: its page views, duration and start.
VISIT_AGGREGATES = (
    "count(*) AS visits, avg(s.duration) AS visit_duration, "
    "100.0 * avg(CASE WHEN s.pageviews <= 1 THEN 1 ELSE 0 END) AS bounce_rate, "
    "avg(s.pageviews) AS views_per_visit"
)

# The metrics that need each group's distinct visitors: the costliest aggregate (it sorts every
# row of the group), so it is computed only for them.
VISITOR_METRICS = frozenset({"visitors", "percentage", "conversion_rate"})

# How a visitor is counted, by tier (README, "Processing").
VISITOR = {
    # 64-bit keys compare and count fastest; a daily hash and a session key colliding is a
    # 1-in-2^64 event. The full tier's consented id is text, so there the key is text.
    Tier.BANNER_FREE: "e.session_id",
    Tier.PRIVACY_POLICY: "coalesce(e.visitor_id, e.session_id)",
    Tier.FULL: (
        "coalesce('d' || i.distinct_id, CAST(e.visitor_id AS VARCHAR), "
        "'s' || CAST(e.session_id AS VARCHAR))"
    ),
}
# A session whose initial event is at most this long before the range still counts.
SESSION_SLACK = "INTERVAL '2' DAY"
_ZONE = re.compile(r"^[A-Za-z0-9_+\-/]+$")


@dataclass(frozen=True)
class Dialect:
    name: str

    def prop(self, key_param: str) -> str:
        if self.name == "postgres":
            return f"(props ->> CAST({key_param} AS TEXT))"
        return f"json_extract_scalar(props, {key_param})"

    def prop_key(self, key: str) -> str:
        # Postgres takes the key itself; Trino (and DuckDB) a JSON path to it.
        return key if self.name == "postgres" else "$." + json.dumps(key)

    def regex(self, column: str, pattern_param: str) -> str:
        if self.name == "postgres":
            return f"{column} ~ {pattern_param}"
        return f"regexp_like({column}, {pattern_param})"

    def seconds_between(self, first: str, last: str) -> str:
        if self.name == "postgres":
            return f"extract(epoch FROM {last} - {first})"
        return f"(to_unixtime({last}) - to_unixtime({first}))"

    def instant(self, value: datetime, params: Params) -> str:
        if self.name == "postgres":
            return f"CAST({params.add(value)} AS TIMESTAMPTZ)"
        stamp = value.strftime("%Y-%m-%d %H:%M:%S.%f")
        return f"TIMESTAMP '{stamp} UTC'"

    def local(self, column: str, zone: str) -> str:
        """A UTC instant as wall-clock time in `zone`."""
        if not _ZONE.match(zone):
            raise ValueError(f"not a time zone name: {zone!r}")
        if self.name == "postgres":
            return f"({column} AT TIME ZONE '{zone}')"
        return f"CAST({column} AT TIME ZONE '{zone}' AS TIMESTAMP)"

    def grouped(self, column: str) -> str:
        """A text column to group by. In Postgres, byte order ("C"): the groups are the same in
        every deterministic collation, and comparing bytes is what makes sorting a million
        rows for `count(DISTINCT …)` fast (a third less time than C.UTF-8 here, far more than
        en_US). Trino compares bytes anyway."""
        return f'({column} COLLATE "C")' if self.name == "postgres" else column

    def table(self, name: str, columns: str) -> str:
        # The archive is at least once: an event may be there twice, identical; read it once.
        return name if self.name == "postgres" else f"(SELECT DISTINCT {columns} FROM {name})"


POSTGRES = Dialect("postgres")
TRINO = Dialect("trino")


class Params:
    """Bind parameters. Each value gets a marker; `finish` turns the markers into the dialect's
    placeholders: `$n` for Postgres, and for Trino a `?` per use, in the order they appear."""

    _MARKER = re.compile(r"__p(\d+)__")

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"__p{len(self.values)}__"

    def finish(self, sql: str) -> tuple[str, list[Any]]:
        if self.dialect.name == "postgres":
            # Numbered by first use; a value no fragment ended up using is left out (Postgres
            # refuses a parameter whose type it cannot infer from a use).
            numbers: dict[str, int] = {}
            used: list[Any] = []

            def numbered(match: re.Match[str]) -> str:
                if match.group(1) not in numbers:
                    used.append(self.values[int(match.group(1)) - 1])
                    numbers[match.group(1)] = len(used)
                return f"${numbers[match.group(1)]}"

            return self._MARKER.sub(numbered, sql), used
        ordered: list[Any] = []

        def positional(match: re.Match[str]) -> str:
            ordered.append(self.values[int(match.group(1)) - 1])
            return "?"

        return self._MARKER.sub(positional, sql), ordered


def column(dimension: str, params: Params) -> str:
    if dimension.startswith(PROPS_PREFIX):
        key = dimension[len(PROPS_PREFIX) :]
        return params.dialect.prop(params.add(params.dialect.prop_key(key)))
    return DIMENSIONS[dimension][0]


def grouped(dimension: str, params: Params) -> str:
    return params.dialect.grouped(column(dimension, params))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _condition(node: Condition, params: Params) -> str:
    col = column(node.dimension, params)
    if node.operator in ("is", "is_not"):
        test = f"{col} IN ({', '.join(params.add(v) for v in node.values)})"
    elif node.operator in ("contains", "contains_not"):
        likes = [
            f"lower({col}) LIKE {params.add('%' + _escape_like(v.lower()) + '%')} ESCAPE '\\'"
            for v in node.values
        ]
        test = "(" + " OR ".join(likes) + ")"
    else:
        test = (
            "(" + " OR ".join(params.dialect.regex(col, params.add(v)) for v in node.values) + ")"
        )
    if node.operator.endswith("_not"):
        # NULL (not set) is "not" any value.
        return f"({col} IS NULL OR NOT {test})"
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


def named_dimensions(query: StatsQuery, extra: Filter | None) -> set[str]:
    """Every dimension a query groups or filters by."""
    found = set(query.dimensions)
    stack = [n for n in (query.filter, extra) if n is not None]
    while stack:
        node = stack.pop()
        if isinstance(node, Condition):
            found.add(node.dimension)
        else:
            stack.extend(node.children)
    return found


def visitors_aggregate(query: StatsQuery) -> str:
    """`ea`'s visitors column: the distinct count when a metric asks for it, else 0."""
    return "count(DISTINCT visitor)" if VISITOR_METRICS & set(query.metrics) else "0"


def filtered_aggregates(
    query: StatsQuery, filters: str, dims: list[str], group_by: str, counts: str
) -> str:
    """The CTEs `f` (`e` narrowed by the filters) and `ea` (its visitors and the `counts` of
    page views and events, per group), as both builders write them."""
    return f"""
f AS (SELECT * FROM e WHERE {filters}),
ea AS (
    SELECT *{group_key(len(dims))} FROM (
        SELECT {", ".join([*dims, ""])}
               {visitors_aggregate(query)} AS visitors, {counts}
        FROM f {group_by}) g
)"""


def group_key(count: int) -> str:
    """The groups' key as one string: hashable, and NULL-safe, so the event and visit
    aggregates can FULL JOIN on it in every dialect."""
    parts = [f"coalesce(CAST(d{i} AS VARCHAR), '~null~')" for i in range(count)]
    return ", " + " || '|~|' || ".join(parts) + " AS k" if count else ""


def join_sessions(
    alias: str, initials: str, named: set[str], tier: Tier, site: str, start: str, end: str
) -> tuple[str, str]:
    """The join of `alias`'s rows to their session's initial event, and the columns it adds:
    only the session attributes named (and, in the full tier, the distinct id visitors are
    counted by); nothing when none is."""
    columns = [c for c in VISIT_COLUMNS if c.split(" AS ")[-1] in named]
    if tier is Tier.FULL:
        columns.append("distinct_id")
    if not columns:
        return "", ""
    join = f"""
    JOIN {initials} i ON i.site_id = {alias}.site_id AND i.session_id = {alias}.session_id
      AND i.site_id = {site} AND i.ts >= {start} - {SESSION_SLACK} AND i.ts < {end}"""
    return join, "".join(", i." + c for c in columns)


def build(
    query: StatsQuery,
    site_id: Any,
    tier: Tier,
    visit_filter: Filter | None = None,
    dialect: Dialect = POSTGRES,
) -> tuple[str, list[Any]]:
    """The SQL and parameters answering `query` for one site.

    Rows: the dimension values (d0, d1, …) then the metric columns. `visit_filter`, used for
    conversion_rate's baseline, narrows `base_visitors`.
    """
    p = Params(dialect)
    site = p.add(site_id if dialect is POSTGRES else str(site_id))
    start, end = dialect.instant(query.start, p), dialect.instant(query.end, p)
    dims = list(query.dimensions)
    event_dims, session_dims = [], []
    for i, dim in enumerate(dims):
        if dim in TIME_DIMENSIONS:
            assert query.interval is not None
            unit = f"'{query.interval}'"
            event_dims.append(f"date_trunc({unit}, {dialect.local('ts', query.timezone)}) AS d{i}")
            session_dims.append(
                f"date_trunc({unit}, {dialect.local('s.started', query.timezone)}) AS d{i}"
            )
        else:
            event_dims.append(f"{grouped(dim, p)} AS d{i}")
            session_dims.append(f"d.d{i}")
    plain = [f"{grouped(d, p)} AS d{i}" for i, d in enumerate(dims) if d not in TIME_DIMENSIONS]
    group_by = "GROUP BY " + ", ".join(f"d{i}" for i in range(len(dims))) if dims else ""
    filters = where(query.filter, p)
    session_metrics = SESSION_METRICS & set(query.metrics)
    events = dialect.table("events", ", ".join(EVENT_COLUMNS))
    initials = dialect.table("initial_events", "*")

    # Read only what this query needs: the session attributes its dimensions and filters name
    # (and, in the full tier, the distinct id visitors are counted by), and the exit page
    # only when asked for. Most dashboard queries then never touch initial_events.
    named = {DIMENSIONS[d][0] for d in named_dimensions(query, visit_filter) if d in DIMENSIONS}
    session_join, visit_select = join_sessions("e", initials, named, tier, site, start, end)
    sql = f"""
WITH ev AS (
    SELECT e.ts, e.name, e.pathname, e.hostname, e.props, e.session_id,
           {VISITOR[tier]} AS visitor{visit_select}
    FROM {events} e{session_join}
    WHERE e.site_id = {site} AND e.ts >= {start} AND e.ts < {end}
),"""
    if "exit_page" in named:
        sql += """
exits AS (
    SELECT session_id, pathname AS exit_page FROM (
        SELECT session_id, pathname,
               row_number() OVER (PARTITION BY session_id ORDER BY ts DESC, pathname DESC) AS latest
        FROM ev WHERE name = 'pageview') x
    WHERE latest = 1
),
e AS (SELECT ev.*, x.exit_page FROM ev LEFT JOIN exits x ON x.session_id = ev.session_id),"""
    else:
        sql += """
e AS (SELECT * FROM ev),"""
    sql += filtered_aggregates(
        query, filters, event_dims, group_by,
        "count(*) FILTER (WHERE name = 'pageview') AS pageviews, count(*) AS events",
    )  # fmt: skip
    if session_metrics:
        distinct_dims = ", ".join([*plain, "session_id"])
        sql += f""",
s AS (
    SELECT session_id, count(*) FILTER (WHERE name = 'pageview') AS pageviews,
           {dialect.seconds_between("min(ts)", "max(ts)")} AS duration, min(ts) AS started
    FROM e WHERE session_id IN (SELECT session_id FROM f) GROUP BY session_id
),
sa AS (
    SELECT *{group_key(len(dims))} FROM (
        SELECT {", ".join([*session_dims, ""])}
               {VISIT_AGGREGATES}
        FROM (SELECT DISTINCT {distinct_dims} FROM f) d
        JOIN s ON s.session_id = d.session_id
        {group_by}) g
)"""
    sql += outcome(query, p, visit_filter, session_metrics)
    return p.finish(sql)


def outcome(
    query: StatsQuery, p: Params, visit_filter: Filter | None, session_metrics: AbstractSet[str]
) -> str:
    """The final SELECT over the CTEs `e`, `f`, `ea` (and `sa` when visit metrics are asked
    for): one row per group, with the baselines of percentage and conversion_rate when asked for."""
    count = len(query.dimensions)
    totals = "NULL AS total_visitors"
    if "percentage" in query.metrics:
        totals = "(SELECT count(DISTINCT visitor) FROM f) AS total_visitors"
    base = "NULL AS base_visitors"
    if "conversion_rate" in query.metrics:
        base_filter = where(visit_filter, p)
        base = f"(SELECT count(DISTINCT visitor) FROM e WHERE {base_filter}) AS base_visitors"
    select_dims = [
        f"coalesce(ea.d{i}, sa.d{i}) AS d{i}" if session_metrics else f"ea.d{i}"
        for i in range(count)
    ]
    if session_metrics and count:
        join = "ea FULL OUTER JOIN sa ON ea.k = sa.k"
    elif session_metrics:
        join = "ea CROSS JOIN sa"  # one row each
    else:
        join = "ea"
    return f"""
SELECT {", ".join([*select_dims, ""])}
       coalesce(ea.visitors, 0) AS visitors, coalesce(ea.pageviews, 0) AS pageviews,
       coalesce(ea.events, 0) AS events,
       {SESSION_COLUMNS if session_metrics else ""}
       {totals}, {base}
FROM {join}"""
