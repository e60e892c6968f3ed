"""The cards from today's and yesterday's counts so far (`open_days`) plus the events since give
exactly what the summaries (the events) give, whatever hour the counts end at and however they
were built; a late delivery or a tier change leaves the counts unread until built again."""

from datetime import UTC, datetime, time, timedelta

import pytest

from query import stats_sql, visit_days_sql, visit_sql
from tests.fixtures import event
from tests.stats_data import store
from tests.test_query_stats import NOW, ZONE, env  # noqa: F401
from tests.test_query_visit_days import _flat, _query, _values, built  # noqa: F401
from topup import open_days, rollups, visit_days
from topup.database import connect
from topup.local_days import EVENT_VALUES
from topup.maintenance import maintain
from topup.tiers import Tier
from topup.visit_days import midnight

TODAY = NOW.date()
YESTERDAY = TODAY - timedelta(days=1)
DIMENSIONS = ["visit:country", "visit:entry_page", "visit:source", "event:page", "event:name"]
ZONES = ["UTC", ZONE, "America/New_York"]
# Ranges holding today and yesterday whole or in part; one ending yesterday.
RANGES = [
    "7d", "30d", "month", [(TODAY - timedelta(days=9)).isoformat(), YESTERDAY.isoformat()],
    [f"{TODAY - timedelta(days=9)}T05:00:00", f"{TODAY}T03:00:00"],
]  # fmt: skip
TIERS = [Tier.BANNER_FREE, Tier.PRIVACY_POLICY]


def _hours(day, *hours):
    """Whole hours of `day` up to NOW's hour (a count never ends past its build)."""
    last = NOW.replace(minute=0, second=0, microsecond=0)
    return sorted({min(midnight(day) + timedelta(hours=h), last) for h in hours})


@pytest.fixture(scope="module")
async def opened(built):  # noqa: F811
    """The shared site with a visitor coming back (the same IP and browser: one daily hash)
    yesterday and in the last hours, with sessions on other pages and from other countries, and
    again on the same ones: counts and the events since must not count them twice."""
    visits = [  # (when, page, country, referrer)
        (midnight(YESTERDAY) + timedelta(hours=3, minutes=10), "pricing", "DE", "https://www.google.com/"),
        (midnight(YESTERDAY) + timedelta(hours=4, minutes=10), "docs", "FR", None),
        (midnight(YESTERDAY) + timedelta(hours=13, minutes=20), "pricing", "DE", "https://news.ycombinator.com/"),
        (midnight(YESTERDAY) + timedelta(hours=22, minutes=30), "blog", "FR", "https://www.google.com/"),
        (NOW - timedelta(minutes=75), "pricing", "DE", "https://www.google.com/"),
        (NOW - timedelta(minutes=10), "pricing", "DE", None),
    ]  # fmt: skip
    back = [
        event(built["site"].id, f"https://example.com/{page}", session=f"back-{n}",
              ip="198.51.100.7", at=at, geo={"country": country}, referrer=referrer)
        for n, (at, page, country, referrer) in enumerate(visits)
    ]  # fmt: skip
    await store(built["url"], back)
    return built


async def _answers_as_the_summaries(env, tier):  # noqa: F811
    """Every dimension, zone and range: the cards (visitors) equal what the summaries give;
    how many of the queries read open days."""
    site = env["site"]
    conn = await connect(env["url"])
    used = 0
    try:
        for zone in ZONES:
            for dimension in DIMENSIONS:
                for date_range in RANGES:
                    body = {"metrics": ["visitors"], "date_range": date_range,
                            "dimensions": [dimension]}  # fmt: skip
                    q = _query(site, body, tier, zone)
                    ordinary = stats_sql.build if dimension in EVENT_VALUES else visit_sql.build
                    expected = await conn.fetch(*_flat(ordinary(q, site.id, tier)))
                    got = await visit_days_sql.fetch(conn, q, site.id, tier)
                    assert got is not None
                    assert _values(q, got) == _values(q, expected), (zone, dimension, date_range)
                    used += bool(await _read_open_days(conn, q, site.id, tier))
    finally:
        await conn.close()
    return used


async def _read_open_days(conn, q, site_id, tier):
    first, last = visit_days_sql._inner_span(q)
    inner = {
        r["day"]
        for r in await conn.fetch(
            "SELECT day FROM visit_days WHERE site_id = $1 AND day BETWEEN $2 AND $3 AND exact",
            site_id,
            first,
            last,
        )
    }
    return await visit_days_sql._open_days(conn, q, site_id, tier, visit_days_sql._rest(q, inner))


@pytest.mark.parametrize("tier", TIERS)
async def test_cards_from_open_days_answer_as_the_summaries_do(opened, tier):
    """Counts ending at several hours, each build going on from the last (and one going back,
    which begins again), for both days."""
    site = opened["site"]
    conn = await connect(opened["url"])
    try:
        for yesterday, today in [
            (midnight(YESTERDAY) + timedelta(hours=7), midnight(TODAY)),
            (midnight(TODAY), *_hours(TODAY, 1)),
            (midnight(TODAY), *_hours(TODAY, 23)),
            (midnight(YESTERDAY) + timedelta(hours=22), *_hours(TODAY, 3)),
        ]:
            await open_days.build_open_day(conn, site.id, tier, YESTERDAY, yesterday)
            await open_days.build_open_day(conn, site.id, tier, TODAY, today)
            assert await _answers_as_the_summaries(opened, tier) > 0
    finally:
        await conn.close()


async def _counts(conn, site_id, day):
    rows = await conn.fetch(
        """SELECT dimension, value, visitors FROM open_day_values
           WHERE site_id = $1 AND day = $2 ORDER BY 1, 2""",
        site_id,
        day,
    )
    return [tuple(r) for r in rows]


@pytest.mark.parametrize("day", [YESTERDAY, TODAY])
@pytest.mark.parametrize("tier", TIERS)
async def test_a_build_going_on_from_the_last_counts_as_one_from_midnight(opened, tier, day):
    site = opened["site"]
    conn = await connect(opened["url"])

    try:
        await conn.execute("DELETE FROM open_days WHERE site_id = $1", site.id)
        for upto in _hours(day, 0, 2, 4, 6, 12, 14, 23, 24):
            await open_days.build_open_day(conn, site.id, tier, day, upto)
        stepwise = await _counts(conn, site.id, day)
        assert stepwise
        await conn.execute("DELETE FROM open_days WHERE site_id = $1", site.id)
        await open_days.build_open_day(conn, site.id, tier, day, _hours(day, 24)[-1])
        assert await _counts(conn, site.id, day) == stepwise
    finally:
        await conn.close()


async def test_the_cards_read_the_open_days_counts(opened):
    """Proof the counts are read: change one, the card moves; a count of another tier, or one
    ending after the range, is not read."""
    site, tier = opened["site"], Tier.PRIVACY_POLICY
    conn = await connect(opened["url"])
    q = _query(site, {"metrics": ["visitors"], "date_range": "30d",
                      "dimensions": ["event:page"]}, tier, "UTC")  # fmt: skip
    try:
        upto = _hours(TODAY, 23)[-1]
        await open_days.build_open_day(conn, site.id, tier, TODAY, upto)
        await open_days.build_open_day(conn, site.id, tier, YESTERDAY, midnight(TODAY))
        before = await _visitors(conn, q, site.id, tier)
        counted = await conn.fetch(
            """UPDATE open_day_values SET visitors = visitors + 1000
               WHERE site_id = $1 AND day = $2 AND dimension = 'event:page' RETURNING value""",
            site.id,
            TODAY,
        )
        pages = {r["value"] for r in counted}
        assert pages
        assert await _visitors(conn, q, site.id, tier) == {
            page: n + 1000 * (page in pages) for page, n in before.items()
        }
        assert not await _read_open_days(conn, q, site.id, Tier.BANNER_FREE)
        ending = q.shifted(q.start, upto - timedelta(hours=1), q.first_day, q.last_day)
        assert TODAY not in await _read_open_days(conn, ending, site.id, tier)
    finally:
        await conn.execute("DELETE FROM open_days WHERE site_id = $1", site.id)
        await conn.close()


async def _visitors(conn, q, site_id, tier):
    return {r["d0"]: r["visitors"] for r in await visit_days_sql.fetch(conn, q, site_id, tier)}


async def test_a_late_delivery_forgets_the_open_days_counted_past_it(opened):
    """An event before a count's end deletes that day's count, and process counts the day
    again from midnight, the late event with it; the cards answer as the summaries."""
    site, tier = opened["site"], Tier.PRIVACY_POLICY
    conn = await connect(opened["url"])
    try:
        await conn.execute("DELETE FROM open_days WHERE site_id = $1", site.id)
        await open_days.build_open_day(conn, site.id, tier, YESTERDAY, midnight(TODAY))
        await store(opened["url"], [event(site.id, "https://example.com/late", session="late",
                                          ip="198.51.100.9",
                                          at=midnight(TODAY) - timedelta(minutes=1))])  # fmt: skip
        pages = await conn.fetch(
            """SELECT value FROM open_day_values
               WHERE site_id = $1 AND day = $2 AND dimension = 'event:page'""",
            site.id,
            YESTERDAY,
        )
        assert "/late" in {r["value"] for r in pages}
        assert await _answers_as_the_summaries(opened, tier) > 0
    finally:
        await conn.close()


async def test_an_event_is_told_from_a_count_by_its_quarter_hour(opened):
    """A count ending at a quarter hour: an event after it in the same hour leaves it, one
    before it deletes it (what a delivery forgets, in its transaction)."""
    site = opened["site"]
    upto = midnight(YESTERDAY) + timedelta(hours=20, minutes=30)
    conn = await connect(opened["url"])
    try:
        await conn.execute("DELETE FROM open_days WHERE site_id = $1", site.id)
        await open_days.build_open_day(conn, site.id, Tier.PRIVACY_POLICY, YESTERDAY, upto)
        for minutes, left in ((5, 1), (-5, 0)):
            async with conn.transaction():
                instants = rollups.touched_instants([(site.id, upto + timedelta(minutes=minutes))])
                await rollups.forget(conn, [], instants)
            assert await conn.fetchval("SELECT count(*) FROM open_days WHERE site_id = $1",
                                       site.id) == left  # fmt: skip
    finally:
        await conn.close()


async def test_maintain_counts_today_and_yesterday_and_drops_older_days(opened):
    site = opened["site"]
    conn = await connect(opened["url"])
    try:
        await conn.execute(
            "INSERT INTO open_days (site_id, day, tier, upto) VALUES ($1, $2, 'privacy_policy', $3)",
            site.id,
            TODAY - timedelta(days=2),
            midnight(YESTERDAY),
        )
        await conn.execute("DELETE FROM open_days WHERE day >= $1", YESTERDAY)
        report = await maintain(conn, retention_days=35, now=NOW)
        rows = await conn.fetch("SELECT day, tier, upto FROM open_days WHERE site_id = $1", site.id)
        assert report.open_days_built == 2
        assert {(r["day"], r["tier"], r["upto"]) for r in rows} == {
            (YESTERDAY, "privacy_policy", open_days.open_upto(YESTERDAY, NOW)),
            (TODAY, "privacy_policy", open_days.open_upto(TODAY, NOW)),
        }
        assert (await maintain(conn, retention_days=35, now=NOW)).open_days_built == 0
    finally:
        await conn.close()


def test_a_count_ends_on_the_quarter_hour_a_margin_before_its_build():
    day = datetime(2026, 11, 27, tzinfo=UTC)
    at = datetime.combine(day.date(), time(10, 5), UTC)
    assert open_days.open_upto(day.date(), at) == day + timedelta(hours=9, minutes=45)
    assert open_days.open_upto(day.date(), at + timedelta(minutes=20)) == day + timedelta(hours=10)
    assert open_days.open_upto(day.date(), day + timedelta(minutes=5)) == day
    yesterday = day.date() - timedelta(days=1)
    assert open_days.open_upto(yesterday, at) == day
    assert open_days.open_upto(yesterday, day + timedelta(minutes=5)) == day - timedelta(minutes=15)


async def test_process_counts_its_sites_on_after_a_delivery(opened):
    """A delivery's sites get today counted up to the quarter hour a margin before, and
    yesterday to its end; within `STALE_AFTER` of that, the next delivery counts nothing."""
    site = opened["site"]
    conn = await connect(opened["url"])
    try:
        await conn.execute("DELETE FROM open_days WHERE site_id = $1", site.id)
        before = datetime.now(UTC)
        await store(opened["url"], [event(site.id, "https://example.com/now", session="now")])
        after = datetime.now(UTC)
        rows = {r["day"]: r for r in await conn.fetch(
            "SELECT day, tier, upto, built_at FROM open_days WHERE site_id = $1", site.id)}  # fmt: skip
        today, yesterday = after.date(), after.date() - timedelta(days=1)
        assert rows[yesterday]["upto"] in {
            open_days.open_upto(yesterday, t) for t in (before, after)
        }
        assert rows[today]["upto"] in {open_days.open_upto(today, t) for t in (before, after)}
        assert {r["tier"] for r in rows.values()} == {"privacy_policy"}
        counting = open_days.Counting()
        assert await counting.keep_current(conn, {site.id}) == 0  # current already
        assert await counting.keep_current(conn, {site.id}) == 0  # and seen so: no query
        assert counting.counted[(site.id, today)] == rows[today]["upto"] or after.minute % 15 == 5
        assert await _answers_as_the_summaries(opened, Tier.PRIVACY_POLICY) > 0
    finally:
        await conn.close()


async def test_a_tier_change_counts_again_from_midnight(opened):
    """Counts of daily-hashed visitors are not sessions: a build for the other tier begins at
    midnight (the visitor coming back counts once as a visitor, twice as sessions)."""
    site = opened["site"]
    conn = await connect(opened["url"])

    try:
        at_six, at_two = (midnight(YESTERDAY) + timedelta(hours=h) for h in (6, 14))
        await open_days.build_open_day(conn, site.id, Tier.PRIVACY_POLICY, YESTERDAY, at_six)
        await open_days.build_open_day(conn, site.id, Tier.BANNER_FREE, YESTERDAY, at_two)
        changed = await _counts(conn, site.id, YESTERDAY)
        await conn.execute("DELETE FROM open_days WHERE site_id = $1", site.id)
        await open_days.build_open_day(conn, site.id, Tier.BANNER_FREE, YESTERDAY, at_two)
        assert changed == await _counts(conn, site.id, YESTERDAY)
    finally:
        await conn.close()


@pytest.mark.parametrize("dimension", ["visit:device", "event:page"])
async def test_an_open_day_the_range_holds_in_part_is_not_read(opened, dimension):
    """A day counted from midnight serves no range beginning later that day (here an older day,
    which maintain would no longer keep, counted to its end)."""
    site, tier = opened["site"], Tier.PRIVACY_POLICY
    day = TODAY - timedelta(days=3)
    conn = await connect(opened["url"])
    q = _query(site, {"metrics": ["visitors"], "dimensions": [dimension],
                      "date_range": [f"{day}T05:00:00", f"{TODAY}T03:00:00"]}, tier, "UTC")  # fmt: skip
    try:
        await open_days.build_open_day(conn, site.id, tier, day, midnight(day + timedelta(days=1)))
        ordinary = stats_sql.build if dimension in EVENT_VALUES else visit_sql.build
        expected = await conn.fetch(*_flat(ordinary(q, site.id, tier)))
        assert _values(q, await visit_days_sql.fetch(conn, q, site.id, tier)) == _values(
            q, expected
        )
    finally:
        await conn.execute("DELETE FROM open_days WHERE site_id = $1 AND day = $2", site.id, day)
        await conn.close()


async def test_a_session_carried_over_is_not_counted_as_begun_within_an_hour(opened):
    """A session begun the day before with events either side of a count's end inside one hour
    (its row of that hour is carried over): neither the count nor the events since hold it."""
    site, tier = opened["site"], Tier.PRIVACY_POLICY
    eve = midnight(YESTERDAY) - timedelta(minutes=10)
    at = [eve] + [midnight(YESTERDAY) + timedelta(hours=10, minutes=m) for m in (5, 20, 40)]
    await store(opened["url"], [event(site.id, f"https://example.com/long/{n}", session="long",
                                      ip="198.51.100.20", at=t)
                                for n, t in enumerate(at)])  # fmt: skip
    conn = await connect(opened["url"])
    try:  # the late evening event forgot its visit day: built again, the session is an inner one
        await visit_days.build_closed_days(conn, TODAY - timedelta(days=35), NOW)
        await conn.execute("DELETE FROM open_days WHERE site_id = $1", site.id)
        quarter = midnight(YESTERDAY) + timedelta(hours=10, minutes=15)
        await open_days.build_open_day(conn, site.id, tier, YESTERDAY, quarter)
        assert await _answers_as_the_summaries(opened, tier) > 0
        await open_days.build_open_day(
            conn, site.id, tier, YESTERDAY, quarter + timedelta(minutes=15)
        )
        stepped = await _counts(conn, site.id, YESTERDAY)
        await conn.execute("DELETE FROM open_days WHERE site_id = $1", site.id)
        await open_days.build_open_day(
            conn, site.id, tier, YESTERDAY, quarter + timedelta(minutes=15)
        )
        assert await _counts(conn, site.id, YESTERDAY) == stepped
        assert await _answers_as_the_summaries(opened, tier) > 0
    finally:
        await conn.close()
