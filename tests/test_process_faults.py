"""Faults: the database going away mid-stream, and the archive failing. Each ends with an exact
reconciliation: every accepted event stored once, nothing doubled, usage counted once. And what
the query API answers while the database is away."""

import asyncio
import json

import msgspec
import pytest

from process.app import create_app
from query.app import create_app as create_query_app
from tests.conftest import LiveServer
from tests.fixtures import deliver, delivery_body, event
from tests.test_firehose_sink import make_stream, objects_in
from topup import accounts, sites
from topup.database import connect, migrate
from topup.local.embedded_postgres import EmbeddedPostgres
from topup.settings import load_settings
from topup.tiers import Tier


async def test_database_stopped_mid_stream_then_retries_store_everything_once(tmp_path):
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        conn = await connect(server.url)
        await migrate(conn)
        account = await accounts.create_account(conn, "Acme")
        site = await sites.create_site(conn, account.id, name="x", domains=["example.com"],
                                       tier=Tier.PRIVACY_POLICY, allowance=1000)  # fmt: skip
        await conn.close()
        settings = load_settings({}, database_url=server.url, data_dir=str(tmp_path / "data"),
                                 firehose_access_key="test-access-key")  # fmt: skip
        bodies = [
            delivery_body([[event(site.id, session=f"d{d}-{i % 3}") for i in range(10)]])
            for d in range(4)
        ]
        app = LiveServer(create_app(settings))
        async with app, app.client() as client:
            assert (await deliver(client, bodies[0])).status_code == 200
            server.stop()
            failed = await deliver(client, bodies[1])
            assert failed.status_code == 503
            assert failed.json()["requestId"] == bodies[1]["requestId"]
            assert failed.json()["errorMessage"].startswith("transient failure")
            health = await client.get("/healthz")
            assert health.status_code == 503

            server = EmbeddedPostgres(tmp_path / "pg")  # started again, same data
            # Firehose retries what failed, and (at least once) what it already sent.
            for body in (bodies[1], bodies[0], bodies[2], bodies[1], bodies[3]):
                answer = await deliver(client, body)
                assert answer.status_code == 200, answer.text

        conn = await connect(server.url)
        assert await conn.fetchval("SELECT count(*) FROM events") == 40
        assert await conn.fetchval("SELECT count(DISTINCT event_id) FROM events") == 40
        assert await conn.fetchval("SELECT count(*) FROM initial_events") == 12
        assert (
            await conn.fetchval("SELECT sum(events) FROM usage_daily WHERE outcome = 'accepted'")
            == 40
        )
        assert await conn.fetchval("SELECT allowance_remaining FROM sites") == 960
        assert await conn.fetchval("SELECT count(*) FROM processed_deliveries") == 4
        await conn.close()
    finally:
        server.stop()


async def test_query_api_answers_503_while_the_database_is_down_and_recovers(tmp_path):
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        conn = await connect(server.url)
        await migrate(conn)
        account = await accounts.create_account(conn, "Acme")
        key = await accounts.create_api_key(conn, account.id, "t")
        await conn.close()
        settings = load_settings({}, database_url=server.url, data_dir=str(tmp_path / "data"))
        app = LiveServer(create_query_app(settings))
        headers = {"Authorization": f"Bearer {key.key}"}
        async with app, app.client() as client:
            assert (await client.get("/api/sites", headers=headers)).status_code == 200
            server.stop()
            down = await client.get("/api/sites", headers=headers)
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"] == "5"
            assert down.json()["error"] == "database unavailable; retry shortly"

            server = EmbeddedPostgres(tmp_path / "pg")
            back = await client.get("/api/sites", headers=headers)
            assert back.status_code == 200, back.text
            assert back.json() == []
    finally:
        server.stop()


async def test_archive_failure_is_retried_and_archives_once(settings, db, moto_server):
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.BANNER_FREE, allowance=1000)  # fmt: skip
    settings = msgspec.structs.replace(
        settings, archive="firehose", aws_endpoint_url=moto_server,
        archive_events_stream="archive-events-x", archive_initial_events_stream="archive-initial-x",
    )  # fmt: skip
    body = delivery_body([[event(site.id, session=f"s{i % 2}") for i in range(6)]])
    app = LiveServer(create_app(settings))
    async with app, app.client() as client:
        failed = await deliver(client, body)  # the archive streams do not exist yet
        assert failed.status_code == 503
        assert await db.fetchval("SELECT count(*) FROM events") == 6  # the database part is done
        await make_stream(moto_server, "archive-events-x", "archive-x")
        await make_stream(moto_server, "archive-initial-x", "archive-initial-x")
        retried = await deliver(client, body)
        assert retried.status_code == 200
        again = await deliver(client, body)  # a redelivery after success changes nothing
        assert again.status_code == 200

    assert await db.fetchval("SELECT count(*) FROM events") == 6
    assert await db.fetchval("SELECT events FROM usage_daily WHERE outcome = 'accepted'") == 6
    archived = b"".join(await objects_in(moto_server, "archive-x"))
    records = [json.loads(line) for line in archived.splitlines() if line.strip()]
    assert sorted(r["event_id"] for r in records) == sorted(
        str(r["event_id"]) for r in await db.fetch("SELECT event_id FROM events")
    )
    initial = b"".join(await objects_in(moto_server, "archive-initial-x"))
    assert len([line for line in initial.splitlines() if line.strip()]) == 2
    assert await db.fetchval("SELECT archived_at IS NOT NULL FROM processed_deliveries")


SERVE_PROCESS = """
import sys, uvicorn
from process.app import create_app
from query.app import create_app as create_query_app
from topup.settings import load_settings
app = create_app(load_settings({{}}, database_url=sys.argv[1], data_dir=sys.argv[2], firehose_access_key="test-access-key"))
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


def _start_process(port, database_url, data_dir):
    import subprocess
    import sys
    import time

    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE_PROCESS.format(port=port), database_url, str(data_dir)]
    )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("process did not start")


async def _in_its_transaction(db) -> None:
    """Until a delivery holds its site's lock: its transaction is open, its commit to come."""
    for _ in range(6000):
        if await db.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"):
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the delivery's transaction never began")


async def test_process_killed_mid_delivery_then_restarted_stores_everything_once(
    database_url, db, tmp_path
):
    import signal

    import httpx

    from tests.conftest import free_port

    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(
        db,
        account.id,
        name="x",
        domains=["example.com"],
        tier=Tier.PRIVACY_POLICY,
        allowance=100_000,
    )
    await db.execute("UPDATE sites SET visitor_hourly_limit = 100000")  # one test client
    big = delivery_body(
        [
            [event(site.id, session=f"k{i % 500}") for i in range(start, start + 50)]
            for start in range(0, 8000, 50)
        ]
    )
    small = delivery_body([[event(site.id, session="after")]])
    port = free_port()
    server = _start_process(port, database_url, tmp_path)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        attempt = asyncio.create_task(deliver(client, big))
        await _in_its_transaction(db)
        server.send_signal(signal.SIGKILL)  # mid-delivery: no answer, the transaction dies with it
        server.wait()
        with pytest.raises(httpx.HTTPError):
            await attempt
        assert await db.fetchval("SELECT count(*) FROM processed_deliveries") == 0
        server = _start_process(port, database_url, tmp_path)
        try:
            for body in (big, small, big):  # Firehose retries the failed one, maybe twice
                answer = await deliver(client, body)
                assert answer.status_code == 200, answer.text
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait()
    assert await db.fetchval("SELECT count(*) FROM events") == 8001
    assert await db.fetchval("SELECT count(DISTINCT event_id) FROM events") == 8001
    assert await db.fetchval("SELECT events FROM usage_daily WHERE outcome = 'accepted'") == 8001
    assert await db.fetchval("SELECT allowance_remaining FROM sites") == 100_000 - 8001


async def test_an_archive_slower_than_the_idle_session_timeout_fails_nothing(database_url, db):
    """The archive is written holding no database connection: one slower than the database lets
    a session sit idle (TOPUP_DATABASE_IDLE_SESSION_S; Aurora ends them so it may pause) must
    not fail the delivery, nor make Firehose send it again (and the archive get it twice)."""
    from process import geo, user_agents
    from process.deliveries import Processor, read_delivery
    from process.site_directory import SiteDirectory
    from process.visitors import Salts
    from topup.database import create_pool

    class SlowArchive:  # a stand-in for an archive that takes its time (Firehose, S3)
        def __init__(self) -> None:
            self.rows = 0

        async def write(self, events: list, initials: list) -> None:
            await asyncio.sleep(1.2)
            self.rows += len(events)

    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.PRIVACY_POLICY, allowance=100)  # fmt: skip
    body = delivery_body([[event(site.id), event(site.id, "https://example.com/b")]])
    archive = SlowArchive()
    user_agents.warm_up()  # as start-up does: the steps must not keep the session idle either
    geo.warm_up()
    pool = await create_pool(database_url, max_size=1, idle_session_s=0.5)
    try:
        processor = Processor(pool, archive, SiteDirectory(), Salts())  # type: ignore[arg-type]
        result = await processor.handle(read_delivery(json.dumps(body).encode(), None))
    finally:
        await pool.close()
    assert (result.accepted, result.redelivered, archive.rows) == (2, False, 2)
    archived = await db.fetchval(
        "SELECT archived_at FROM processed_deliveries WHERE request_id = $1", body["requestId"]
    )
    assert archived is not None
