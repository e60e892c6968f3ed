"""The Stats API over real HTTP against generated traffic, checked against ground truth computed
in Python from the stored rows."""

import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import msgspec
import pytest

from query import stats, stats_request
from query.app import create_app
from query.archive_reader import LocalArchiveReader
from tests.conftest import LiveServer, database_url_for
from tests.stats_data import Truth, generate, local_day, matcher, store
from topup import accounts, sites
from topup.database import connect, create_pool
from topup.settings import load_settings
from topup.tiers import Tier, kept_fields

ZONE = "Europe/Berlin"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
async def env(postgres_server_url, template_database, tmp_path_factory):
    name = f"stats_{uuid.uuid4().hex[:12]}"
    admin = await connect(postgres_server_url)
    await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    await admin.close()
    url = database_url_for(postgres_server_url, name)
    conn = await connect(url)
    owner = await accounts.create_account(conn, "Owner")
    other = await accounts.create_account(conn, "Other")
    site = await sites.create_site(
        conn,
        owner.id,
        name="Example",
        domains=["example.com"],
        tier=Tier.PRIVACY_POLICY,
        timezone=ZONE,
        allowance=10**9,
    )
    await conn.execute(
        "UPDATE sites SET created_at = $2 WHERE id = $1", site.id, NOW - timedelta(days=20)
    )
    key = (await accounts.create_api_key(conn, owner.id, "t")).key
    other_key = (await accounts.create_api_key(conn, other.id, "t")).key
    data_dir = tmp_path_factory.mktemp("q")
    await store(
        url, generate(site.id, days=9, visits_per_day=40, seed=11, now=NOW), data_dir / "archive"
    )
    truth = await Truth.load(conn, site.id, "privacy_policy")
    await conn.close()
    settings = load_settings({}, database_url=url, data_dir=str(data_dir))
    server = LiveServer(create_app(settings))
    async with server, server.client() as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield {
            "client": client,
            "site": site,
            "truth": truth,
            "other_key": other_key,
            "url": url,
            "data_dir": data_dir,
        }
    admin = await connect(postgres_server_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    await admin.close()


async def query(env, **body):
    body = {"site_id": str(env["site"].id)} | body
    answer = await env["client"].post("/api/v2/query", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def day_bounds(first, last):
    tz = ZoneInfo(ZONE)
    start = datetime.combine(first, datetime.min.time(), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
    return start, end


ALL = [
    "visitors",
    "visits",
    "pageviews",
    "views_per_visit",
    "bounce_rate",
    "visit_duration",
    "events",
]


@pytest.mark.parametrize("preset", ["day", "7d", "30d"])
async def test_aggregate_metrics_match_ground_truth(env, preset):
    today = NOW.astimezone(ZoneInfo(ZONE)).date()
    first = {"day": today, "7d": today - timedelta(days=6), "30d": today - timedelta(days=29)}[
        preset
    ]
    start, end = day_bounds(first, today)
    rows = env["truth"].in_range(start, end)
    expected = env["truth"].aggregate(rows, rows)
    answer = await query(env, metrics=ALL, date_range=preset)
    assert answer["results"] == [{"metrics": [expected[m] for m in ALL], "dimensions": []}]
    assert answer["query"]["date_range"] == [start.isoformat(), end.isoformat()]
    assert expected["pageviews"] > 0


DIMENSIONS = {
    "event:page": "pathname",
    "event:name": "name",
    "visit:source": "source",
    "visit:channel": "channel",
    "visit:country": "country",
    "visit:region": "region",
    "visit:city": "city",
    "visit:device": "device",
    "visit:browser": "browser",
    "visit:os": "os",
    "visit:browser_version": "browser_version",
    "visit:entry_page": "entry_page",
    "visit:exit_page": "exit_page",
    "visit:utm_campaign": "utm_campaign",
    "visit:screen": "screen",
    "visit:referrer": "referrer",
    "event:props:plan": None,
}


@pytest.mark.parametrize("dimension", list(DIMENSIONS))
async def test_breakdowns_match_ground_truth(env, dimension):
    start, end = NOW - timedelta(days=40), NOW + timedelta(seconds=1)
    rows = env["truth"].in_range(start, end)
    key = DIMENSIONS[dimension]
    groups = defaultdict(list)
    for r in rows:
        value = (r["props"] or {}).get("plan") if key is None else r[key]
        groups[value].append(r)
    metrics = ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration", "percentage"]
    answer = await query(
        env,
        metrics=metrics,
        dimensions=[dimension],
        date_range=[start.isoformat(), end.isoformat()],
    )
    got = {tuple(r["dimensions"]): r["metrics"] for r in answer["results"]}
    total = len({env["truth"].visitor(r) for r in rows})
    expected = {}
    for value, group in groups.items():
        agg = env["truth"].aggregate(group, rows)
        expected[(value,)] = [
            agg["visitors"],
            agg["visits"],
            agg["pageviews"],
            agg["bounce_rate"],
            agg["visit_duration"],
            round(100 * agg["visitors"] / total, 1),
        ]
    assert got == expected
    # Ordered by visitors, most first.
    visitors = [r["metrics"][0] for r in answer["results"]]
    assert visitors == sorted(visitors, reverse=True)


@pytest.mark.parametrize("dimension", ["event:page", "visit:country"])
async def test_breakdowns_without_visitor_metrics_skip_the_distinct_count(env, dimension):
    """The dashboard's pages card asks page views only: right answers, and no distinct count
    of visitors (the costliest aggregate) in the SQL, from events or from the summaries."""
    from query import stats_sql, visit_sql
    from tests.stats_data import stats_query

    hour = NOW.replace(minute=0, second=0)  # whole hours: the summaries can answer
    start, end = hour - timedelta(days=40), hour + timedelta(hours=1)
    rows = env["truth"].in_range(start, end)
    key = DIMENSIONS[dimension]
    body = {"metrics": ["pageviews", "visits"], "dimensions": [dimension],
            "date_range": [start.isoformat(), end.isoformat()]}  # fmt: skip
    answer = await query(env, **body)
    groups = defaultdict(list)
    for r in rows:
        groups[r[key]].append(r)
    expected = {}
    for value, group in groups.items():
        agg = env["truth"].aggregate(group, rows)
        expected[(value,)] = [agg["pageviews"], agg["visits"]]
    assert {tuple(r["dimensions"]): r["metrics"] for r in answer["results"]} == expected
    site = env["site"]
    parsed = stats_query(site.id, body, tier=site.tier, zone=site.timezone)
    fast = visit_sql.answers(parsed, None)
    assert fast == dimension.startswith("visit:")
    build = visit_sql.build if fast else stats_sql.build
    sql, _ = build(parsed, site.id, site.tier, None)
    assert "count(DISTINCT" not in sql
    with_visitors = stats_query(site.id, body | {"metrics": ["visitors"]}, tier=site.tier)
    assert "count(DISTINCT visitor)" in build(with_visitors, site.id, site.tier, None)[0]


FILTERS = [
    (["is", "event:page", ["/pricing", "/docs"]], "pathname"),
    (["is_not", "visit:country", ["US"]], "country"),
    (["contains", "visit:source", ["goo"]], "source"),
    (["contains_not", "event:page", ["blog"]], "pathname"),
    (["matches", "event:page", ["^/docs/.+"]], "pathname"),
    (["matches_not", "visit:browser", ["Chrome$"]], "browser"),
    (["is", "visit:channel", ["Organic Search", "Email"]], "channel"),
]


@pytest.mark.parametrize(("filter_", "column"), FILTERS)
async def test_filters_match_ground_truth(env, filter_, column):
    start, end = NOW - timedelta(days=40), NOW + timedelta(seconds=1)
    rows = env["truth"].in_range(start, end)
    test = matcher(filter_[0], filter_[2])
    kept = [r for r in rows if test(r[column])]
    expected = env["truth"].aggregate(kept, rows)
    answer = await query(
        env, metrics=ALL, filters=[filter_], date_range=[start.isoformat(), end.isoformat()]
    )
    assert answer["results"][0]["metrics"] == [expected[m] for m in ALL]
    assert 0 < expected["events"] < len(rows)


async def test_and_or_not_combine(env):
    start, end = NOW - timedelta(days=40), NOW + timedelta(seconds=1)
    rows = env["truth"].in_range(start, end)
    kept = [
        r
        for r in rows
        if (r["country"] in ("DE", "FR") or r["device"] == "Mobile") and r["pathname"] != "/"
    ]
    expected = env["truth"].aggregate(kept, rows)
    filters = [
        ["or", [["is", "visit:country", ["DE", "FR"]], ["is", "visit:device", ["Mobile"]]]],
        ["not", ["is", "event:page", ["/"]]],
    ]
    answer = await query(
        env, metrics=ALL, filters=filters, date_range=[start.isoformat(), end.isoformat()]
    )
    assert answer["results"][0]["metrics"] == [expected[m] for m in ALL]


async def test_property_filter_and_conversion_rate(env):
    start, end = NOW - timedelta(days=40), NOW + timedelta(seconds=1)
    rows = env["truth"].in_range(start, end)
    signups = [r for r in rows if r["name"] == "Signup" and (r["props"] or {}).get("plan") == "pro"]
    visitors = len({env["truth"].visitor(r) for r in rows})
    converted = len({env["truth"].visitor(r) for r in signups})
    answer = await query(
        env,
        metrics=["visitors", "events", "conversion_rate"],
        filters=[["is", "event:name", ["Signup"]], ["is", "event:props:plan", ["pro"]]],
        date_range=[start.isoformat(), end.isoformat()],
    )
    assert answer["results"][0]["metrics"] == [
        converted,
        len(signups),
        round(100 * converted / visitors, 2),
    ]
    assert converted > 0


async def test_daily_timeseries_in_the_sites_time_zone(env):
    today = NOW.astimezone(ZoneInfo(ZONE)).date()
    first = today - timedelta(days=6)
    start, end = day_bounds(first, today)
    rows = env["truth"].in_range(start, end)
    by_day = defaultdict(list)
    for r in rows:
        by_day[local_day(r["ts"], ZONE)].append(r)
    answer = await query(
        env,
        metrics=["visitors", "pageviews"],
        dimensions=["time:day"],
        date_range="7d",
        include={"time_labels": True},
    )
    got = {r["dimensions"][0]: r["metrics"] for r in answer["results"]}
    expected = {}
    for day, group in by_day.items():
        agg = env["truth"].aggregate(group, rows)
        expected[day] = [agg["visitors"], agg["pageviews"]]
    assert got == expected
    assert answer["meta"]["time_labels"] == [
        (first + timedelta(days=i)).isoformat() for i in range(7)
    ]
    assert [r["dimensions"][0] for r in answer["results"]] == sorted(got)


async def test_hourly_for_one_day(env):
    answer = await query(
        env,
        metrics=["pageviews"],
        dimensions=["time"],
        date_range="day",
        include={"time_labels": True},
    )
    labels = answer["meta"]["time_labels"]
    assert len(labels) == 24 and labels[0].endswith(" 00:00:00")
    today = NOW.astimezone(ZoneInfo(ZONE)).date()
    start, end = day_bounds(today, today)
    by_hour = defaultdict(int)
    for r in env["truth"].in_range(start, end):  # an hour with only custom events has 0 pageviews
        by_hour[r["ts"].astimezone(ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:00:00")] += (
            r["name"] == "pageview"
        )
    assert {r["dimensions"][0]: r["metrics"][0] for r in answer["results"]} == dict(by_hour)


async def test_comparison_with_the_previous_period(env):
    today = NOW.astimezone(ZoneInfo(ZONE)).date()
    start, end = day_bounds(today - timedelta(days=2), today)
    before_start, before_end = day_bounds(today - timedelta(days=5), today - timedelta(days=3))
    now_rows, before_rows = (
        env["truth"].in_range(start, end),
        env["truth"].in_range(before_start, before_end),
    )
    now, before = (
        env["truth"].aggregate(now_rows, now_rows),
        env["truth"].aggregate(before_rows, before_rows),
    )
    answer = await query(
        env,
        metrics=["visitors", "bounce_rate"],
        date_range=[(today - timedelta(days=2)).isoformat(), today.isoformat()],
        include={"comparisons": {"mode": "previous_period"}},
    )
    row = answer["results"][0]
    assert row["metrics"] == [now["visitors"], now["bounce_rate"]]
    assert row["comparison"]["metrics"] == [before["visitors"], before["bounce_rate"]]
    assert row["comparison"]["change"] == [
        round(100 * (now["visitors"] - before["visitors"]) / before["visitors"]),
        now["bounce_rate"] - before["bounce_rate"],
    ]


def checked(env, body):
    """`body` as the service checks it for the test site (to call `stats.answer` directly)."""
    site = env["site"]
    return stats_request.check(
        msgspec.convert(body, stats_request.QueryBody),
        tier=site.tier,
        kept=kept_fields(site.tier, None),
        zone=ZONE,
        today=NOW.astimezone(ZoneInfo(ZONE)).date(),
        created=(NOW - timedelta(days=20)).date(),
    )


async def test_the_previous_period_runs_beside_on_a_free_connection(env):
    """With a free pooled connection the comparison runs on it at the same time as the range;
    with none free it runs after the range on the request's own (waiting for one could
    deadlock). The answers are the same either way, and the same as over HTTP."""
    body = {
        "site_id": str(env["site"].id),
        "metrics": ["visitors", "visits", "pageviews", "bounce_rate", "visit_duration"],
        "date_range": "7d",
        "include": {"comparisons": {"mode": "previous_period"}},
    }
    over_http = await query(env, **body)
    site, parsed = env["site"], checked(env, body)
    for size, used in ((1, 1), (2, 2)):
        pool = await create_pool(env["url"], max_size=size)
        try:
            async with pool.acquire() as conn:
                stores = stats.Stores(conn, None, 30, pool)
                answer = await stats.answer(stores, parsed, site.id, site.tier, {})
            assert pool.get_size() == used
        finally:
            await pool.close()
        assert msgspec.to_builtins(answer.results) == over_http["results"]


async def test_a_failing_period_fails_the_answer_and_leaves_both_connections_usable(env, tmp_path):
    """When one period fails (here the previous one, answered by an archive that cannot be
    read) the answer raises that error itself, as the one-after-the-other path does (the
    service maps errors by type), and both connections are usable afterwards."""
    unreadable = tmp_path / "not-a-folder"
    unreadable.write_text("")
    body = {"site_id": str(env["site"].id), "metrics": ["visitors"], "date_range": "7d",
            "include": {"comparisons": {"mode": "previous_period"}}}  # fmt: skip
    site, parsed = env["site"], checked(env, body)
    pool = await create_pool(env["url"], max_size=2)
    try:
        async with pool.acquire() as conn:
            # The range lies inside 8 recent days (Postgres), the previous period before them.
            stores = stats.Stores(conn, LocalArchiveReader(unreadable), 8, pool)
            with pytest.raises(NotADirectoryError):
                await stats.answer(stores, parsed, site.id, site.tier, {})
            assert await conn.fetchval("SELECT 1") == 1
        async with pool.acquire() as first, pool.acquire() as second:
            assert [await first.fetchval("SELECT 1"), await second.fetchval("SELECT 2")] == [1, 2]
    finally:
        await pool.close()


async def test_pagination_order_and_total_rows(env):
    body = {
        "metrics": ["pageviews"],
        "dimensions": ["event:page"],
        "date_range": "30d",
        "order_by": [["event:page", "asc"]],
        "include": {"total_rows": True},
    }
    full = await query(env, **body)
    pages = [r["dimensions"][0] for r in full["results"]]
    assert pages == sorted(pages)
    second = await query(env, **body, pagination={"limit": 3, "offset": 3})
    assert [r["dimensions"][0] for r in second["results"]] == pages[3:6]
    assert second["meta"]["total_rows"] == len(pages)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"metrics": ["visitorz"], "date_range": "7d"}, "unknown metric 'visitorz'"),
        ({"metrics": [], "date_range": "7d"}, "ask for at least one metric"),
        ({"metrics": ["visitors"], "date_range": "fortnight"}, "unknown preset 'fortnight'"),
        (
            {"metrics": ["visitors"], "date_range": ["2026-01-05", "2026-01-01"]},
            "must not come before",
        ),
        (
            {"metrics": ["visitors"], "date_range": "7d", "dimensions": ["visit:shoe_size"]},
            "unknown dimension",
        ),
        (
            {
                "metrics": ["visitors"],
                "date_range": "7d",
                "filters": [["like", "event:page", ["/"]]],
            },
            "unknown filter operator 'like'",
        ),
        (
            {
                "metrics": ["visitors"],
                "date_range": "7d",
                "filters": [["matches", "event:page", ["("]]],
            },
            "invalid regular expression",
        ),
        ({"metrics": ["percentage"], "date_range": "7d"}, "needs a dimension"),
        ({"metrics": ["conversion_rate"], "date_range": "7d"}, "needs an event:name filter"),
        (
            {"metrics": ["visitors"], "date_range": "7d", "include": {"time_labels": True}},
            "needs a time dimension",
        ),
        (
            {"metrics": ["visitors"], "date_range": "7d", "order_by": [["pageviews", "desc"]]},
            "neither a queried",
        ),
        (
            {"metrics": ["visitors"], "date_range": "7d", "pagination": {"limit": 0}},
            "limit is 1 to",
        ),
        ({"metrics": ["visitors"], "date_range": "7d", "surprise": 1}, "unknown field"),
    ],
)
async def test_bad_queries_are_400_with_a_reason(env, body, message):
    answer = await env["client"].post("/api/query", json={"site_id": str(env["site"].id)} | body)
    assert answer.status_code == 400
    assert message.lower() in answer.json()["error"].lower(), answer.json()


INJECTIONS = [
    "' OR 1=1 --",
    "x'); DROP TABLE events; --",
    "%' UNION SELECT * FROM accounts --",
    "\\",
    "$1",
]


@pytest.mark.parametrize(
    "operator", ["is", "is_not", "contains", "contains_not", "matches", "matches_not"]
)
async def test_sql_injection_in_filters_is_just_a_value(env, operator):
    for value in INJECTIONS:
        if operator.startswith("matches"):
            value = (
                value.replace("\\", "\\\\")
                .replace("(", "\\(")
                .replace(")", "\\)")
                .replace("$", "\\$")
            )
        answer = await env["client"].post(
            "/api/query",
            json={
                "site_id": str(env["site"].id),
                "metrics": ["events"],
                "date_range": "30d",
                "filters": [[operator, "event:props:plan'; --", [value]]],
            },
        )
        assert answer.status_code == 200, answer.text
    for dimension in ["event:page; DROP TABLE events", "visit:country' --", "event:props:"]:
        answer = await env["client"].post(
            "/api/query",
            json={
                "site_id": str(env["site"].id),
                "metrics": ["events"],
                "date_range": "30d",
                "dimensions": [dimension],
            },
        )
        assert answer.status_code == 400
    conn = await connect(env["url"])
    assert await conn.fetchval("SELECT count(*) FROM events") > 0
    await conn.close()


async def test_realtime_and_export(env):
    def visitors_since(instant: datetime) -> int:
        return len({env["truth"].visitor(r) for r in env["truth"].rows if r["ts"] >= instant})

    before = datetime.now(UTC)
    answer = await env["client"].get("/api/realtime", params={"site_id": str(env["site"].id)})
    after = datetime.now(UTC)
    assert answer.status_code == 200
    # The last five minutes as the server saw them, some instant between before and after.
    assert (
        visitors_since(after - timedelta(minutes=5))
        <= answer.json()["visitors"]
        <= visitors_since(before - timedelta(minutes=5))
    )
    assert visitors_since(after - timedelta(minutes=5)) > 0 or after - NOW > timedelta(minutes=3)
    body = {
        "site_id": str(env["site"].id),
        "metrics": ["visitors", "pageviews"],
        "dimensions": ["event:page"],
        "date_range": "30d",
    }
    csv_answer = await env["client"].post("/api/export", json=body)
    assert csv_answer.status_code == 200
    assert csv_answer.headers["content-type"].startswith("text/csv")
    lines = csv_answer.text.strip().splitlines()
    assert lines[0] == "event:page,visitors,pageviews"
    json_rows = (await query(env, **{k: v for k, v in body.items() if k != "site_id"}))["results"]
    assert lines[1:] == [
        f"{r['dimensions'][0]},{r['metrics'][0]},{r['metrics'][1]}" for r in json_rows
    ]


async def test_another_accounts_site_is_not_found(env):
    answer = await env["client"].post(
        "/api/query",
        headers={"Authorization": f"Bearer {env['other_key']}"},
        json={"site_id": str(env["site"].id), "metrics": ["visitors"], "date_range": "7d"},
    )
    assert answer.status_code == 404
    missing = await env["client"].post(
        "/api/query",
        json={"site_id": str(uuid.uuid4()), "metrics": ["visitors"], "date_range": "7d"},
    )
    assert missing.status_code == 404 and missing.json() == answer.json()


NESTED = b"[" * 20_000 + b"]" * 20_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/query", b"{not json"),
        ("/api/query", b'{"site_id": "\xff", "metrics": ["visitors"]}'),
        ("/api/query", b'{"metrics": ' + NESTED + b"}"),
        ("/api/sites", b'{"name": "\xff"}'),
        ("/api/sites", b'{"name": "x", "domains": ' + NESTED + b"}"),
    ],
    ids=["malformed", "invalid-utf8", "nested", "site-invalid-utf8", "site-nested"],
)
async def test_undecodable_bodies_are_400_and_create_nothing(env, path, body):
    sites_before = (await env["client"].get("/api/sites")).json()
    answer = await env["client"].post(
        path, content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]
    assert (await env["client"].get("/api/sites")).json() == sites_before
