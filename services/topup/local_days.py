"""`local_days` (migration 0007): per site and closed day in the site's time zone, the distinct
sessions and visitors, page views and events of the day's `visit_hours` rows — one bucket of the
daily graph — and `local_day_values`: the day's page views and events per page and per event
name, which add up across days. `query/local_days_sql.py` reads them instead of grouping the
range's rows.

Unlike `visit_days`, nothing here relies on how sessions or visitors span days: a bucket's
counts are over its own rows only, so a closed day's row is exact as long as its rows do not
change. A day is closed two hours after it ends (Firehose retries a delivery for up to two
hours); a later delivery deletes the rows of the days it changes (`rollups.forget`) and the next
`topup maintain` builds them again.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

import asyncpg

from topup.site_lock import lock_sites

LATE = timedelta(hours=2)  # how long after a day ends a delivery may still change it


def local_midnight(day: str, zone: str) -> str:
    """SQL for the instant a local day (a date expression) begins in a zone, as Postgres
    reckons it — as the graph's buckets are (`visit_sql`) and the reader cuts the range."""
    return f"({day}::timestamp AT TIME ZONE {zone})"


_MISSING = f"""
SELECT s.id, s.timezone AS zone, d::date AS day
FROM sites s CROSS JOIN generate_series($1::date, $2::date, interval '1 day') AS d
WHERE {local_midnight("(d::date + 1)", "s.timezone")} + $3::interval <= $4
  AND NOT EXISTS (
      SELECT 1 FROM local_days l WHERE l.site_id = s.id AND l.zone = s.timezone AND l.day = d::date)
ORDER BY s.id, d
"""

# $1 site, $2 zone, $3 day: the day's rows are those from its midnight to the next.
_DAY_BEGINS, _DAY_ENDS = (
    local_midnight("$3::date", "$2::text"),
    local_midnight("($3::date + 1)", "$2::text"),
)

_BUILD = f"""
INSERT INTO local_days (site_id, zone, day, sessions, visitors, pageviews, events)
SELECT $1, $2, $3, count(DISTINCT v.session_id), count(DISTINCT v.visitor),
       coalesce(sum(v.pageviews), 0), coalesce(sum(v.events), 0)
FROM visit_hours v
WHERE v.site_id = $1 AND v.hour >= {_DAY_BEGINS} AND v.hour < {_DAY_ENDS}
ON CONFLICT (site_id, zone, day) DO UPDATE SET
    sessions = EXCLUDED.sessions, visitors = EXCLUDED.visitors,
    pageviews = EXCLUDED.pageviews, events = EXCLUDED.events, built_at = now()
"""

# The event dimensions whose values get per-day counts: the Stats API's name → events' column.
EVENT_VALUES = {"event:page": "pathname", "event:name": "name"}
# Each event `e` as one row (dimension, value) per event dimension, to group values by.
EVENT_VALUE_ROWS = f"""CROSS JOIN LATERAL (
    VALUES {", ".join(f"('{d}', e.{c})" for d, c in EVENT_VALUES.items())}
) AS a(dimension, value)"""

_BUILD_VALUES = f"""
INSERT INTO local_day_values (site_id, zone, day, dimension, value, pageviews, events)
SELECT $1, $2, $3, a.dimension, a.value, count(*) FILTER (WHERE e.name = 'pageview'), count(*)
FROM events e
{EVENT_VALUE_ROWS}
WHERE e.site_id = $1 AND e.ts >= {_DAY_BEGINS} AND e.ts < {_DAY_ENDS}
GROUP BY a.dimension, a.value
"""


async def build_day(conn: asyncpg.Connection, site_id: uuid.UUID, zone: str, day: date) -> None:
    """Build (or rebuild) one local day of a site in `zone`, under the site's lock."""
    async with conn.transaction():
        await lock_sites(conn, [site_id])
        await conn.execute(_BUILD, site_id, zone, day)
        await conn.execute(
            "DELETE FROM local_day_values WHERE site_id = $1 AND zone = $2 AND day = $3",
            site_id, zone, day,
        )  # fmt: skip
        await conn.execute(_BUILD_VALUES, site_id, zone, day)


async def build_closed_days(conn: asyncpg.Connection, first: date, now: datetime) -> int:
    """Build every site's closed local days (in its zone) from `first` on that have no row
    yet; how many. A transaction per site and day, so a run the Lambda's time limit cuts short
    (the first after an upgrade, over a busy site's retention) keeps what it built."""
    missing = await conn.fetch(_MISSING, first, now.date() + timedelta(days=1), LATE, now)
    for row in missing:
        await build_day(conn, row["id"], row["zone"], row["day"])
    return len(missing)
