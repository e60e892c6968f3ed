"""Generated requests from each service's own OpenAPI document (schemathesis), over real HTTP to
the running apps: never a 5xx, and every documented response matches its schema. A bounded
number of generated cases per operation (issue: reliability)."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from ingest.app import create_app as ingest_app
from process.app import create_app as process_app
from query.app import create_app as query_app
from tests.conftest import MemorySink, ThreadedServer, run_in_thread
from topup import accounts, sites
from topup.database import connect
from topup.settings import load_settings
from topup.tiers import Tier

CHECKS = [not_a_server_error, response_schema_conformance]
BOUNDED = settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def ingest_schema():
    with ThreadedServer(
        ingest_app(load_settings({}, sink="firehose"), sink=MemorySink())
    ) as server:
        yield schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")


@pytest.fixture(scope="module")
def query_env(postgres_server_url, template_database, tmp_path_factory):
    from tests.conftest import database_url_for

    async def prepare():
        admin = await connect(postgres_server_url)
        await admin.execute("DROP DATABASE IF EXISTS fuzz_query WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE fuzz_query TEMPLATE {template_database}")
        await admin.close()
        url = database_url_for(postgres_server_url, "fuzz_query")
        conn = await connect(url)
        owner = await accounts.create_account(conn, "Fuzz", is_operator=True)
        await sites.create_site(
            conn, owner.id, name="x", domains=["example.com"], tier=Tier.FULL, allowance=5
        )
        key = (await accounts.create_api_key(conn, owner.id, "fuzz")).key
        await conn.close()
        return url, key

    url, key = run_in_thread(prepare())
    settings_ = load_settings(
        {},
        database_url=url,
        data_dir=str(tmp_path_factory.mktemp("fuzz")),
        firehose_access_key="fuzz-key",
    )
    return settings_, key


@pytest.fixture(scope="module")
def query_schema(query_env):
    settings_, key = query_env
    with ThreadedServer(query_app(settings_)) as server:
        schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
        yield schema, {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def process_schema(query_env):
    settings_, _ = query_env
    with ThreadedServer(process_app(settings_)) as server:
        yield schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")


def fuzz(schema, minimum_operations, **call):
    """Every operation of `schema`, a bounded number of generated cases each."""
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= minimum_operations
    for operation in operations:

        @BOUNDED
        @given(case=operation.as_strategy())
        def run(case):
            case.call_and_validate(checks=CHECKS, **call)

        run()
    return len(operations)


def test_ingest(ingest_schema):
    fuzz(ingest_schema, 1)


def test_process(process_schema):
    # With the right access key (deliveries get processed) and without (refused): never a 5xx.
    fuzz(process_schema, 1, headers={"X-Amz-Firehose-Access-Key": "fuzz-key"})
    fuzz(process_schema, 1)


def test_query(query_schema):
    schema, headers = query_schema
    fuzz(schema, 10, headers=headers)
