"""The top stats (visitors, visits, page views, events, bounce rate, visit duration, views per
visit; no dimension, no filter) and the visitors, visits, page views and events per value of one
visit attribute, page or event name (the dashboard's cards; no filter) from the closed days'
totals in `visit_days` and `visit_day_values` (see `topup/visit_days.py` for why they add up),
plus `visit_hours` (for a page or event name: `events`) for the rest of the range.

For a range [start, end) on whole hours, the inner days are the built, exact days d whose
sessions lie wholly inside it ([d, d + 2 days) within the range); their totals are added up.
Every other session with rows in the range is summed from `visit_hours`: a row of day h belongs
to a session begun on h, or carried over from h - 1 (flagged `continued`), and it is left to the
rest when that day is not inner. So the rest is today's rows but yesterday's carried-over ones,
and the first day's carried-over rows (found by a partial index): a filter, no join. A range
that ends with a built day (the top stats' previous period) takes that day's totals cut at
midnight instead of its rows (`_cut_day`). A card of visitors alone takes the counts of the
rest's open days (today's and yesterday's so far, `topup/open_days.py`) instead of their rows
before the count's end (`_open_days`). The answer
equals `visit_sql`'s (tests compare them): the rest's rows join their sessions' attributes as
`visit_sql` joins them.

Not for the `full` tier: its visitors are consented ids that last across days.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from query.stats_request import StatsQuery
from query.stats_sql import POSTGRES, Params
from query.stats_sql import VISITOR as EVENT_VISITOR
from query.visit_sql import VISITOR, on_the_hour
from topup.local_days import EVENT_VALUES
from topup.open_days import ON_INITIAL_ROW, counted_before, member
from topup.tiers import Tier
from topup.utc import hour_of
from topup.visit_days import ATTRIBUTES, midnight

TOTALS = frozenset(
    {"visitors", "visits", "pageviews", "events", "views_per_visit", "bounce_rate",
     "visit_duration"}
)  # fmt: skip
PER_VALUE = frozenset({"visitors", "visits", "pageviews", "events"})
# Page views and events alone per page or name are the local days' (any zone, no distinct count).
_DISTINCT = frozenset({"visitors", "visits"})
_DAY = timedelta(days=1)


def answers(query: StatsQuery, tier: Tier) -> bool:
    """Whether this query is one the day totals can answer (if the range has inner days)."""
    if tier is Tier.FULL or query.filter is not None:
        return False
    if not (on_the_hour(query.start) and on_the_hour(query.end)):
        return False
    if not query.dimensions:
        return set(query.metrics) <= TOTALS
    if len(query.dimensions) != 1 or not set(query.metrics) <= PER_VALUE:
        return False
    dimension = query.dimensions[0]
    return dimension in ATTRIBUTES or (
        dimension in EVENT_VALUES and bool(_DISTINCT & set(query.metrics))
    )


Span = tuple[datetime, datetime]


def _spans(days: list[date], start: datetime, end: datetime) -> list[Span]:
    """The instants of these (ascending) days within [start, end), consecutive days merged."""
    spans: list[Span] = []
    for day in days:
        lo, hi = max(start, midnight(day)), min(end, midnight(day + _DAY))
        if spans and spans[-1][1] == lo:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans


def _within(p: Params, column: str, spans: list[Span]) -> str:
    # One range per span, so Postgres prunes the day partitions outside them.
    return " OR ".join(
        f"({column} >= {p.add(lo)}::timestamptz AND {column} < {p.add(hi)}::timestamptz)"
        for lo, hi in spans
    )


def _inner_span(query: StatsQuery) -> tuple[date, date]:
    """The first and last day whose sessions can lie wholly inside the range."""
    first = query.start.date()
    if query.start > midnight(first):
        first += _DAY
    return first, (query.end - 2 * _DAY).date()


def _range_days(query: StatsQuery) -> list[date]:
    """The UTC days the range touches."""
    days = []
    day = query.start.date()
    while midnight(day) < query.end:
        days.append(day)
        day += _DAY
    return days


# Which of a UTC day's rows the inner days leave to the rest: all, only those of the sessions
# begun that day, or only those carried over from the day before (`visit_hours.continued`).
ALL, BEGUN, CARRIED = "all", "begun", "carried"


def _rest(query: StatsQuery, inner: set[date]) -> dict[str, list[date]]:
    """The range's UTC days by which of their rows the inner days do not count: a row of day h
    belongs to a session begun on h, or carried over from h - 1 (its key names that day), and
    an inner day counts the sessions begun on it."""
    rest: dict[str, list[date]] = {ALL: [], BEGUN: [], CARRIED: []}
    for h in _range_days(query):
        begun, carried = h not in inner, h - _DAY not in inner
        if begun or carried:
            rest[ALL if begun and carried else BEGUN if begun else CARRIED].append(h)
    return rest


def _rest_rows(sql: Params, query: StatsQuery, rest: dict[str, list[date]]) -> str:
    """The condition on `visit_hours v` for the rows the inner days do not count."""
    flag = {ALL: "", BEGUN: " AND NOT v.continued", CARRIED: " AND v.continued"}
    parts = [
        f"(({_within(sql, 'v.hour', _spans(days, query.start, query.end))}){flag[which]})"
        for which, days in rest.items()
        if days
    ]
    return f"({' OR '.join(parts)})" if parts else "FALSE"


def _began_days(rest: dict[str, list[date]]) -> list[date]:
    """The days the rest's sessions began on (none of them inner), ascending."""
    return sorted(set(rest[ALL] + rest[BEGUN]) | {h - _DAY for h in rest[ALL] + rest[CARRIED]})


def _on_days(sql: Params, column: str, days: list[date]) -> str:
    """`column` falls on one of these (ascending) UTC days."""
    return _within(sql, column, _spans(days, midnight(days[0]), midnight(days[-1] + _DAY)))


def _rest_spans(query: StatsQuery, rest: dict[str, list[date]]) -> dict[str, list[Span]]:
    return {which: _spans(days, query.start, query.end) for which, days in rest.items() if days}


def _rest_events(sql: Params, spans: dict[str, list[Span]], site: str, select: str) -> list[str]:
    """`select` (columns of `events e`) over the events the inner days do not count, one
    SELECT per kind of day (UNION ALL them). An event has no flag: its session is carried over
    when the session has a carried-over row on the event's day."""
    parts = []
    for which, within in spans.items():
        part = f"""
    {select}
    FROM events e
    WHERE e.site_id = {site} AND ({_within(sql, "e.ts", within)})"""
        # From the hour of each span's start: a count's end may fall inside an hour.
        hours = [(hour_of(lo), hi) for lo, hi in within]
        carried = f"""FROM visit_hours c
          WHERE c.site_id = {site} AND ({_within(sql, "c.hour", hours)}) AND c.continued"""
        if which == BEGUN:
            part += f"""
      AND NOT EXISTS (SELECT 1 {carried} AND c.session_id = e.session_id)"""
        elif which == CARRIED:
            # Only the hours with carried-over rows (mostly the first), not the whole day.
            part += f"""
      AND e.ts >= (SELECT min(c.hour) {carried})
      AND e.ts < (SELECT max(c.hour) + interval '1 hour' {carried})
      AND EXISTS (SELECT 1 {carried} AND c.session_id = e.session_id)"""
        parts.append(part)
    return parts


async def fetch(
    conn: asyncpg.Connection, query: StatsQuery, site_id: Any, tier: Tier
) -> list[Mapping[str, Any]] | None:
    """The rows `visit_sql` gives for this query; None when no inner day is built."""
    first, last = _inner_span(query)
    if first > last:
        return None
    # One snapshot: a build or a late delivery between the statements would mix two states.
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        days = await conn.fetch(
            """SELECT day, visitors, visits, pageviews, events, bounces, duration, cut_pageviews,
                      cut_events, cut_bounces, cut_duration
               FROM visit_days
               WHERE site_id = $1 AND day >= $2 AND day <= $3 AND exact""",
            site_id,
            first,
            last + _DAY,
        )
        built = [r for r in days if r["day"] <= last]
        if not built:
            return None
        sql = Params(POSTGRES)
        site = sql.add(site_id)
        inner = {r["day"] for r in built}
        rest = _rest(query, inner)
        if not query.dimensions:
            cut = _cut_day(query, rest, days)
            if cut is not None:
                rest = rest | {BEGUN: [d for d in rest[BEGUN] if d != cut["day"]]}
            text = _totals(sql, query, tier, site, built + ([cut] if cut else []), rest)
        else:
            opened = await _open_days(conn, query, site_id, tier, rest)
            if query.dimensions[0] in _ON_INITIAL_ROW and set(query.metrics) <= _DISTINCT:
                text = _visits_per_value(sql, query, tier, site, inner, rest, opened)
            else:
                text = _per_value(sql, query, tier, site, inner, rest, opened)
        text, values = sql.finish(text)
        return list(await conn.fetch(text, *values))


async def _open_days(
    conn: asyncpg.Connection,
    query: StatsQuery,
    site_id: Any,
    tier: Tier,
    rest: dict[str, list[date]],
) -> dict[date, datetime]:
    """The rest's days whose sessions begun on them are counted so far (`topup/open_days.py`)
    for this query, by day: up to when. Only for visitors alone, and days the range holds
    from midnight to their count's end."""
    if set(query.metrics) != {"visitors"} or query.dimensions[0] not in _OPEN_DIMENSIONS:
        return {}
    days = [d for d in rest[BEGUN] + rest[ALL] if midnight(d) >= query.start]
    rows = await conn.fetch(
        """SELECT day, upto FROM open_days
           WHERE site_id = $1 AND day = ANY($2::date[]) AND tier = $3 AND upto <= $4""",
        site_id,
        days,
        tier.value,
        query.end,
    )
    return {r["day"]: r["upto"] for r in rows}


def _not_open(
    rest: dict[str, list[date]], opened: Mapping[date, datetime]
) -> dict[str, list[date]]:
    """The rest without the open days' sessions begun on them (their counts hold those): an
    open day of kind ALL keeps its carried-over rows."""
    return {
        ALL: [d for d in rest[ALL] if d not in opened],
        BEGUN: [d for d in rest[BEGUN] if d not in opened],
        CARRIED: sorted(rest[CARRIED] + [d for d in rest[ALL] if d in opened]),
    }


_OPEN_DIMENSIONS = frozenset(ON_INITIAL_ROW) | frozenset(EVENT_VALUES)


def _since_counted(query: StatsQuery, day: date, upto: datetime) -> Span:
    """The instants of an open day after its count, within the range."""
    return upto, min(query.end, midnight(day + _DAY))


def _cut_day(
    query: StatsQuery, rest: dict[str, list[date]], days: list[asyncpg.Record]
) -> dict[str, Any] | None:
    """The range's last day, when the range holds it whole and ends with it (the previous
    period's last day, a range ending yesterday) and it is built with its cut totals: those
    totals, in place of its begun sessions' rows (its sessions' rows of the next day lie
    outside the range, so the rest holds none of them to group with)."""
    last = (query.end - _DAY).date()
    whole = query.start <= midnight(last) and query.end == midnight(last + _DAY)
    row = next((r for r in days if r["day"] == last), None)
    if not whole or last not in rest[BEGUN] or row is None or row["cut_events"] is None:
        return None
    return dict(row) | {k: row[f"cut_{k}"] for k in ("pageviews", "events", "bounces", "duration")}


def _totals(
    sql: Params,
    query: StatsQuery,
    tier: Tier,
    site: str,
    built: list[Mapping[str, Any]],
    rest: dict[str, list[date]],
) -> str:
    totals = {k: sum(r[k] for r in built) for k in ("visits", "pageviews", "events", "bounces")}
    totals["visitors"] = sum(r["visits" if tier is Tier.BANNER_FREE else "visitors"] for r in built)
    duration = sum(r["duration"] for r in built)
    visits = f"({sql.add(totals['visits'])}::bigint + count(*))"
    return f"""
WITH r AS (
    SELECT v.session_id, {VISITOR[tier]} AS visitor, v.pageviews, v.events, v.first_ts,
           v.last_ts
    FROM visit_hours v
    WHERE v.site_id = {site} AND {_rest_rows(sql, query, rest)}
),
s AS (
    SELECT sum(pageviews) AS pageviews,
           extract(epoch FROM max(last_ts) - min(first_ts)) AS duration
    FROM r GROUP BY session_id
)
SELECT {sql.add(totals["visitors"])}::bigint + (SELECT count(DISTINCT visitor) FROM r) AS visitors,
       {visits} AS visits,
       {sql.add(totals["pageviews"])}::bigint + coalesce(sum(pageviews), 0)::bigint AS pageviews,
       {sql.add(totals["events"])}::bigint + (SELECT coalesce(sum(events), 0) FROM r) AS events,
       ({sql.add(duration)}::numeric + coalesce(sum(duration), 0)) / nullif({visits}, 0)
           AS visit_duration,
       100.0 * (({sql.add(totals["bounces"])}::bigint + count(*) FILTER (WHERE pageviews <= 1))
                ::numeric / nullif({visits}, 0)) AS bounce_rate,
       ({sql.add(totals["pageviews"])}::bigint + coalesce(sum(pageviews), 0))::numeric
           / nullif({visits}, 0) AS views_per_visit
FROM s"""


# The attributes the session's initial row holds (the exit page comes from its rows): the rest's
# rows join that row.
_ON_INITIAL_ROW = frozenset(ON_INITIAL_ROW)


def _initial_row(site: str) -> str:
    """The join of a `visit_hours v` row to its session's initial row `i`."""
    return f"""
    JOIN initial_events i ON i.site_id = v.site_id AND i.session_id = v.session_id
      AND i.site_id = {site}"""


def _visits_per_value(
    sql: Params,
    query: StatsQuery,
    tier: Tier,
    site: str,
    inner: set[date],
    rest: dict[str, list[date]],
    opened: Mapping[date, datetime],
) -> str:
    """Visitors and visits per value of an attribute of the initial row, without the rest's
    visit_hours rows where they are not needed: a session the rest counts that began inside the
    range has its first event there, so its initial row alone counts it. Only the sessions begun
    before the range are found through their rows in it: rows of its first UTC day, and the
    next day's carried-over rows (`i.ts < start` only keeps that join small: the counts are
    distinct). `visit_sql` joins no session begun after the range's end."""
    column = ATTRIBUTES[query.dimensions[0]]
    start, end = sql.add(query.start), sql.add(query.end)
    parts = []
    began_inside = [d for d in _range_days(query) if d not in inner and d not in opened]
    if began_inside:
        parts.append(f"""
    SELECT e.session_id, {EVENT_VISITOR[tier]} AS visitor, e.{column} AS value
    FROM initial_events e  -- read as the session's first event, whose visitor it keeps
    WHERE e.site_id = {site} AND e.ts >= {start}::timestamptz AND e.ts < {end}::timestamptz
      AND ({_on_days(sql, "e.ts", began_inside)})""")
    day = query.start.date()
    # From midnight, only the first day's carried-over rows began before the range; from a
    # later hour, any row of that day, and the next day's carried-over rows, can have.
    first_rest: dict[str, list[date]] = {ALL: [], BEGUN: [], CARRIED: []}
    if query.start == midnight(day):
        first_rest[CARRIED].append(day)
    else:
        first_rest[ALL].append(day)
        first_rest[CARRIED].append(day + _DAY)
    parts.append(f"""
    SELECT v.session_id, {VISITOR[tier]}, i.{column}
    FROM visit_hours v{_initial_row(site)}
    WHERE v.site_id = {site} AND {_rest_rows(sql, query, first_rest)}
      AND ({_on_days(sql, "i.ts", [day - _DAY, day])}) AND i.ts < {start}::timestamptz""")
    for day, upto in opened.items():  # its sessions since the count, of visitors it lacks
        lo, hi = _since_counted(query, day, upto)
        since, counted = f"{sql.add(midnight(day))}::timestamptz", f"{sql.add(upto)}::timestamptz"
        parts.append(f"""
    SELECT e.session_id, {EVENT_VISITOR[tier]}, e.{column}
    FROM initial_events e
    WHERE e.site_id = {site} AND e.ts >= {sql.add(lo)}::timestamptz
      AND e.ts < {sql.add(hi)}::timestamptz
      AND NOT {counted_before(tier, column, site, since, counted)}""")
    rows = f"""
e (session_id, visitor, value) AS ({" UNION ALL".join(parts)}
)"""
    return _added_to_the_days(sql, query, tier, site, rows, sorted(inner), opened)


def _per_value(
    sql: Params,
    query: StatsQuery,
    tier: Tier,
    site: str,
    inner: set[date],
    rest: dict[str, list[date]],
    opened: Mapping[date, datetime],
) -> str:
    dimension = query.dimensions[0]
    if dimension == "visit:exit_page":
        # As visit_sql: the last page view of the session's rows in the range, no join.
        rows = f"""
r AS (
    SELECT v.session_id, {VISITOR[tier]} AS visitor, v.pageviews, v.events, v.exit_ts,
           v.exit_page AS hour_exit_page
    FROM visit_hours v
    WHERE v.site_id = {site} AND {_rest_rows(sql, query, rest)}
),
exits AS (
    SELECT DISTINCT ON (session_id) session_id, hour_exit_page AS exit_page FROM r
    WHERE exit_ts IS NOT NULL ORDER BY session_id, exit_ts DESC, hour_exit_page DESC
),
e AS (
    SELECT r.session_id, r.visitor, x.exit_page AS value, r.pageviews, r.events
    FROM r LEFT JOIN exits x ON x.session_id = r.session_id
)"""
    elif dimension in EVENT_VALUES:
        # The events of the rest (as the events SQL, no join: an event without a session's
        # initial row counts too).
        select = f"""SELECT e.session_id, {EVENT_VISITOR[tier]} AS visitor,
           e.{EVENT_VALUES[dimension]} AS value,
           CASE WHEN e.name = 'pageview' THEN 1 ELSE 0 END AS pageviews, 1 AS events"""
        parts = _open_rest_events(sql, query, tier, site, rest, opened, select)
        parts = parts or ["SELECT NULL::bigint, NULL::bigint, NULL::text, 0, 0 WHERE false"]
        rows = f"""
e (session_id, visitor, value, pageviews, events) AS ({" UNION ALL".join(parts)}
)"""
    else:
        # The rest's rows joined to their sessions' initial rows, read on the days those began.
        began = _began_days(rest)
        on_began = f"({_on_days(sql, 'i.ts', began)})" if began else "FALSE"
        rows = f"""
e AS (
    SELECT v.session_id, {VISITOR[tier]} AS visitor, i.{ATTRIBUTES[dimension]} AS value,
           v.pageviews, v.events
    FROM visit_hours v{_initial_row(site)}
    WHERE v.site_id = {site} AND {_rest_rows(sql, query, rest)} AND {on_began}
)"""
    return _added_to_the_days(sql, query, tier, site, rows, sorted(inner), opened)


def _open_rest_events(
    sql: Params,
    query: StatsQuery,
    tier: Tier,
    site: str,
    rest: dict[str, list[date]],
    opened: Mapping[date, datetime],
    select: str,
) -> list[str]:
    """`_rest_events` with the open days' counts in place of their sessions' events before the
    count: the events since, and the next day's carried-over events of the same sessions (same
    visitors), each only for the visitors the count lacks for its page or event name."""
    dimension = query.dimensions[0]
    rest = _not_open(rest, opened)
    after = {d + _DAY for d in opened} & set(rest[ALL] + rest[CARRIED])
    rest = {  # the days after open days without their carried-over events
        ALL: [d for d in rest[ALL] if d not in after],
        BEGUN: sorted(rest[BEGUN] + [d for d in rest[ALL] if d in after]),
        CARRIED: [d for d in rest[CARRIED] if d not in after],
    }
    parts = _rest_events(sql, _rest_spans(query, rest), site, select)
    for day, upto in opened.items():
        kinds = {BEGUN: [_since_counted(query, day, upto)]}
        if day + _DAY in after:
            kinds[CARRIED] = _spans([day + _DAY], query.start, query.end)
        lacking = f"""
      AND NOT EXISTS (
          SELECT 1 FROM open_day_members m
          WHERE m.site_id = {site} AND m.day = {sql.add(day)} AND m.dimension = {sql.add(dimension)}
            AND m.value = e.{EVENT_VALUES[dimension]} AND m.member = {member(tier, "e")})"""
        parts += [part + lacking for part in _rest_events(sql, kinds, site, select)]
    return parts


# The distinct counts of the rest's rows (`e`): the column each counts.
_DISTINCT_OF = {"visitors": "visitor", "visits": "session_id"}


def _added_to_the_days(
    sql: Params,
    query: StatsQuery,
    tier: Tier,
    site: str,
    rows: str,
    days: list[date],
    opened: Mapping[date, datetime],
) -> str:
    """Per value, the inner days' totals plus the rest's (the CTEs `rows`, ending in `e`) of the
    query's metrics only. A distinct count groups by value and the counted column and then
    counts the groups: hashed, not sorted as count(DISTINCT …) is (top pages over 3M events:
    249 → 143 ms; a country card 78 → 57)."""
    names = sorted(set(query.metrics))
    of_days = ["visits" if m == "visitors" and tier is Tier.BANNER_FREE else m for m in names]
    rest = []
    for metric, counted in _DISTINCT_OF.items():
        if metric in names:
            columns = ", ".join(f"count({counted})" if n == metric else "0" for n in names)
            rest.append(f"""
    SELECT value, {columns}
    FROM (SELECT value, {counted} FROM e GROUP BY value, {counted}) g GROUP BY value""")
    if set(names) - set(_DISTINCT_OF):
        columns = ", ".join("0" if n in _DISTINCT_OF else f"sum({n})" for n in names)
        rest.append(f"""
    SELECT value, {columns} FROM e GROUP BY value""")
    if opened:  # the open days' counts (visitors alone)
        rest.append(f"""
    SELECT value, visitors FROM open_day_values
    WHERE site_id = {site} AND dimension = {sql.add(query.dimensions[0])}
      AND day = ANY({sql.add(sorted(opened))}::date[])""")
    return f"""
WITH {rows}
SELECT d0, {", ".join(f"sum({m})::bigint AS {m}" for m in names)} FROM (
    SELECT value AS d0, {", ".join(f"{c} AS {m}" for c, m in zip(of_days, names, strict=True))}
    FROM visit_day_values
    WHERE site_id = {site} AND dimension = {sql.add(query.dimensions[0])}
      AND day = ANY({sql.add(days)}::date[])
    UNION ALL{" UNION ALL".join(rest)}
) t GROUP BY d0"""
