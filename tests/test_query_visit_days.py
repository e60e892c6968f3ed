"""The top stats from the closed days' totals (`visit_days`) plus the summaries of the rest of
the range give exactly what the summaries alone give; late deliveries and rows the sums cannot
hold fall back to the summaries."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from query import stats_sql, visit_days_sql, visit_sql
from query.stats import _metric, previous_period
from tests.stats_data import Truth, stats_query, store
from tests.test_query_stats import ALL, NOW, ZONE, day_bounds, env, query  # noqa: F401
from topup import visit_days
from topup.database import connect
from topup.maintenance import maintain
from topup.tiers import Tier

# Every kind of range: presets, dates, one day (nothing built), ISO datetimes cutting their days.
RANGES = [
    "7d", "30d", "month", ["2026-01-01", NOW.date().isoformat()], "day",
    [f"{NOW.date() - timedelta(days=9)}T05:00:00", f"{NOW.date()}T03:00:00"],
]  # fmt: skip
PER_VALUE = ["visitors", "visits", "pageviews", "events"]


def _query(site, body, tier, zone):
    # Checked as the site's tier (which collects every field); answered as `tier` counts.
    return stats_query(site.id, body, tier=site.tier, zone=zone)


async def _both(conn, site, q, tier):
    """(from the day totals, from the summaries), each as the API's metric values."""
    totals = await visit_days_sql.fetch(conn, q, site.id, tier)
    summaries = await conn.fetch(*_flat(visit_sql.build(q, site.id, tier, None)))

    def metrics(rows):  # with their types: the API encodes a Decimal as a string
        return [repr(_metric(m, rows[0])) for m in ALL]

    return (None if totals is None else metrics(totals)), metrics(summaries)


def _flat(built):
    sql, params = built
    return (sql, *params)


@pytest.fixture(scope="module")
async def built(env):  # noqa: F811
    """The shared site, plus a session across every UTC midnight of its days (the sessions the
    split between day totals and summaries must not lose or count twice), days built."""
    from tests.fixtures import event

    midnight = datetime.combine(NOW.date(), time(), UTC)
    # The last event, 5.5 hours after midnight, lies past the start of a range in New York.
    crossing = [
        event(env["site"].id, f"https://example.com/{n}", session=f"night-{days}",
              ip=f"203.0.113.{days}", at=midnight - timedelta(days=days, minutes=minutes))
        for days in range(32) for n, minutes in enumerate((5, -5, -20, -330))
    ] + [  # begun before 23:00 UTC (a Berlin range's start), its next event after midnight
        event(env["site"].id, f"https://example.com/late/{n}", session=f"late-{days}",
              ip=f"203.0.113.{days + 100}", at=midnight - timedelta(days=days, minutes=minutes))
        for days in range(32) for n, minutes in enumerate((90, -30))
    ]  # fmt: skip
    await store(env["url"], crossing)
    conn = await connect(env["url"])
    env["truth"] = await Truth.load(conn, env["site"].id, "privacy_policy")
    report = await maintain(conn, retention_days=35, now=NOW)
    days = await conn.fetch("SELECT day, exact FROM visit_days WHERE site_id = $1", env["site"].id)
    await conn.close()
    assert report.visit_days_built == len(days) > 0
    assert all(d["exact"] for d in days)
    return env


@pytest.mark.parametrize("zone", [ZONE, "UTC", "America/New_York"])
@pytest.mark.parametrize("tier", [Tier.BANNER_FREE, Tier.PRIVACY_POLICY])
@pytest.mark.parametrize("date_range", RANGES)
async def test_day_totals_answer_as_the_summaries_do(built, date_range, tier, zone):
    site = built["site"]
    q = _query(site, {"metrics": ALL, "date_range": date_range}, tier, zone)
    assert visit_days_sql.answers(q, tier)
    conn = await connect(built["url"])
    try:
        for period in (q, previous_period(q)):
            totals, summaries = await _both(conn, site, period, tier)
            if period is q and not _young(q, date_range):
                assert totals is not None, "the range has closed days: their totals are used"
                assert summaries[0] != "0"
            assert totals in (None, summaries)
    finally:
        await conn.close()


async def _same_values(built, q, tier, ordinary, young=False):
    """The day totals' rows for `q` and its previous period equal what `ordinary` (a builder of
    the summaries' or the events' SQL) gives; for `q` itself they are used, unless `young`."""
    site = built["site"]
    assert visit_days_sql.answers(q, tier)
    conn = await connect(built["url"])
    try:
        for period in (q, previous_period(q)):
            totals = await visit_days_sql.fetch(conn, period, site.id, tier)
            expected = _values(period, await conn.fetch(*_flat(ordinary(period, site.id, tier))))
            if period is q and not young:
                assert totals is not None and expected
            assert totals is None or _values(period, totals) == expected
    finally:
        await conn.close()


def _values(q, rows):
    return sorted((repr(r["d0"]), *(repr(_metric(m, r)) for m in q.metrics)) for r in rows)


@pytest.mark.parametrize("zone", [ZONE, "America/New_York"])
@pytest.mark.parametrize("tier", [Tier.BANNER_FREE, Tier.PRIVACY_POLICY])
@pytest.mark.parametrize("dimension", sorted(visit_days.ATTRIBUTES))
@pytest.mark.parametrize("metrics", [PER_VALUE, ["visitors", "visits"]])
async def test_values_totals_answer_as_the_summaries_do(built, metrics, dimension, tier, zone):
    """Visitors and visits alone (the cards) count the rest's sessions begun inside the range
    from their initial rows; with page views, from their rows."""
    body = {"metrics": metrics, "date_range": "30d", "dimensions": [dimension]}
    await _same_values(built, _query(built["site"], body, tier, zone), tier, visit_sql.build)


@pytest.mark.parametrize("zone", [ZONE, "UTC", "America/New_York", "Pacific/Kiritimati"])
@pytest.mark.parametrize("tier", [Tier.BANNER_FREE, Tier.PRIVACY_POLICY])
@pytest.mark.parametrize("dimension", ["visit:country", "visit:entry_page"])
@pytest.mark.parametrize("date_range", RANGES)
async def test_cards_answer_as_the_summaries_do_for_every_range(
    built, date_range, dimension, tier, zone
):
    body = {"metrics": ["visitors", "visits"], "date_range": date_range, "dimensions": [dimension]}
    q = _query(built["site"], body, tier, zone)
    await _same_values(built, q, tier, visit_sql.build, _young(q, date_range))


def _young(q, date_range):
    """Whether the range may have no built day: one day, or a month in its first days."""
    return date_range == "day" or (
        date_range == "month" and q.first_day > q.last_day - timedelta(days=4)
    )


@pytest.mark.parametrize("zone", [ZONE, "UTC", "America/New_York"])
@pytest.mark.parametrize("tier", [Tier.BANNER_FREE, Tier.PRIVACY_POLICY])
@pytest.mark.parametrize("dimension", ["event:page", "event:name"])
@pytest.mark.parametrize("date_range", RANGES)
async def test_page_and_name_totals_answer_as_the_events_do(
    built, date_range, dimension, tier, zone
):
    """Visitors, visits, page views and events per page (event name) of the closed days plus the
    rest's events equal what the events SQL counts over the whole range."""
    body = {"metrics": PER_VALUE, "date_range": date_range, "dimensions": [dimension]}
    q = _query(built["site"], body, tier, zone)
    await _same_values(built, q, tier, stats_sql.build, _young(q, date_range))


def test_page_views_alone_per_page_are_left_to_the_local_days(built):
    site = built["site"]
    for metrics, answered in ((["pageviews"], False), (["events", "pageviews"], False),
                              (["visitors", "pageviews"], True), (["visits"], True)):  # fmt: skip
        body = {"metrics": metrics, "date_range": "30d", "dimensions": ["event:page"]}
        assert visit_days_sql.answers(_query(site, body, site.tier, ZONE), site.tier) is answered
    body = {"metrics": ["visitors"], "date_range": "30d", "dimensions": ["event:page"]}
    assert not visit_days_sql.answers(_query(site, body, Tier.FULL, ZONE), Tier.FULL)
    filtered = body | {"filters": [["is", "event:page", ["/"]]]}
    assert not visit_days_sql.answers(_query(site, filtered, site.tier, ZONE), site.tier)


async def test_top_pages_by_visitors_answer_ground_truth_from_the_day_totals(built):
    """Through HTTP, against visitors and page views counted in Python; then one day's row is
    changed and the answer moves (the day totals are read)."""
    today = NOW.astimezone(ZoneInfo(ZONE)).date()
    start, end = day_bounds(today - timedelta(days=29), today)
    truth = built["truth"]
    expected = truth.visitors_and_pageviews(truth.in_range(start, end), lambda r: r["pathname"])
    body = {"metrics": ["visitors", "pageviews"], "dimensions": ["event:page"], "date_range": "30d"}
    answer = await query(built, **body)
    assert {r["dimensions"][0]: r["metrics"] for r in answer["results"]} == expected
    conn = await connect(built["url"])
    try:
        day = await conn.fetchval(  # the last built day whose sessions lie inside the range
            """SELECT max(day) FROM visit_day_values
               WHERE site_id = $1 AND dimension = 'event:page' AND value = '/' AND day <= $2""",
            built["site"].id,
            (end - timedelta(days=2)).date(),
        )
        change = """UPDATE visit_day_values SET visitors = visitors + $2
                    WHERE site_id = $1 AND day = $3 AND dimension = 'event:page' AND value = '/'"""
        await conn.execute(change, built["site"].id, 1000, day)
        moved = await query(built, **body)
        assert {r["dimensions"][0]: r["metrics"] for r in moved["results"]}["/"] == [
            expected["/"][0] + 1000,
            expected["/"][1],
        ]
        await conn.execute(change, built["site"].id, -1000, day)
    finally:
        await conn.close()


async def test_the_api_answers_from_the_day_totals(built):
    """Ground truth through HTTP, and proof the totals are read: change one, the answer moves."""
    today = NOW.astimezone(ZoneInfo(ZONE)).date()
    start, end = day_bounds(today - timedelta(days=29), today)
    rows = built["truth"].in_range(start, end)
    expected = built["truth"].aggregate(rows, rows)
    answer = await query(built, metrics=ALL, date_range="30d")
    assert answer["results"][0]["metrics"] == [expected[m] for m in ALL]
    conn = await connect(built["url"])
    try:
        day = await conn.fetchval(  # the last built day whose sessions lie inside the range
            "SELECT max(day) FROM visit_days WHERE site_id = $1 AND day <= $2",
            built["site"].id,
            (end - timedelta(days=2)).date(),
        )
        await conn.execute("UPDATE visit_days SET visitors = visitors + 1000 WHERE day = $1", day)
        moved = await query(built, metrics=["visitors"], date_range="30d")
        assert moved["results"][0]["metrics"] == [expected["visitors"] + 1000]
        await conn.execute("UPDATE visit_days SET visitors = visitors - 1000 WHERE day = $1", day)
    finally:
        await conn.close()


@pytest.mark.parametrize(("dimension", "column"), [("visit:channel", "channel"),
                                                   ("visit:exit_page", "exit_page")])  # fmt: skip
async def test_the_cards_answer_ground_truth_from_the_day_totals(built, dimension, column):
    today = NOW.astimezone(ZoneInfo(ZONE)).date()
    start, end = day_bounds(today - timedelta(days=29), today)
    rows = built["truth"].in_range(start, end)
    visitors: dict[str | None, set[str]] = {}
    for r in rows:
        visitors.setdefault(r[column], set()).add(built["truth"].visitor(r))
    answer = await query(built, metrics=["visitors"], dimensions=[dimension], date_range="30d")
    got = {r["dimensions"][0]: r["metrics"][0] for r in answer["results"]}
    assert got == {value: len(who) for value, who in visitors.items()}


async def test_a_late_delivery_forgets_the_days_it_changes_and_maintain_builds_them_again(built):
    """A delivery forgets the visit days its sessions began on, no other: an event beginning a
    session its own day, one continuing yesterday's tab session the day before. Meanwhile the
    summaries answer; the next maintain builds the day again."""
    from tests.fixtures import event

    site = built["site"]
    q = _query(site, {"metrics": ALL, "date_range": "30d"}, Tier.PRIVACY_POLICY, ZONE)
    conn = await connect(built["url"])

    async def after(*events) -> set:
        await store(built["url"], list(events))
        totals, summaries = await _both(conn, site, q, Tier.PRIVACY_POLICY)
        assert totals == summaries  # the forgotten days come from the summaries
        return {r["day"] for r in await conn.fetch("SELECT day FROM visit_days")}

    async def rebuilt() -> int:
        built_days = await visit_days.build_closed_days(conn, NOW.date() - timedelta(days=35), NOW)
        totals, again = await _both(conn, site, q, Tier.PRIVACY_POLICY)
        assert totals == again
        return built_days

    try:
        day = await conn.fetchval("SELECT max(day) FROM visit_days WHERE site_id = $1", site.id)
        midnight = datetime.combine(day, time(), UTC)
        kept = await after(event(site.id, "https://example.com/late", session="late-tab",
                                 at=midnight + timedelta(hours=12)))  # fmt: skip
        assert day not in kept and day - timedelta(days=1) in kept
        assert await rebuilt() == 1
        kept = await after(event(site.id, "https://example.com/eve", session="evening-tab",
                                 at=midnight - timedelta(minutes=10)))  # fmt: skip
        assert day - timedelta(days=1) not in kept and day in kept
        assert await rebuilt() == 1
        kept = await after(event(site.id, "https://example.com/on", session="evening-tab",
                                 at=midnight + timedelta(minutes=10)))  # fmt: skip
        assert day - timedelta(days=1) not in kept and day in kept  # the session's day only
        assert await rebuilt() == 1
    finally:
        await conn.close()


async def test_a_day_with_rows_of_no_known_session_is_not_exact(built):
    """Rows whose session has no initial row (data stored before sessions began with their first
    stored event) would be counted by no day: such a day is left to the summaries."""
    site = built["site"]
    conn = await connect(built["url"])
    try:
        day = await conn.fetchval(
            "SELECT min(day) + 2 FROM visit_days WHERE site_id = $1 AND visits > 0", site.id
        )
        await conn.execute(
            """INSERT INTO visit_hours (site_id, hour, session_id, visitor, pageviews, events,
                                        first_ts, last_ts, exit_ts, exit_page)
               VALUES ($1, $2::date + interval '5 hours', 42, 42, 1, 1,
                       $2::date + interval '5 hours', $2::date + interval '5 hours',
                       $2::date + interval '5 hours', '/orphan')""",
            site.id,
            day,
        )
        assert not await visit_days.build_day(conn, site.id, day)
        q = _query(site, {"metrics": ALL, "date_range": "30d"}, Tier.PRIVACY_POLICY, ZONE)
        totals, summaries = await _both(conn, site, q, Tier.PRIVACY_POLICY)
        assert totals == summaries
    finally:
        await conn.close()


async def test_the_rest_counts_an_event_of_no_known_session_on_a_page_as_the_events_do(built):
    """The page values' rest leaves out the sessions an inner day counts (an anti join); an
    event whose session has no initial row still counts, as the events SQL counts it."""
    site = built["site"]
    conn = await connect(built["url"])
    try:
        await conn.execute(
            """INSERT INTO events (event_id, site_id, ts, session_id, visitor_id, name, hostname,
                                   pathname)
               VALUES ('00000000-0000-0000-0000-0000000000e1', $1, $2, 43, 43, 'pageview',
                       'example.com', '/orphan')""",
            site.id,
            NOW - timedelta(hours=1),
        )
        body = {"metrics": PER_VALUE, "date_range": "7d", "dimensions": ["event:page"]}
        q = _query(site, body, site.tier, ZONE)
        totals = await visit_days_sql.fetch(conn, q, site.id, site.tier)
        assert totals is not None and "'/orphan'" in {repr(r["d0"]) for r in totals}
        events = await conn.fetch(*_flat(stats_sql.build(q, site.id, site.tier)))
        assert _values(q, totals) == _values(q, events)
    finally:
        await conn.execute(
            "DELETE FROM events WHERE event_id = '00000000-0000-0000-0000-0000000000e1'"
        )
        await conn.close()
