"""`visit_days` (migration 0005): per site and closed UTC day, the visit totals of the sessions
that began that day (and, 0010, the same cut at the day's midnight: those sessions over their
rows of that day alone, for a range that ends with the day), and `visit_day_values` (0006,
0008): their visitors, visits, page views and events per value of each visit attribute, and per
page and event name they had an event on. The top stats and the cards add these up instead of
grouping every session of the range again (`query/visit_days_sql.py`).

What makes the sums exact (and what the builder checks before it calls a day exact):
- a session's rows lie in the day it began and the next (its key names that day: process
  continues a tab's session only from yesterday or today), so a range holding both days holds
  the whole session;
- every row of day d belongs to a session that began on d or d - 1 (else: a row whose session
  has no initial row, e.g. from before process began sessions with their first stored event);
- a daily-hashed visitor only ever appears in sessions that began on its hash's day (a new
  session takes the day's hash; a continued one keeps the hash it began with), so visitors of
  different days are different visitors and add up. `banner_free` counts sessions as visitors.

A day is built two hours after it ends (`CLOSED_AFTER`), while the next day's events may still
extend its sessions: a delivery deletes the days its sessions began on (`rollups.forget`: an
event continuing a session begun the day before deletes that day), so a built day always sums
the rows stored, and the next `topup maintain` builds it again. By then nearly every session of
the day has lapsed (the tracker's lapse after 30 minutes without an event), so yesterday stays
built and a dashboard's range leaves only today to the summaries.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import asyncpg

from topup.local_days import EVENT_VALUE_ROWS
from topup.site_lock import lock_sites

# Day d is closed from d + 1 day + 2 hours: Firehose retries a delivery for up to two hours.
CLOSED_AFTER = timedelta(days=1, hours=2)

_BUILD = """
WITH began AS (
    SELECT DISTINCT session_id FROM initial_events
    WHERE site_id = $1 AND ts >= $2 AND ts < $2 + interval '1 day'
),
r AS (
    SELECT v.session_id, v.visitor, v.pageviews, v.events, v.first_ts, v.last_ts, v.hour
    FROM visit_hours v JOIN began b ON b.session_id = v.session_id
    WHERE v.site_id = $1 AND v.hour >= $2 AND v.hour < $2 + interval '2 days'
),
s AS (
    SELECT sum(pageviews) AS pageviews,
           extract(epoch FROM max(last_ts) - min(first_ts)) AS duration
    FROM r GROUP BY session_id
),
cut AS (  -- the same sessions over their rows of the day alone
    SELECT sum(pageviews) AS pageviews, sum(events) AS events,
           extract(epoch FROM max(last_ts) - min(first_ts)) AS duration
    FROM r WHERE hour < $2 + interval '1 day' GROUP BY session_id
)
SELECT
    NOT EXISTS (  -- the day's sessions have no rows outside their two days
        SELECT 1 FROM visit_hours v
        WHERE v.site_id = $1 AND (v.hour < $2 OR v.hour >= $2 + interval '2 days')
          AND v.session_id IN (SELECT session_id FROM began))
    AND NOT EXISTS (  -- every row of the day belongs to a session begun that day or the one before
        SELECT 1 FROM visit_hours v
        WHERE v.site_id = $1 AND v.hour >= $2 AND v.hour < $2 + interval '1 day'
          AND NOT EXISTS (
              SELECT 1 FROM initial_events i
              WHERE i.site_id = $1 AND i.session_id = v.session_id
                AND i.ts >= $2 - interval '1 day' AND i.ts < $2 + interval '1 day')) AS exact,
    (SELECT count(DISTINCT visitor) FROM r) AS visitors,
    count(*) AS visits,
    coalesce(sum(pageviews), 0) AS pageviews,
    (SELECT coalesce(sum(events), 0) FROM r) AS events,
    count(*) FILTER (WHERE pageviews <= 1) AS bounces,
    coalesce(sum(duration), 0) AS duration,
    (SELECT coalesce(sum(pageviews), 0) FROM cut) AS cut_pageviews,
    (SELECT coalesce(sum(events), 0) FROM cut) AS cut_events,
    (SELECT count(*) FILTER (WHERE pageviews <= 1) FROM cut) AS cut_bounces,
    (SELECT coalesce(sum(duration), 0) FROM cut) AS cut_duration
FROM s
"""


# The visit attributes whose values get per-day totals (`visit_day_values`): the Stats API's
# dimension → its column of initial_events (exit_page: the session's last page view).
ATTRIBUTES = {
    "visit:source": "referrer_source", "visit:channel": "channel", "visit:referrer": "referrer",
    "visit:utm_source": "utm_source", "visit:utm_medium": "utm_medium",
    "visit:utm_campaign": "utm_campaign", "visit:utm_content": "utm_content",
    "visit:utm_term": "utm_term", "visit:device": "device", "visit:browser": "browser",
    "visit:browser_version": "browser_version", "visit:os": "os",
    "visit:os_version": "os_version", "visit:screen": "screen", "visit:country": "country",
    "visit:region": "region", "visit:city": "city", "visit:entry_page": "entry_page",
    "visit:exit_page": "x.exit_page",
}  # fmt: skip

_BUILD_VALUES = f"""
WITH began AS (
    SELECT * FROM initial_events WHERE site_id = $1 AND ts >= $2 AND ts < $2 + interval '1 day'
),
r AS (
    SELECT v.session_id, v.visitor, v.pageviews, v.events, v.exit_ts, v.exit_page
    FROM visit_hours v JOIN began b ON b.session_id = v.session_id
    WHERE v.site_id = $1 AND v.hour >= $2 AND v.hour < $2 + interval '2 days'
),
x AS (  -- each session's last page view
    SELECT DISTINCT ON (session_id) session_id,
           CASE WHEN exit_ts IS NOT NULL THEN exit_page END AS exit_page
    FROM r ORDER BY session_id, exit_ts DESC NULLS LAST, exit_page DESC
)
INSERT INTO visit_day_values (site_id, day, dimension, value, visitors, visits, pageviews,
                              events)
SELECT $1, $2::date, a.dimension, a.value, count(DISTINCT r.visitor),
       count(DISTINCT r.session_id), sum(r.pageviews), sum(r.events)
FROM r JOIN began b ON b.session_id = r.session_id JOIN x ON x.session_id = r.session_id
CROSS JOIN LATERAL (VALUES {", ".join(f"('{d}', {c})" for d, c in ATTRIBUTES.items())})
    AS a(dimension, value)
GROUP BY a.dimension, a.value
"""

# The event dimensions' values (page, event name: `EVENT_VALUE_ROWS`) get per-day totals too:
# a session counts for each page (event name) it had an event on.
_BUILD_EVENT_VALUES = f"""
WITH began AS (
    SELECT DISTINCT session_id FROM initial_events
    WHERE site_id = $1 AND ts >= $2 AND ts < $2 + interval '1 day'
)
INSERT INTO visit_day_values (site_id, day, dimension, value, visitors, visits, pageviews,
                              events)
SELECT $1, $2::date, a.dimension, a.value, count(DISTINCT coalesce(e.visitor_id, e.session_id)),
       count(DISTINCT e.session_id), count(*) FILTER (WHERE e.name = 'pageview'), count(*)
FROM events e JOIN began b ON b.session_id = e.session_id
{EVENT_VALUE_ROWS}
WHERE e.site_id = $1 AND e.ts >= $2 AND e.ts < $2 + interval '2 days'
GROUP BY a.dimension, a.value
"""


# What `_BUILD` gives and `visit_days` keeps, under the same names.
_DAY_TOTALS = ("exact", "visitors", "visits", "pageviews", "events", "bounces", "duration",
               "cut_pageviews", "cut_events", "cut_bounces", "cut_duration")  # fmt: skip
_STORE_DAY = f"""
INSERT INTO visit_days (site_id, day, {", ".join(_DAY_TOTALS)})
VALUES ($1, $2, {", ".join(f"${i}" for i in range(3, len(_DAY_TOTALS) + 3))})
ON CONFLICT (site_id, day) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in _DAY_TOTALS)}, built_at = now()
"""


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def last_closed_day(now: datetime) -> date:
    return (now - CLOSED_AFTER).date()


async def build_day(conn: asyncpg.Connection, site_id: uuid.UUID, day: date) -> bool:
    """Build (or rebuild) one site's day; whether it is exact. Holds the site's write lock, so
    no delivery of the site commits in between (a delivery after it deletes what it changes)."""
    async with conn.transaction():
        await lock_sites(conn, [site_id])
        row = await conn.fetchrow(_BUILD, site_id, midnight(day))
        assert row is not None
        await conn.execute(_STORE_DAY, site_id, day, *(row[c] for c in _DAY_TOTALS))
        await conn.execute(
            "DELETE FROM visit_day_values WHERE site_id = $1 AND day = $2", site_id, day
        )
        if row["exact"]:
            await conn.execute(_BUILD_VALUES, site_id, midnight(day))
            await conn.execute(_BUILD_EVENT_VALUES, site_id, midnight(day))
        return bool(row["exact"])


async def build_closed_days(
    conn: asyncpg.Connection, first: date, now: datetime | None = None
) -> int:
    """Build every site's closed days from `first` on that have no row yet (or none with its cut
    totals); how many."""
    last = last_closed_day(datetime.now(UTC) if now is None else now)
    missing = await conn.fetch(
        """SELECT s.id, d::date AS day
           FROM sites s CROSS JOIN generate_series($1::date, $2::date, interval '1 day') AS d
           WHERE NOT EXISTS (  -- no row, or one built before its cut totals (0010)
               SELECT 1 FROM visit_days v
               WHERE v.site_id = s.id AND v.day = d::date AND v.cut_events IS NOT NULL)
           ORDER BY d, s.id""",
        first,
        last,
    )
    for row in missing:
        await build_day(conn, row["id"], row["day"])
    return len(missing)
