"""The process service over real HTTP: Firehose's protocol, storage, sessions, idempotency."""

import asyncio
import json

import asyncpg
import pytest

from process.app import create_app
from process.store import EXISTING_SESSIONS, _meanwhile
from tests.conftest import LiveServer
from tests.fixtures import CHROME_MAC, IP_US, SAFARI_IPHONE, deliver, delivery_body, event
from topup import accounts, sites
from topup.tiers import Tier


@pytest.fixture
async def site(db):
    account = await accounts.create_account(db, "Acme")
    return await sites.create_site(
        db, account.id, name="Example", domains=["example.com"], tier=Tier.PRIVACY_POLICY,
        allowance=1_000,
    )  # fmt: skip


@pytest.fixture
async def process(settings):
    server = LiveServer(create_app(settings))
    async with server, server.client() as client:
        yield client


async def usage(db, site_id):
    rows = await db.fetch(
        """SELECT outcome, sum(events)::bigint AS events FROM usage_daily WHERE site_id = $1
           GROUP BY outcome""",  # over the days: a test's events may straddle midnight
        site_id,
    )
    return {r["outcome"]: r["events"] for r in rows}


async def test_echoes_request_id_and_stores_events(process, db, site):
    body = delivery_body([[event(site.id), event(site.id, "https://example.com/pricing")]])
    answer = await deliver(process, body)
    assert answer.status_code == 200
    assert answer.json()["requestId"] == body["requestId"]
    assert isinstance(answer.json()["timestamp"], int)
    assert await db.fetchval("SELECT count(*) FROM events WHERE site_id = $1", site.id) == 2
    assert await db.fetchval("SELECT count(*) FROM initial_events WHERE site_id = $1", site.id) == 1
    assert await usage(db, site.id) == {"accepted": 2}
    remaining = await db.fetchval("SELECT allowance_remaining FROM sites WHERE id = $1", site.id)
    assert remaining == 998


async def test_gzip_body(process, db, site):
    body = delivery_body([[event(site.id)]])
    answer = await deliver(process, body, gzip_body=True)
    assert answer.status_code == 200, answer.text
    assert answer.json()["requestId"] == body["requestId"]
    assert await db.fetchval("SELECT count(*) FROM events") == 1


async def test_wrong_or_missing_access_key_is_401_and_stores_nothing(process, db, site):
    body = delivery_body([[event(site.id)]])
    assert (await deliver(process, body, access_key="guess")).status_code == 401
    assert (await deliver(process, body, access_key="")).status_code == 401
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_malformed_records_are_dropped_as_invalid_not_retried(process, db, site):
    good = [event(site.id)]
    invalid_utf8 = b'{"name": "\xff"}\n'
    nested = b'{"x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n"
    body = delivery_body([good, b"this is not json\n", b'{"name": 5}\n', invalid_utf8, nested])
    body["records"].append({"data": "%%% not base64 %%%"})
    answer = await deliver(process, body)
    assert answer.status_code == 200  # never an endless retry
    assert await db.fetchval("SELECT count(*) FROM events") == 1
    nil = "00000000-0000-0000-0000-000000000000"
    assert (
        await db.fetchval(
            "SELECT events FROM usage_daily WHERE site_id = $1 AND outcome = 'invalid'", nil
        )
        == 5
    )


async def test_a_body_that_is_not_a_delivery_is_400(process, db):
    answer = await process.post(
        "/firehose", content=b"{}", headers={"X-Amz-Firehose-Access-Key": "test-access-key"}
    )
    assert answer.status_code == 400
    assert "requestId" in answer.json()["errorMessage"]
    bad_gzip = await process.post(
        "/firehose", content=b"nope", headers={
            "X-Amz-Firehose-Access-Key": "test-access-key", "Content-Encoding": "gzip"},
    )  # fmt: skip
    assert bad_gzip.status_code == 400
    for body in (b'{"requestId": "\xff"}', b'{"x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"):
        answer = await process.post(
            "/firehose", content=body, headers={"X-Amz-Firehose-Access-Key": "test-access-key"}
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["errorMessage"].startswith("not a Firehose delivery")


async def test_same_delivery_twice_stores_and_counts_once(process, db, site):
    body = delivery_body([[event(site.id, session=f"s{i}") for i in range(5)]])
    for _ in range(3):
        answer = await deliver(process, body)
        assert answer.status_code == 200 and answer.json()["requestId"] == body["requestId"]
    assert await db.fetchval("SELECT count(*) FROM events") == 5
    assert await db.fetchval("SELECT count(*) FROM initial_events") == 5
    assert await usage(db, site.id) == {"accepted": 5}
    remaining = await db.fetchval("SELECT allowance_remaining FROM sites WHERE id = $1", site.id)
    assert remaining == 995


async def test_overlapping_deliveries_store_each_event_once(process, db, site):
    events = [event(site.id, session=f"s{i}") for i in range(6)]
    first = delivery_body([events[:4]])
    second = delivery_body([events[2:]])  # a new request id carrying two events again
    assert (await deliver(process, first)).status_code == 200
    assert (await deliver(process, second)).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM events") == 6
    assert await db.fetchval("SELECT count(*) FROM initial_events") == 6
    assert await usage(db, site.id) == {"accepted": 6}


async def test_an_overlapping_delivery_reaching_a_new_day_is_stored_at_once(process, db, site):
    """The overlap rolls the first attempt back, with the day partition it made: the careful
    attempt must not take that partition for made (it answered 503 until Firehose retried)."""
    from datetime import UTC, datetime, timedelta

    old = datetime.now(UTC) - timedelta(days=12)
    assert not await db.fetchval(
        "SELECT to_regclass(format('events_p%s', to_char($1::date, 'YYYYMMDD')))", old.date()
    )
    stored = event(site.id, session="a")
    assert (await deliver(process, delivery_body([[stored]]))).status_code == 200
    again = delivery_body([[stored, event(site.id, session="b", at=old)]])
    assert (await deliver(process, again)).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM events") == 2
    assert await usage(db, site.id) == {"accepted": 2}


async def test_first_event_of_a_session_carries_its_attributes(process, db, site):
    start = event(site.id, "https://example.com/landing?utm_source=newsletter&utm_medium=email",
                  session="tab-A", referrer="https://mail.google.com/", ua=SAFARI_IPHONE,
                  screen=(390, 844))  # fmt: skip
    later = [event(site.id, f"https://example.com/p{i}", session="tab-A", ua=SAFARI_IPHONE,
                   screen=(390, 844)) for i in range(2)]  # fmt: skip
    other = event(site.id, session="tab-B", ip=IP_US, ua=CHROME_MAC)
    await deliver(process, delivery_body([[start, *later[:1]]]))
    await deliver(process, delivery_body([[later[1], other]]))
    initials = await db.fetch("SELECT * FROM initial_events ORDER BY ts")
    assert len(initials) == 2
    first = initials[0]
    assert (first["entry_page"], first["utm_source"], first["utm_medium"], first["channel"]) == (
        "/landing", "newsletter", "email", "Email")  # fmt: skip
    assert (first["referrer_source"], first["device"], first["browser"], first["os"]) == (
        "newsletter", "Mobile", "Mobile Safari", "iOS")  # fmt: skip
    session_rows = await db.fetch(
        "SELECT session_id, visitor_id, pathname FROM events WHERE session_id = $1 ORDER BY ts",
        first["session_id"],
    )
    assert [r["pathname"] for r in session_rows] == ["/landing", "/p0", "/p1"]
    assert {r["visitor_id"] for r in session_rows} == {first["visitor_id"]}


async def test_drops_are_counted_by_reason(process, db, site):
    from tests.fixtures import GOOGLEBOT, HEADLESS

    batch = [
        event(site.id),
        event(site.id, "https://evil.example.org/"),  # not the site's host
        event(site.id, ua=GOOGLEBOT),
        event(site.id, ua=HEADLESS),
        event(site.id, referrer="https://semalt.com/"),
        event(None, domain="unknown.example.net"),
    ]
    assert (await deliver(process, delivery_body([batch]))).status_code == 200
    assert await usage(db, site.id) == {"accepted": 1, "hostname_not_allowed": 1, "bot": 3}
    nil = "00000000-0000-0000-0000-000000000000"
    assert await usage(db, nil) == {"unknown_site": 1}


async def test_plausible_format_events_resolve_by_domain(process, db, site):
    batch = [
        event(None, "https://www.example.com/a", domain="example.com", session=None),
        event(None, "https://example.com/b", domain="www.example.com", session=None),
    ]
    assert (await deliver(process, delivery_body([batch]))).status_code == 200
    rows = await db.fetch("SELECT hostname, pathname, session_id FROM events ORDER BY pathname")
    assert [(r["hostname"], r["pathname"]) for r in rows] == [
        ("example.com", "/a"),
        ("example.com", "/b"),
    ]
    # privacy_policy: the daily visitor hash links them into one visit
    assert rows[0]["session_id"] == rows[1]["session_id"]


async def test_concurrent_deliveries_never_overspend_the_allowance(settings, db):
    account = await accounts.create_account(db, "Acme")
    small = await sites.create_site(
        db, account.id, name="Small", domains=["example.com"], tier=Tier.BANNER_FREE, allowance=25
    )
    server = LiveServer(create_app(settings))
    async with server, server.client() as client:
        bodies = [
            delivery_body([[event(small.id, session=f"{d}-{i}") for i in range(10)]])
            for d in range(6)
        ]
        answers = await asyncio.gather(*(deliver(client, b) for b in bodies))
    assert all(a.status_code == 200 for a in answers)
    assert await db.fetchval("SELECT count(*) FROM events") == 25
    assert await db.fetchval("SELECT allowance_remaining FROM sites WHERE id = $1", small.id) == 0
    assert await usage(db, small.id) == {"accepted": 25, "over_allowance": 35}
    # every stored event's session has its initial row
    assert (
        await db.fetchval(
            """SELECT count(*) FROM events e WHERE NOT EXISTS (
               SELECT 1 FROM initial_events i WHERE i.session_id = e.session_id)"""
        )
        == 0
    )


async def test_concurrent_overlapping_deliveries_store_and_count_each_event_once(settings, db):
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(
        db, account.id, name="x", domains=["example.com"], tier=Tier.PRIVACY_POLICY, allowance=100
    )
    sent = [event(site.id, f"https://example.com/{i}", session=f"tab-{i // 4}") for i in range(35)]
    # Six deliveries at once, each carrying ten events, five of them also in the next one.
    bodies = [delivery_body([sent[5 * d : 5 * d + 10]]) for d in range(6)]
    server = LiveServer(create_app(settings))
    async with server, server.client() as client:
        answers = await asyncio.gather(*(deliver(client, b) for b in bodies))
    assert [a.status_code for a in answers] == [200] * 6
    assert await db.fetchval("SELECT count(DISTINCT event_id) FROM events") == 35
    assert await db.fetchval("SELECT count(*) FROM events") == 35
    assert await db.fetchval("SELECT count(*) FROM initial_events") == 9
    assert await usage(db, site.id) == {"accepted": 35}
    assert await db.fetchval("SELECT allowance_remaining FROM sites WHERE id = $1", site.id) == 65
    assert await db.fetchval("SELECT sum(events) FROM visit_hours") == 35
    assert await db.fetchval("SELECT sum(events) FROM visitor_counters") == 35


async def test_archive_holds_what_postgres_holds(process, db, site, settings):
    from pathlib import Path

    from topup.archive_tables import open_tables

    batch = [event(site.id, session=f"s{i % 3}", props={"n": i}) for i in range(9)]
    assert (await deliver(process, delivery_body([batch]))).status_code == 200
    tables = open_tables(Path(settings.data_dir) / "archive")
    archived = tables["events"].scan().to_arrow().to_pylist()
    stored = await db.fetch("SELECT event_id, pathname, props FROM events")
    assert sorted(r["event_id"] for r in archived) == sorted(str(r["event_id"]) for r in stored)
    assert sorted(json.loads(r["props"])["n"] for r in archived) == list(range(9))
    initials = tables["initial_events"].scan().to_arrow().to_pylist()
    assert len(initials) == 3


async def test_a_flood_from_one_visitor_costs_the_site_at_most_the_limit(process, db, site):
    await db.execute("UPDATE sites SET visitor_hourly_limit = 40 WHERE id = $1", site.id)
    # One client (one address and browser), rotating its session ids: the daily hash holds it.
    flood = [event(site.id, f"https://example.com/{i}", session=f"fake-{i}") for i in range(300)]
    other = [event(site.id, session="real-visitor", ip="198.51.100.20") for _ in range(3)]
    for start in range(0, 300, 30):  # the second delivery reaches the limit within it
        assert (
            await deliver(process, delivery_body([flood[start : start + 30]]))
        ).status_code == 200
    assert (await deliver(process, delivery_body([other]))).status_code == 200
    assert await usage(db, site.id) == {"accepted": 43, "rate_limited": 260}
    counted = "SELECT sum(events) FROM visitor_counters WHERE site_id = $1"
    assert await db.fetchval(counted, site.id) == 43  # only what was kept
    assert (
        await db.fetchval("SELECT allowance_remaining FROM sites WHERE id = $1", site.id)
        == 1000 - 43
    )


async def test_events_an_overlapping_delivery_carries_again_count_nowhere(process, db, site):
    """Not toward their visitor's hourly limit either: the visitor below keeps to it."""
    await db.execute("UPDATE sites SET visitor_hourly_limit = 10 WHERE id = $1", site.id)
    sent = [event(site.id, f"https://example.com/{i}") for i in range(8)]
    more = [event(site.id, f"https://example.com/more/{i}") for i in range(2)]
    assert (await deliver(process, delivery_body([sent]))).status_code == 200
    assert (await deliver(process, delivery_body([sent + more]))).status_code == 200
    assert (await deliver(process, delivery_body([more]))).status_code == 200  # all stored
    assert await db.fetchval("SELECT count(*) FROM events WHERE site_id = $1", site.id) == 10
    assert await usage(db, site.id) == {"accepted": 10}
    remaining = await db.fetchval("SELECT allowance_remaining FROM sites WHERE id = $1", site.id)
    assert remaining == 1000 - 10


async def test_stored_events_carried_again_past_the_allowance_count_nowhere(database_url, db):
    """The allowance is spent, and a delivery carries stored events again with one new one:
    only the new one is `over_allowance`. (The steps' quick check reads the allowance as the
    process cached it, here as it was before the first delivery, so the exact grant refuses.)"""
    from process.deliveries import Processor, read_delivery
    from process.site_directory import SiteDirectory
    from process.visitors import Salts
    from topup.database import create_pool

    class Archive:
        async def write(self, events: list, initials: list) -> None:
            pass

    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.PRIVACY_POLICY, allowance=5)  # fmt: skip
    sent = [event(site.id, f"https://example.com/{i}") for i in range(5)]
    pool = await create_pool(database_url, max_size=1)
    try:
        processor = Processor(pool, Archive(), SiteDirectory(ttl_s=3600), Salts())
        for batch in ([sent], [[*sent, event(site.id, "https://example.com/new")]]):
            await processor.handle(read_delivery(json.dumps(delivery_body(batch)).encode(), None))
    finally:
        await pool.close()
    assert await db.fetchval("SELECT count(*) FROM events") == 5
    assert await usage(db, site.id) == {"accepted": 5, "over_allowance": 1}
    assert await db.fetchval("SELECT allowance_remaining FROM sites WHERE id = $1", site.id) == 0


async def test_without_a_hash_the_session_is_the_visitor(process, db):
    account = await accounts.create_account(db, "Acme")
    free = await sites.create_site(
        db, account.id, name="x", domains=["example.com"], tier=Tier.BANNER_FREE, allowance=1000
    )
    await db.execute("UPDATE sites SET visitor_hourly_limit = 5 WHERE id = $1", free.id)
    batch = [event(free.id, session="one-tab") for _ in range(8)] + [
        event(free.id, session=f"t{i}") for i in range(4)
    ]
    assert (await deliver(process, delivery_body([batch]))).status_code == 200
    assert await usage(db, free.id) == {"accepted": 9, "rate_limited": 3}
    counters = await db.fetch(
        "SELECT visitor, events FROM visitor_counters WHERE site_id = $1", free.id
    )
    assert sorted(r["events"] for r in counters) == [1, 1, 1, 1, 5]


async def test_events_stamped_far_in_the_past_or_future_are_invalid(process, db, site):
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    batch = [
        event(site.id),
        event(site.id, at=datetime(1970, 1, 1, tzinfo=UTC)),
        event(site.id, at=now + timedelta(days=3650)),
        event(site.id, at=now - timedelta(days=60)),
    ]
    assert (await deliver(process, delivery_body([batch]))).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM events") == 1
    nil = "00000000-0000-0000-0000-000000000000"
    assert await usage(db, nil) == {"invalid": 3}


async def test_visit_hours_equal_a_rebuild_from_the_stored_events(process, db, site):
    """The sessions' hourly summaries that process adds to as it writes are exactly what
    recomputing them from `events` gives, through redeliveries, overlaps, events arriving out
    of order and across hours, page views at the same instant, allowance running out, and
    sessions carried over midnight (flagged `continued` on the next day)."""
    from datetime import UTC, datetime, time, timedelta

    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    if base.hour == 0:  # session a stays within a UTC day (it would be two sessions)
        base -= timedelta(hours=1)
    at = [base - timedelta(minutes=5) + timedelta(minutes=3 * i) for i in range(6)]  # 2 hours
    a = [event(site.id, f"https://example.com/a{i}", session="a", at=t) for i, t in enumerate(at)]
    a.append(event(site.id, name="Signup", session="a", at=at[-1] + timedelta(seconds=1)))
    tie = [event(site.id, f"https://example.com/{p}", session="b", at=at[2]) for p in "xzy"]
    other = [event(site.id, session="c", ip="198.51.100.20", at=at[1])]
    late = a[3:]  # the later half of session a arrives first
    assert (await deliver(process, delivery_body([late + tie]))).status_code == 200
    body = delivery_body([a[:4] + other])  # overlaps `late` in a[3]
    for _ in range(2):  # and is redelivered
        assert (await deliver(process, body)).status_code == 200
    await db.execute("UPDATE sites SET allowance_remaining = 2 WHERE id = $1", site.id)
    extra = [event(site.id, f"https://example.com/d{i}", session="d", at=at[4]) for i in range(4)]
    assert (await deliver(process, delivery_body([extra]))).status_code == 200
    assert await usage(db, site.id) == {"accepted": 13, "over_allowance": 2}
    # Sessions carried over midnight: within one delivery, and across two.
    await db.execute("UPDATE sites SET allowance_remaining = 100 WHERE id = $1", site.id)
    midnight = datetime.combine(base.date() - timedelta(days=1), time(), UTC)
    around = [midnight - timedelta(minutes=5), midnight + timedelta(minutes=5)]
    m = [
        event(site.id, f"https://example.com/m{i}", session="m", at=t) for i, t in enumerate(around)
    ]
    n = [
        event(site.id, f"https://example.com/n{i}", session="n", at=t) for i, t in enumerate(around)
    ]
    for part in ([m[0]], [m[1]], n):
        assert (await deliver(process, delivery_body([part]))).status_code == 200

    query = """SELECT site_id, hour, session_id, visitor, pageviews, events, first_ts, last_ts,
                      exit_ts, exit_page, continued FROM visit_hours ORDER BY hour, session_id"""
    kept = [tuple(r) for r in await db.fetch(query)]
    carried = {r[9]: r[10] for r in kept if (r[9] or "")[:2] in ("/m", "/n")}
    assert carried == {"/m0": False, "/m1": True, "/n0": False, "/n1": True}
    by_exit = {r[9]: r for r in kept}
    assert by_exit["/z"][4:6] == (3, 3)  # the tie: the greater path at the same instant
    # session a: 2 page views before the hour, 4 page views and the custom event after it
    assert sorted(r[4:6] for r in kept if r[9] in ("/a1", "/a5")) == [(2, 2), (4, 5)]
    assert by_exit["/a5"][6:8] == (at[2], at[5] + timedelta(seconds=1))
    days = (base - timedelta(days=2)).date(), base.date()
    assert await db.fetchval("SELECT topup_rebuild_visit_hours($1, $2)", *days) == len(kept)
    assert [tuple(r) for r in await db.fetch(query)] == kept


async def test_a_tab_session_lasts_at_most_into_the_next_day(process, db, site):
    """A session's key names the UTC day it began: its tab's events continue it that day and
    the next, and a later event with the same tab id begins a new visit."""
    from datetime import UTC, datetime, time, timedelta

    day = datetime.combine(datetime.now(UTC).date() - timedelta(days=4), time(), UTC)
    at = [day + timedelta(hours=23, minutes=50), day + timedelta(days=1, minutes=10),
          day + timedelta(days=1, hours=23, minutes=55), day + timedelta(days=2, minutes=5),
          day + timedelta(days=2, minutes=20), day + timedelta(days=3, hours=12)]  # fmt: skip
    tab = [
        event(site.id, f"https://example.com/{i}", session="tab", at=t) for i, t in enumerate(at)
    ]
    for part in (tab[:2], tab[2:4], tab[4:]):  # within a delivery, and across deliveries
        assert (await deliver(process, delivery_body([part]))).status_code == 200
    initials = await db.fetch("SELECT session_id, entry_page FROM initial_events ORDER BY ts")
    assert [r["entry_page"] for r in initials] == ["/0", "/3"]
    sessions = [
        r["session_id"] for r in await db.fetch("SELECT session_id FROM events ORDER BY ts")
    ]
    first, second = (r["session_id"] for r in initials)
    assert first != second
    assert sessions == [first, first, first, second, second, second]


async def test_a_session_whose_first_event_is_rate_limited_begins_with_its_first_stored(
    process, db, site
):
    from datetime import UTC, datetime, timedelta

    await db.execute("UPDATE sites SET visitor_hourly_limit = 2 WHERE id = $1", site.id)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    batch = [
        event(site.id, "https://example.com/a1", session="a", at=hour + timedelta(minutes=50)),
        event(site.id, "https://example.com/a2", session="a", at=hour + timedelta(minutes=51)),
        event(site.id, "https://example.com/b1", session="b", at=hour + timedelta(minutes=52)),
        event(site.id, "https://example.com/b2", session="b", at=hour + timedelta(minutes=61)),
    ]  # the same device: b's first event is over the hour's limit, its second is in a new hour
    assert (await deliver(process, delivery_body([batch]))).status_code == 200
    assert await usage(db, site.id) == {"accepted": 3, "rate_limited": 1}
    initials = await db.fetch("SELECT session_id, entry_page FROM initial_events ORDER BY ts")
    assert [r["entry_page"] for r in initials] == ["/a1", "/b2"]
    stored = await db.fetch("SELECT session_id, pathname FROM events ORDER BY ts")
    assert {r["session_id"] for r in stored if r["pathname"] == "/b2"} == {
        initials[1]["session_id"]
    }


async def test_python_work_beside_a_running_statement_leaves_the_connection_usable(db):
    """The events' COPY runs while process works out the session rows (`_meanwhile`)."""
    assert await _meanwhile(db.execute("SELECT pg_sleep(0.05)"), lambda: 42) == 42

    def in_steps():  # work that lets the event loop run between its steps
        yield
        yield
        return 43

    assert await _meanwhile(db.execute("SELECT pg_sleep(0.05)"), in_steps()) == 43

    def fail() -> int:
        raise ValueError("a bug in the work")

    with pytest.raises(ValueError):
        await _meanwhile(db.execute("SELECT pg_sleep(0.05)"), fail)
    assert await db.fetchval("SELECT 1") == 1  # the statement was waited for
    with pytest.raises(asyncpg.DivisionByZeroError):
        await _meanwhile(db.execute("SELECT 1 / 0"), lambda: 1)
    assert await db.fetchval("SELECT 1") == 1


async def test_a_new_sessions_hour_already_stored_is_added_to_not_refused(process, db):
    """A new session's hours are copied in (no row can share a fresh session key); should one
    exist anyway, the delivery is written the careful way and adds to it."""
    from datetime import UTC, datetime

    from process.visitors import session_key

    account = await accounts.create_account(db, "Acme")
    free = await sites.create_site(
        db, account.id, name="x", domains=["example.com"], tier=Tier.BANNER_FREE, allowance=10
    )  # the session is the visitor
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    key = session_key(free.id, "tab-1", now.date())
    await db.execute("SELECT topup_create_partitions($1, $1)", now.date())
    await db.execute(
        """INSERT INTO visit_hours (site_id, hour, session_id, visitor, pageviews, events,
                                    first_ts, last_ts, exit_ts, exit_page, continued)
           VALUES ($1, $2, $3, $3, 1, 1, $2, $2, $2, '/earlier', false)""",
        free.id, hour, key,
    )  # fmt: skip
    body = delivery_body([[event(free.id, "https://example.com/now", session="tab-1", at=now)]])
    assert (await deliver(process, body)).status_code == 200
    row = await db.fetchrow(
        "SELECT pageviews, events, exit_page FROM visit_hours WHERE site_id = $1", free.id
    )
    assert dict(row) == {"pageviews": 2, "events": 2, "exit_page": "/now"}
    assert await usage(db, free.id) == {"accepted": 1}


async def test_sessions_are_looked_up_by_index_in_a_day_partition_not_analysed_yet(
    process, db, site
):
    """Postgres keeps a prepared statement's generic plan, made on its first runs: for process,
    often while the day's partition is small and not analysed yet. That plan must still find
    each session through the (site, session, ts) index, not read the site's whole day."""
    events = [event(site.id, f"https://example.com/{i}", session=f"tab-{i}") for i in range(40)]
    assert (await deliver(process, delivery_body([events]))).status_code == 200
    assert await db.fetchval("SELECT count(*) FROM initial_events") == 40
    sessions = await db.fetch("SELECT site_id, session_id, ts::date AS day FROM initial_events")
    await db.execute("SET plan_cache_mode = force_generic_plan")
    await db.execute(f"PREPARE look_up(uuid[], bigint[], date, int) AS {EXISTING_SESSIONS}")
    # EXECUTE with literals: parameters sent with it would get a plan made for their values.
    site_ids = "{" + ",".join(str(r["site_id"]) for r in sessions) + "}"
    session_ids = "{" + ",".join(str(r["session_id"]) for r in sessions) + "}"
    execute = f"EXECUTE look_up('{site_ids}', '{session_ids}', '{sessions[0]['day']}', 1)"
    plan = "\n".join(r[0] for r in await db.fetch(f"EXPLAIN {execute}"))
    assert "site_id_session_id_ts_idx" in plan, plan
    assert "Filter" not in plan, plan  # site, session and time are all conditions of the index
    assert len(await db.fetch(execute)) == 40
