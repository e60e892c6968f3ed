"""Faults: the database going away mid-stream, and the archive failing. Each ends with an exact
reconciliation: every accepted event stored once, nothing doubled, usage counted once."""

import json

import msgspec

from process.app import create_app
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
