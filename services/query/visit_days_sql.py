"""The top stats (visitors, visits, page views, events, bounce rate, visit duration, views per
visit; no dimension, no filter) from the closed days' totals in `visit_days` (see
`topup/visit_days.py` for why they add up) plus `visit_hours` for the rest of the range.

For a range [start, end) on whole hours, the inner days are the built, exact days d whose
sessions lie wholly inside it ([d, d + 2 days) within the range); their totals are added up.
Every other session with rows in the range is summed from `visit_hours`: its rows lie in a day h
that is not covered by inner days d = h and d = h - 1 (a row of day h belongs to a session begun
on h or h - 1), and among those rows the sessions begun on an inner day are left out, since
their totals are already counted. The answer equals `visit_sql`'s (tests compare them).

Not for the `full` tier: its visitors are consented ids that last across days.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from query.stats_request import StatsQuery
from query.visit_sql import VISITOR, on_the_hour
from topup.tiers import Tier
from topup.visit_days import midnight

TOTALS = frozenset(
    {"visitors", "visits", "pageviews", "events", "views_per_visit", "bounce_rate",
     "visit_duration"}
)  # fmt: skip
_DAY = timedelta(days=1)


def answers(query: StatsQuery, tier: Tier) -> bool:
    """Whether this query is one the day totals can answer (if the range has inner days)."""
    return (
        tier is not Tier.FULL
        and not query.dimensions
        and query.filter is None
        and set(query.metrics) <= TOTALS
        and on_the_hour(query.start)
        and on_the_hour(query.end)
    )


def _spans(days: list[date], start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The instants of these (ascending) days within [start, end), consecutive days merged."""
    spans: list[tuple[datetime, datetime]] = []
    for day in days:
        lo, hi = max(start, midnight(day)), min(end, midnight(day + _DAY))
        if spans and spans[-1][1] == lo:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans


class _Sql:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"

    def within(self, column: str, spans: list[tuple[datetime, datetime]]) -> str:
        # One range per span, so Postgres prunes the day partitions outside them.
        return " OR ".join(
            f"({column} >= {self.add(lo)}::timestamptz AND {column} < {self.add(hi)}::timestamptz)"
            for lo, hi in spans
        )


async def fetch(
    conn: asyncpg.Connection, query: StatsQuery, site_id: Any, tier: Tier
) -> list[Mapping[str, Any]] | None:
    """The one row of the top stats, as `visit_sql` gives it; None when no inner day is built."""
    first = query.start.date()
    if query.start > midnight(first):
        first += _DAY
    last = (query.end - 2 * _DAY).date()
    if first > last:
        return None
    built = await conn.fetch(
        """SELECT day, visitors, visits, pageviews, events, bounces, duration FROM visit_days
           WHERE site_id = $1 AND day >= $2 AND day <= $3 AND exact""",
        site_id,
        first,
        last,
    )
    if not built:
        return None
    inner = {r["day"] for r in built}
    days = []
    day = query.start.date()
    while midnight(day) < query.end:
        days.append(day)
        day += _DAY
    rest = [h for h in days if not (h in inner and h - _DAY in inner)]
    # The inner days whose sessions can have rows in the rest: leave those sessions out there.
    counted = sorted({d for h in rest for d in (h, h - _DAY) if d in inner})

    sql = _Sql()
    site = sql.add(site_id)
    totals = {k: sum(r[k] for r in built) for k in ("visits", "pageviews", "events", "bounces")}
    totals["visitors"] = sum(r["visits" if tier is Tier.BANNER_FREE else "visitors"] for r in built)
    duration = sum(r["duration"] for r in built)
    rest_rows = "FALSE"
    if rest:
        rest_rows = sql.within("v.hour", _spans(rest, query.start, query.end))
    not_counted = ""
    if counted:
        began = sql.within("ts", _spans(counted, midnight(counted[0]), midnight(last + _DAY)))
        not_counted = f"""
          AND v.session_id NOT IN (
              SELECT session_id FROM initial_events WHERE site_id = {site} AND ({began}))"""
    visits = f"({sql.add(totals['visits'])}::bigint + count(*))"
    text = f"""
WITH r AS (
    SELECT v.session_id, {VISITOR[tier]} AS visitor, v.pageviews, v.events, v.first_ts,
           v.last_ts
    FROM visit_hours v
    WHERE v.site_id = {site} AND ({rest_rows}){not_counted}
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
    return list(await conn.fetch(text, *sql.values))
