"""The daily graph, top pages and custom events from the closed local days (`local_days`,
`local_day_values`) plus the rest of the range give exactly what the summaries or the events
alone give; a late delivery's days fall back to them until maintain builds them again."""

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from query import local_days_sql, visit_sql
from query.stats import _metric
from query.stats_sql import POSTGRES, build
from tests.stats_data import Truth, local_day, stats_query, store
from tests.test_query_stats import NOW, ZONE, env, query  # noqa: F401
from topup import local_days
from topup.database import connect
from topup.maintenance import maintain
from topup.tiers import Tier

ZONES = [ZONE, "UTC", "America/New_York", "Pacific/Kiritimati"]  # UTC+1/+2, 0, -5/-4, +14
KOLKATA = "Asia/Kolkata"  # UTC+5:30: no graph from the days (visit_hours), but their values
METRICS = ["visitors", "pageviews", "events"]
_today = NOW.date()
RANGES = [
    "7d",
    "30d",
    "month",
    "day",  # only today: nothing built
    [(_today - timedelta(days=8)).isoformat(), (_today - timedelta(days=3)).isoformat()],
    # ISO datetimes that cut their first and last day
    [f"{_today - timedelta(days=6)}T07:00:00", f"{_today - timedelta(days=1)}T15:00:00"],
]


def _closed(zone: str) -> list:
    tz, days = ZoneInfo(zone), []
    day = NOW.date() - timedelta(days=12)
    while datetime.combine(day + timedelta(days=1), time(), tz) + local_days.LATE <= NOW:
        days.append(day)
        day += timedelta(days=1)
    return days


@pytest.fixture(scope="module")
async def graph(env):  # noqa: F811
    """The shared site with its local days built by maintain (its own zone) and for the other
    zones the tests ask in."""
    conn = await connect(env["url"])
    try:
        report = await maintain(conn, retention_days=35, now=NOW)
        assert report.local_days_built > 0
        for zone in [*ZONES[1:], KOLKATA]:
            for day in _closed(zone):
                await local_days.build_day(conn, env["site"].id, zone, day)
    finally:
        await conn.close()
    return env


def _rows(q, rows):
    return sorted((repr(r["d0"]), *(repr(_metric(m, r)) for m in q.metrics)) for r in rows)


def _scan(q, site_id, tier):
    """The ordinary path: the summaries for the graph, the events for pages and names."""
    if q.dimensions[0].startswith("time"):
        return visit_sql.build(q, site_id, tier)
    return build(q, site_id, tier, None, POSTGRES)


async def _both(conn, site, q, tier):
    """(from the local days, from the ordinary path), as the API's dimension and metric values."""

    async def rest(part):
        sql, params = _scan(part, site.id, tier)
        return await conn.fetch(sql, *params)

    days = await local_days_sql.fetch(conn, q, site.id, tier, rest)
    sql, params = _scan(q, site.id, tier)
    return (None if days is None else _rows(q, days)), _rows(q, await conn.fetch(sql, *params))


async def _check(graph, body, tier, zone):
    """The local days' rows equal the ordinary path's (None for a range with no built day);
    the ordinary path's rows."""
    site = graph["site"]
    q = stats_query(site.id, body, tier=site.tier, zone=zone)
    assert local_days_sql.answers(q, tier)
    conn = await connect(graph["url"])
    try:
        days, ordinary = await _both(conn, site, q, tier)
        built = await conn.fetchval(
            """SELECT count(*) FROM local_days WHERE site_id = $1 AND zone = $2
                 AND (day::timestamp AT TIME ZONE zone) >= $3
                 AND ((day + 1)::timestamp AT TIME ZONE zone) <= $4""",
            site.id, zone, q.start, q.end,
        )  # fmt: skip
    finally:
        await conn.close()
    # Every range but today's (and this month's in its first days) has a built day.
    assert built or body["date_range"] in ("day", "month")
    assert days == (ordinary if built else None)
    return ordinary


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("tier", [Tier.BANNER_FREE, Tier.PRIVACY_POLICY])
@pytest.mark.parametrize("date_range", RANGES, ids=str)
async def test_local_days_answer_as_the_summaries_do(graph, date_range, tier, zone):
    body = {"metrics": METRICS, "date_range": date_range, "dimensions": ["time:day"]}
    summaries = await _check(graph, body, tier, zone)
    assert len(summaries) > 1 or date_range in ("day", "month")


FILTERS = {
    "event:page": [None, ["contains", "event:page", ["o"]], ["is_not", "event:page", ["/"]]],
    "event:name": [None, ["is_not", "event:name", ["pageview"]]],
}


@pytest.mark.parametrize("zone", [ZONE, "America/New_York", KOLKATA])
@pytest.mark.parametrize("tier", [Tier.BANNER_FREE, Tier.FULL])
@pytest.mark.parametrize("date_range", RANGES, ids=str)
@pytest.mark.parametrize(
    ("dimension", "condition"), [(d, f) for d, fs in FILTERS.items() for f in fs], ids=str
)
async def test_page_and_name_values_answer_as_the_events_do(
    graph, dimension, condition, date_range, tier, zone
):
    body = {"metrics": ["pageviews", "events"], "date_range": date_range,
            "dimensions": [dimension]} | ({"filters": [condition]} if condition else {})  # fmt: skip
    events = await _check(graph, body, tier, zone)
    assert events or date_range == "day"  # today may have just begun in the zone


def test_what_the_local_days_do_not_answer():
    site_id = "00000000-0000-0000-0000-000000000001"

    def q(**body):
        body = {"metrics": ["visitors"], "date_range": "7d", "dimensions": ["time:day"]} | body
        return stats_query(site_id, body, tier=Tier.FULL, zone=ZONE)

    assert local_days_sql.answers(q(), Tier.PRIVACY_POLICY)
    assert not local_days_sql.answers(q(), Tier.FULL)  # consented ids are not in visit_hours
    assert not local_days_sql.answers(q(metrics=["visits"]), Tier.PRIVACY_POLICY)
    assert not local_days_sql.answers(q(dimensions=["time:week"]), Tier.PRIVACY_POLICY)
    assert local_days_sql.answers(q(dimensions=["time"]), Tier.PRIVACY_POLICY)  # by day
    assert not local_days_sql.answers(q(dimensions=["time"], date_range="day"), Tier.PRIVACY_POLICY)
    filtered = q(filters=[["is", "visit:country", ["DE"]]])
    assert not local_days_sql.answers(filtered, Tier.PRIVACY_POLICY)
    kolkata = stats_query(
        site_id,
        {"metrics": ["visitors"], "date_range": "7d", "dimensions": ["time:day"]},
        tier=Tier.FULL,
        zone="Asia/Kolkata",
    )
    assert not local_days_sql.answers(kolkata, Tier.PRIVACY_POLICY)  # days not on whole hours

    def pages(**body):
        body = {"metrics": ["pageviews"], "date_range": "7d", "dimensions": ["event:page"]} | body
        return stats_query(site_id, body, tier=Tier.FULL, zone=ZONE)

    assert local_days_sql.answers(pages(), Tier.FULL)
    assert not local_days_sql.answers(pages(metrics=["visitors"]), Tier.FULL)
    by_country = pages(filters=[["is", "visit:country", ["DE"]]])
    assert not local_days_sql.answers(by_country, Tier.FULL)
    assert not local_days_sql.answers(pages(dimensions=["event:hostname"]), Tier.FULL)


async def test_the_api_graph_answers_ground_truth_from_the_local_days(graph):
    """Ground truth through HTTP, and proof the local days are read: change one, it moves."""
    today = NOW.astimezone(ZoneInfo(ZONE)).date()
    start = datetime.combine(today - timedelta(days=6), time(), ZoneInfo(ZONE)).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(), ZoneInfo(ZONE)).astimezone(UTC)
    truth: Truth = graph["truth"]
    rows = truth.in_range(start, end)
    expected = truth.visitors_and_pageviews(rows, lambda r: local_day(r["ts"], ZONE))
    body = {"metrics": ["visitors", "pageviews"], "dimensions": ["time:day"], "date_range": "7d"}
    answer = await query(graph, **body)
    assert {r["dimensions"][0]: r["metrics"] for r in answer["results"]} == expected
    conn = await connect(graph["url"])
    try:
        day = await conn.fetchval(
            "SELECT max(day) FROM local_days WHERE site_id = $1 AND zone = $2",
            graph["site"].id,
            ZONE,
        )
        moved = "UPDATE local_days SET pageviews = pageviews + $3 WHERE zone = $1 AND day = $2"
        await conn.execute(moved, ZONE, day, 1000)
        answer = await query(graph, **body)
        await conn.execute(moved, ZONE, day, -1000)
    finally:
        await conn.close()
    got = {r["dimensions"][0]: r["metrics"] for r in answer["results"]}
    assert got[day.isoformat()] == [
        expected[day.isoformat()][0],
        expected[day.isoformat()][1] + 1000,
    ]


async def test_the_api_cards_answer_ground_truth_from_the_local_days(graph):
    """Top pages by page views and custom events, as the dashboard asks for them."""
    today = NOW.astimezone(ZoneInfo(ZONE)).date()
    start = datetime.combine(today - timedelta(days=29), time(), ZoneInfo(ZONE)).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), time(), ZoneInfo(ZONE)).astimezone(UTC)
    rows = graph["truth"].in_range(start, end)
    pages, names = defaultdict(int), defaultdict(int)
    for r in rows:
        pages[r["pathname"]] += r["name"] == "pageview"
        if r["name"] != "pageview":
            names[r["name"]] += 1
    top = await query(graph, metrics=["pageviews"], dimensions=["event:page"], date_range="30d")
    assert {r["dimensions"][0]: r["metrics"][0] for r in top["results"]} == pages
    custom = await query(graph, metrics=["events"], dimensions=["event:name"], date_range="30d",
                         filters=[["is_not", "event:name", ["pageview"]]])  # fmt: skip
    assert {r["dimensions"][0]: r["metrics"][0] for r in custom["results"]} == names
    assert names and len(pages) > 1
    conn = await connect(graph["url"])
    try:
        moved = """UPDATE local_day_values SET pageviews = pageviews + $1
                   WHERE zone = $2 AND dimension = 'event:page' AND value = '/'"""
        assert await conn.execute(moved, 1000, ZONE) != "UPDATE 0"
        top = await query(graph, metrics=["pageviews"], dimensions=["event:page"], date_range="30d")
        await conn.execute(moved, -1000, ZONE)
    finally:
        await conn.close()
    got = {r["dimensions"][0]: r["metrics"][0] for r in top["results"]}
    assert got["/"] > pages["/"] + 1000  # 1,000 more on each built day


async def test_a_late_delivery_forgets_the_local_days_it_changes(graph):
    from tests.fixtures import event

    site = graph["site"]
    body = {"metrics": METRICS, "date_range": "30d", "dimensions": ["time:day"]}
    q = stats_query(site.id, body, tier=site.tier, zone=ZONE)
    day = max(_closed(ZONE))
    conn = await connect(graph["url"])
    try:
        _, before = await _both(conn, site, q, Tier.PRIVACY_POLICY)
        noon = datetime.combine(day, time(12), UTC)
        await store(graph["url"], [event(site.id, "https://example.com/late", session="late",
                                         at=noon)])  # fmt: skip
        for table in ("local_days", "local_day_values"):
            kept = {r["day"] for r in await conn.fetch(f"SELECT day FROM {table} WHERE zone = $1",
                                                       ZONE)}  # fmt: skip
            assert day not in kept  # noon UTC is on that day in ZONE, and no other day changes
            assert day - timedelta(days=1) in kept
        days, summaries = await _both(conn, site, q, Tier.PRIVACY_POLICY)
        assert days == summaries != before  # the forgotten days come from the summaries
        report = await maintain(conn, retention_days=35, now=NOW)
        assert report.local_days_built == 1
        days, again = await _both(conn, site, q, Tier.PRIVACY_POLICY)
        assert days == again == summaries
    finally:
        await conn.close()
