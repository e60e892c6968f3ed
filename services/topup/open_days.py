"""`open_days` (migration 0011): today's and yesterday's visitors per value, counted up to an
instant (`upto`, a quarter hour), so a dashboard card reads the counts plus the events since
`upto` instead of the whole day (`query/visit_days_sql.py`). Process counts its deliveries'
sites on whenever a count is `STALE_AFTER` behind (so the events since are at most ~50 minutes
of a busy site's, and an idle site costs nothing); `topup maintain` counts every site hourly.

For a site and UTC day d, over the sessions begun on d (as the closed days count them,
`visit_days.py`) and their events of day d before `upto`, `open_day_values` holds the visitors
per value of each visit attribute of their initial rows, and per page and event name they had
an event on. A card adds, per value, the visitors of the events from `upto` on whom the counts
do not hold yet: for an attribute, a visitor with no session begun on d before `upto` with the
same value (found by `initial_events_site_visitor`); for a page or event name, one not in
`open_day_members` for it. Visitors of different days are different visitors (a daily hash,
or a session), so these add to the closed days' totals.

Each build goes on from the last `upto` (the counts and members grow by the events between
the two), under the site's write lock as the closed days' builds. What keeps them exact:
- a delivery with an event of an open day before its `upto` (Firehose retried it, or buffered
  it past the margin) deletes that day's counts (`rollups.forget`, by the event's quarter hour),
  and the next build begins again at midnight; events are stamped by ingest, so nothing else
  lands before `upto`;
- the counts are of one tier's visitors: after a tier change the query does not read them and
  the next build begins again.

Not for the `full` tier (its visitors last across days), nor for visits, page views or events.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg

from topup.local_days import EVENT_VALUE_ROWS
from topup.site_lock import lock_sites
from topup.tiers import Tier
from topup.utc import quarter_of
from topup.visit_days import ATTRIBUTES, midnight

# A delivery arrives up to Firehose's buffer interval (at most 900 s) after its events: counts
# end this long before the build, so a late delivery seldom makes the next build begin again.
MARGIN = timedelta(minutes=20)
# How far behind its possible end a count may fall before process counts on.
STALE_AFTER = timedelta(minutes=15)
_DAY = timedelta(days=1)

# The visitor each tier counts, of a row of `events` or `initial_events` aliased `{t}`
# (as `query.stats_sql.VISITOR`; the index `initial_events_site_visitor` is on this one).
MEMBER = {
    Tier.BANNER_FREE: "{t}.session_id",
    Tier.PRIVACY_POLICY: "coalesce({t}.visitor_id, {t}.session_id)",
}

# The visit attributes of a session's initial row (its exit page comes from its last event).
ON_INITIAL_ROW = {d: c for d, c in ATTRIBUTES.items() if d != "visit:exit_page"}


def member(tier: Tier, alias: str) -> str:
    return MEMBER[tier].format(t=alias)


def counted_before(tier: Tier, column: str, site: str, since: str, upto: str) -> str:
    """The condition that initial row `e`'s visitor had a session begun in [since, upto) with
    the same `column` value (SQL expressions for the bounds; found by index)."""
    return f"""EXISTS (
        SELECT 1 FROM initial_events p
        WHERE p.site_id = {site} AND {member(tier, "p")} = {member(tier, "e")}
          AND p.ts >= {since} AND p.ts < {upto} AND p.{column} IS NOT DISTINCT FROM e.{column})"""


def begun_on_the_day(site: str, since: str, upto: str) -> str:
    """The condition that event `e` (in [since, upto), quarter hours of one day) belongs to a
    session begun that day: none of its rows from the hour of `since` on carried over from the
    day before."""
    hour = f"date_bin('1 hour', {since}, timestamptz '2000-01-01 00:00+00')"
    return f"""NOT EXISTS (
        SELECT 1 FROM visit_hours c
        WHERE c.site_id = {site} AND c.hour >= {hour} AND c.hour < {upto} AND c.continued
          AND c.session_id = e.session_id)"""


def _add_visit_values(tier: Tier) -> str:
    """Per attribute and value, the visitors of the sessions begun in [$4, $5) who began none
    with that value in [$3, $4) ($1 site, $2 day, $3 its midnight)."""
    values = f"""SELECT a.dimension, a.value, {member(tier, "e")}
    FROM initial_events e
    CROSS JOIN LATERAL (VALUES {", ".join(f"('{d}', e.{c})" for d, c in ON_INITIAL_ROW.items())})
        AS a(dimension, value)
    WHERE e.site_id = $1"""
    return f"""
WITH new (dimension, value, member) AS (
    {values} AND e.ts >= $4 AND e.ts < $5
),
fresh AS (  -- a set: each visitor once per value
    SELECT * FROM new
    EXCEPT
    {values} AND e.ts >= $3 AND e.ts < $4 AND {member(tier, "e")} IN (SELECT member FROM new)
)
INSERT INTO open_day_values AS o (site_id, day, dimension, value, visitors)
SELECT $1::uuid, $2::date, dimension, value, count(*) FROM fresh GROUP BY dimension, value
ON CONFLICT (site_id, day, dimension, value) DO UPDATE SET visitors = o.visitors + EXCLUDED.visitors
"""


def _add_event_values(tier: Tier) -> str:
    """Per page and event name, the visitors of the events in [$3, $4) of sessions begun that
    day who are not its members yet: made members, and counted."""
    return f"""
WITH fresh AS (
    INSERT INTO open_day_members (site_id, day, dimension, value, member)
    SELECT DISTINCT $1::uuid, $2::date, a.dimension, a.value, {member(tier, "e")}
    FROM events e
    {EVENT_VALUE_ROWS}
    WHERE e.site_id = $1 AND e.ts >= $3 AND e.ts < $4 AND {begun_on_the_day("$1", "$3", "$4")}
    ON CONFLICT DO NOTHING
    RETURNING dimension, value
)
INSERT INTO open_day_values AS o (site_id, day, dimension, value, visitors)
SELECT $1::uuid, $2::date, dimension, value, count(*) FROM fresh GROUP BY dimension, value
ON CONFLICT (site_id, day, dimension, value) DO UPDATE SET visitors = o.visitors + EXCLUDED.visitors
"""


_ADD_VISIT_VALUES = {tier: _add_visit_values(tier) for tier in MEMBER}
_ADD_EVENT_VALUES = {tier: _add_event_values(tier) for tier in MEMBER}


def open_upto(day: date, now: datetime) -> datetime:
    """Up to when a build at `now` counts day `day`: the quarter hour `MARGIN` before (a late
    event is found by its quarter hour), at most the day's end."""
    return max(midnight(day), min(quarter_of(now - MARGIN), midnight(day + _DAY)))


async def build_open_day(
    conn: asyncpg.Connection, site_id: uuid.UUID, tier: Tier, day: date, upto: datetime
) -> bool:
    """Count one site's day up to `upto` (a quarter hour of the day or its end), going on from
    the last build (never back: a count past `upto` stays); whether anything was counted."""
    async with conn.transaction():
        await lock_sites(conn, [site_id])
        last = await conn.fetchrow(
            "SELECT tier, upto FROM open_days WHERE site_id = $1 AND day = $2", site_id, day
        )
        since = midnight(day)
        if last is not None and last["tier"] == tier.value:
            if last["upto"] >= upto:
                return False
            since = last["upto"]
        else:  # none, deleted by a late delivery, or another tier's
            for table in ("open_day_values", "open_day_members"):
                await conn.execute(
                    f"DELETE FROM {table} WHERE site_id = $1 AND day = $2", site_id, day
                )
        await conn.execute(_ADD_VISIT_VALUES[tier], site_id, day, midnight(day), since, upto)
        await conn.execute(_ADD_EVENT_VALUES[tier], site_id, day, since, upto)
        await conn.execute(
            """INSERT INTO open_days (site_id, day, tier, upto) VALUES ($1, $2, $3, $4)
               ON CONFLICT (site_id, day) DO UPDATE
               SET tier = EXCLUDED.tier, upto = EXCLUDED.upto, built_at = now()""",
            site_id,
            day,
            tier.value,
            upto,
        )
        return True


async def build_open_days(conn: asyncpg.Connection, now: datetime | None = None) -> int:
    """Count today and yesterday up to `open_upto` for every site whose tier they serve, and
    drop the days before; how many were counted further."""
    now = datetime.now(UTC) if now is None else now
    today = now.date()
    for table in ("open_days", "open_day_values", "open_day_members"):
        await conn.execute(f"DELETE FROM {table} WHERE day < $1", today - _DAY)
    sites = await _served_sites(conn)
    built = 0
    for day in (today - _DAY, today):
        for site in sites:
            upto = open_upto(day, now)
            built += await build_open_day(conn, site["id"], Tier(site["tier"]), day, upto)
    await refresh_statistics(conn)
    return built


async def _served_sites(
    conn: asyncpg.Connection, among: set[uuid.UUID] | None = None
) -> list[asyncpg.Record]:
    """The sites (`among` these, or all) whose tier the open days serve, with their tiers."""
    return await conn.fetch(
        """SELECT id, tier FROM sites
           WHERE tier = ANY($1::text[]) AND ($2::uuid[] IS NULL OR id = ANY($2::uuid[]))
           ORDER BY id""",
        [tier.value for tier in MEMBER],
        None if among is None else sorted(among),
    )


class Counting:
    """Process's side: per site and day, up to when this container last saw it counted."""

    def __init__(self) -> None:
        self.counted: dict[tuple[uuid.UUID, date], datetime] = {}

    def _due(self, site_id: uuid.UUID, day: date, upto: datetime) -> bool:
        last = self.counted.get((site_id, day))
        if last is None:  # not seen by this container: the build finds out
            return True
        return upto - last >= STALE_AFTER or (upto == midnight(day + _DAY) and last < upto)

    async def keep_current(
        self, conn: asyncpg.Connection, site_ids: set[uuid.UUID], now: datetime | None = None
    ) -> int:
        """After a delivery: count its sites' today on, and yesterday to its end, where this
        container has not seen it counted within `STALE_AFTER`; how many were counted further.
        A transaction of its own per site and day, after the delivery's."""
        now = datetime.now(UTC) if now is None else now
        days = (now.date() - _DAY, now.date())
        due = {s for s in site_ids for d in days if self._due(s, d, open_upto(d, now))}
        if not due:
            return 0
        counted = 0
        for site in await _served_sites(conn, due):
            for day in days:
                upto = open_upto(day, now)
                if self._due(site["id"], day, upto):
                    counted += await build_open_day(conn, site["id"], Tier(site["tier"]), day, upto)
                    self.counted[(site["id"], day)] = upto
        return counted


async def refresh_statistics(conn: asyncpg.Connection) -> None:
    """After builds (outside a transaction): the cards' anti joins are planned from these
    statistics; without them (a fresh table) the planner reads the whole day's members once
    per event since the count (top pages over 300k events: 209 ms instead of 10)."""
    await conn.execute("VACUUM (ANALYZE) open_day_values, open_day_members")
