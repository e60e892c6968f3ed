"""The archive written by process itself into the Glue Iceberg tables (`TOPUP_ARCHIVE=glue`,
the cheapest deployment's), against moto's server: Glue for the catalog, S3 for the files."""

import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import msgspec

from process.app import create_app
from process.archive import GlueArchive, glue_catalog
from process.rows import EventRow
from tests.conftest import LiveServer
from tests.fixtures import deliver, delivery_body, event
from topup import accounts, archive_tables, sites
from topup.tiers import Tier


def make_tables(endpoint: str, database: str) -> None:
    """The database and the two tables, as the stack makes them (infra/topup_infra/archive.py):
    the archive's schema and partition spec, under the bucket's warehouse prefix."""
    bucket = f"archive-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    catalog = glue_catalog("us-east-1", endpoint)
    catalog.create_namespace(database)
    for table, schema in archive_tables.SCHEMAS.items():
        catalog.create_table(f"{database}.{table}", schema,
                             partition_spec=archive_tables.partition_spec(schema),
                             location=f"s3://{bucket}/warehouse/{table}")  # fmt: skip


def archived(endpoint: str, database: str, table: str) -> list[dict[str, Any]]:
    scan = glue_catalog("us-east-1", endpoint).load_table(f"{database}.{table}").scan()
    return scan.to_arrow().to_pylist()


def glue_settings(settings: Any, endpoint: str, database: str) -> Any:
    return msgspec.structs.replace(
        settings, archive="glue", athena_database=database, aws_endpoint_url=endpoint
    )


async def test_a_delivery_is_archived_in_the_glue_tables(settings, db, moto_server):
    database = f"topup_{uuid.uuid4().hex[:8]}"
    make_tables(moto_server, database)
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.PRIVACY_POLICY, allowance=1000)  # fmt: skip
    body = delivery_body([[event(site.id, f"https://example.com/p{i}", session=f"s{i % 3}")
                           for i in range(9)]])  # fmt: skip
    app = LiveServer(create_app(glue_settings(settings, moto_server, database)))
    async with app, app.client() as client:
        assert (await deliver(client, body)).status_code == 200

    stored = await db.fetch("SELECT event_id, pathname, visitor_id FROM events")
    rows = archived(moto_server, database, "events")
    assert sorted((r["event_id"], r["pathname"], r["visitor_id"]) for r in rows) == sorted(
        (str(r["event_id"]), r["pathname"], r["visitor_id"]) for r in stored
    )
    initials = archived(moto_server, database, "initial_events")
    assert sorted(r["event_id"] for r in initials) == sorted(
        str(r["event_id"]) for r in await db.fetch("SELECT event_id FROM initial_events")
    )
    assert len(initials) == 3
    assert await db.fetchval("SELECT archived_at IS NOT NULL FROM processed_deliveries")


async def test_missing_glue_tables_answer_503_and_the_retry_archives_once(
    settings, db, moto_server
):
    database = f"topup_{uuid.uuid4().hex[:8]}"
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.BANNER_FREE, allowance=1000)  # fmt: skip
    body = delivery_body([[event(site.id, session=f"s{i % 2}") for i in range(6)]])
    app = LiveServer(create_app(glue_settings(settings, moto_server, database)))
    async with app, app.client() as client:
        failed = await deliver(client, body)  # the tables do not exist yet
        assert failed.status_code == 503
        assert failed.json()["errorMessage"] == "transient failure: ArchiveUnavailableError"
        assert await db.fetchval("SELECT count(*) FROM events") == 6  # the database part is done
        make_tables(moto_server, database)
        assert (await deliver(client, body)).status_code == 200
        assert (await deliver(client, body)).status_code == 200  # after success: nothing

    assert await db.fetchval("SELECT events FROM usage_daily WHERE outcome = 'accepted'") == 6
    rows = archived(moto_server, database, "events")
    assert sorted(r["event_id"] for r in rows) == sorted(
        str(r["event_id"]) for r in await db.fetch("SELECT event_id FROM events")
    )
    assert len(archived(moto_server, database, "initial_events")) == 2


def _events(n: int) -> list[EventRow]:
    site, now = uuid.uuid4(), datetime.now(UTC)
    return [EventRow(uuid.uuid4(), site, now, i, None, "pageview", "example.com", "/", None)
            for i in range(n)]  # fmt: skip


async def test_two_writers_both_commit_when_one_commits_first(moto_server):
    """Two process functions append to the same tables: the one whose view of a table is stale
    fails the commit's check, and pyiceberg reads the table again and appends on top."""
    database = f"topup_{uuid.uuid4().hex[:8]}"
    make_tables(moto_server, database)
    first, second = (GlueArchive(database, region="us-east-1", endpoint_url=moto_server)
                     for _ in range(2))  # fmt: skip
    for archive in (first, second):
        await archive.start()
        await archive.write([], [])  # each loads the tables as they are now: empty
    a, b = _events(3), _events(4)
    await first.write(a, [])
    await second.write(b, [])  # its view of `events` predates the first's append
    rows = archived(moto_server, database, "events")
    assert sorted(r["event_id"] for r in rows) == sorted(str(e.event_id) for e in a + b)
