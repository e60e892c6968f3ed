"""Visit-level queries read the sessions' hourly summaries (`visit_hours`) and give exactly the
answers the same queries give over raw events; queries the summary cannot answer exactly read
the events."""

import pytest

from query import stats_sql, visit_sql
from query.stats import _visit_only, previous_period
from tests.stats_data import stats_query
from tests.test_query_stats import ALL, env  # noqa: F401  (env: the shared generated site)
from topup.database import connect
from topup.tiers import Tier

QUERIES = [
    {"metrics": ALL, "date_range": "7d"},
    {"metrics": ALL, "date_range": "day", "dimensions": ["time:hour"]},
    {"metrics": ALL, "date_range": "30d", "dimensions": ["time:day"]},
    {"metrics": ["visitors", "visits", "bounce_rate"], "date_range": "30d",
     "dimensions": ["time:week"]},
    {"metrics": ["visitors", "pageviews"], "date_range": "month", "dimensions": ["time:month"]},
    {"metrics": ["visitors", "percentage", "visit_duration"], "date_range": "30d",
     "dimensions": ["visit:source"]},
    {"metrics": ALL, "date_range": "30d", "dimensions": ["visit:country", "visit:device"]},
    {"metrics": ["visitors", "visits", "bounce_rate"], "date_range": "30d",
     "dimensions": ["visit:entry_page"]},
    {"metrics": ["visitors", "visits", "views_per_visit"], "date_range": "30d",
     "dimensions": ["visit:exit_page"]},
    {"metrics": ALL, "date_range": "30d", "dimensions": ["visit:browser"],
     "filters": [["is_not", "visit:exit_page", ["/"]]]},
    {"metrics": ALL, "date_range": "7d", "dimensions": ["visit:utm_campaign", "time:day"],
     "filters": [["or", [["contains", "visit:country", ["d"]],
                         ["matches", "visit:referrer", ["google"]]]]]},
    {"metrics": ["visitors", "bounce_rate"], "date_range": "30d", "dimensions": ["visit:os"],
     "filters": [["not", ["is", "visit:channel", ["Direct"]]]]},
    {"metrics": ALL, "date_range": ["2026-01-01", "2027-12-31"],
     "filters": [["contains_not", "visit:city", ["a"]]]},
]  # fmt: skip


def _query(site, body, zone=None):
    return stats_query(site.id, body, tier=site.tier, zone=zone or site.timezone)


def _rows(records):
    return sorted((tuple(r) for r in records), key=repr)


@pytest.mark.parametrize("tier", list(Tier))
@pytest.mark.parametrize("body", QUERIES)
async def test_visit_hours_answer_as_the_events_do(env, body, tier):  # noqa: F811
    site = env["site"]
    query = _query(site, body)
    visit_filter = _visit_only(query.filter)
    assert visit_sql.answers(query, visit_filter)
    conn = await connect(env["url"])
    try:
        found = []
        for q in (query, previous_period(query)):
            raw = await conn.fetch(*_flat(stats_sql.build(q, site.id, tier, visit_filter)))
            summed = await conn.fetch(*_flat(visit_sql.build(q, site.id, tier, visit_filter)))
            assert _rows(summed) == _rows(raw)
            found.append(any(r["visitors"] for r in raw))
        assert found[0], "a query that finds nothing proves little"
    finally:
        await conn.close()


def _flat(built):
    sql, params = built
    return (sql, *params)


@pytest.mark.parametrize(
    ("body", "zone"),
    [
        ({"metrics": ["visitors"], "date_range": "7d", "dimensions": ["event:page"]}, None),
        ({"metrics": ["visits"], "date_range": "7d",
          "filters": [["is", "event:name", ["Signup"]]]}, None),
        ({"metrics": ["visitors"], "date_range": "7d",
          "filters": [["is", "event:props:plan", ["pro"]]]}, None),
        ({"metrics": ["visitors", "conversion_rate"], "date_range": "7d",
          "dimensions": ["visit:source"], "filters": [["is", "event:name", ["Signup"]]]}, None),
        ({"metrics": ["visitors"], "date_range": "7d", "dimensions": ["time:day"]},
         "Asia/Kolkata"),
    ],
)  # fmt: skip
def test_what_the_summary_cannot_answer_exactly_reads_the_events(env, body, zone):  # noqa: F811
    query = _query(env["site"], body, zone)
    assert not visit_sql.answers(query, _visit_only(query.filter))


def test_a_range_must_begin_and_end_on_whole_hours(env):  # noqa: F811
    from datetime import timedelta

    query = _query(env["site"], {"metrics": ["visitors"], "date_range": "7d"})
    assert visit_sql.answers(query, None)
    half_past = query.shifted(
        query.start + timedelta(minutes=30), query.end, query.first_day, query.last_day
    )
    assert not visit_sql.answers(half_past, None)


def test_a_whole_hour_zone_without_time_buckets_needs_only_whole_hour_ends(env):  # noqa: F811
    # Kolkata's days begin at :30 UTC; a day range there cannot be summed from UTC hours.
    query = _query(env["site"], {"metrics": ["visitors"], "date_range": "7d"}, "Asia/Kolkata")
    assert not visit_sql.answers(query, None)
    query = _query(env["site"], {"metrics": ["visitors"], "date_range": "7d"}, "America/New_York")
    assert visit_sql.answers(query, None)
