"""Each service's Lambda entry point, invoked with real Function URL payloads in a fresh process
(as in a Lambda container: module import, then invocations on one event loop)."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_firehose_sink import make_stream, objects_in
from topup.heap import YOUNG_COLLECTION_EVERY

EVENTS = Path(__file__).parent / "lambda_events"

INVOKE = """
import gc, json, sys, time
from {module} import handler
frozen_at_import = gc.get_freeze_count()
answers = []
for line in sys.stdin:
    answers.append(handler(json.loads(line), None))
    time.sleep({pause_s})  # the container frozen between invocations: its event loop stands still
handler.shutdown()
heap = {{"frozen_at_import": frozen_at_import, "frozen": gc.get_freeze_count(),
        "young_threshold": gc.get_threshold()[0]}}
print(json.dumps({{"answers": answers, "lifespans": handler.started, "heap": heap}}))
"""


def invoke(module: str, events: list[dict], env: dict[str, str], pause_s: float = 0) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
    result = subprocess.run(
        [sys.executable, "-c", INVOKE.format(module=module, pause_s=pause_s)],
        input="\n".join(json.dumps(e) for e in events),
        capture_output=True,
        text=True,
        env=clean | env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Task exception was never retrieved" not in result.stderr + result.stdout, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def function_url_event(**changes) -> dict:
    event = json.loads((EVENTS / "function_url_post_event.json").read_text())
    event.update(changes)
    return event


def firehose_delivery(body: dict, access_key: str = "lambda-key") -> dict:
    """A Firehose HTTP-endpoint delivery to process's function URL."""
    headers = {
        "content-type": "application/json",
        "x-amz-firehose-protocol-version": "1.0",
        "x-amz-firehose-request-id": body["requestId"],
        "x-amz-firehose-access-key": access_key,
    }
    sent = function_url_event(rawPath="/firehose", body=json.dumps(body), headers=headers)
    sent["requestContext"]["http"] |= {"path": "/firehose"}
    return sent


def process_env(database_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "TOPUP_DATABASE_URL": database_url,
        "TOPUP_FIREHOSE_ACCESS_KEY": "lambda-key",
        "TOPUP_DATA_DIR": str(data_dir),
    }


async def test_ingest_handler_answers_like_the_http_app_and_starts_once(moto_server):
    await make_stream(moto_server, "lambda-ingest", "lambda-archive")
    env = {
        "TOPUP_SINK": "firehose",
        "TOPUP_FIREHOSE_STREAM": "lambda-ingest",
        "TOPUP_AWS_ENDPOINT_URL": moto_server,
        "TOPUP_TRUST_CLOUDFRONT_HEADERS": "true",
    }
    good = function_url_event()
    encoded = function_url_event(
        body=base64.b64encode(good["body"].encode()).decode(), isBase64Encoded=True
    )
    bad = function_url_event(body='{"n": "pageview"}')
    script = function_url_event(
        rawPath="/js/script.js",
        body=None,
        requestContext=good["requestContext"]
        | {"http": good["requestContext"]["http"] | {"method": "GET", "path": "/js/script.js"}},
    )
    result = invoke("ingest.handler", [good, encoded, bad, script], env)
    first, second, third, fourth = result["answers"]
    assert first["statusCode"] == 202 and json.loads(first["body"]) == {"accepted": 1}
    assert second["statusCode"] == 202
    assert third["statusCode"] == 400 and "missing page URL" in json.loads(third["body"])["error"]
    assert fourth["statusCode"] == 200 and fourth["headers"]["content-type"].startswith(
        "application/javascript"
    )
    assert result["lifespans"] == 1  # start-up ran once for four invocations
    stored = b"".join(await objects_in(moto_server, "lambda-archive"))
    assert stored.count(b'"url":"https://example.com/pricing"') == 2


async def test_process_handler_takes_a_firehose_delivery_through_a_function_url(
    database_url, db, tmp_path
):
    from tests.fixtures import delivery_body, event
    from topup import accounts, sites
    from topup.tiers import Tier

    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.PRIVACY_POLICY, allowance=10)  # fmt: skip
    body = delivery_body([[event(site.id), event(site.id, "https://example.com/b")]])
    delivery = firehose_delivery(body)
    wrong_key = firehose_delivery(body, access_key="nope")
    env = process_env(database_url, tmp_path)
    result = invoke("process.handler", [delivery, wrong_key, delivery], env)
    first, refused, again = result["answers"]
    assert (
        first["statusCode"] == 200 and json.loads(first["body"])["requestId"] == body["requestId"]
    )
    assert refused["statusCode"] == 401
    assert again["statusCode"] == 200
    assert result["lifespans"] == 1
    assert await db.fetchval("SELECT count(*) FROM events") == 2
    # What start-up made (parser patterns, GeoIP tables, the pool) is frozen once it is done,
    # out of the collector's sight (topup/heap.py): not at import, but after the first start.
    heap_state = result["heap"]
    assert heap_state["frozen_at_import"] == 0
    assert heap_state["frozen"] > 100_000, heap_state
    assert heap_state["young_threshold"] == YOUNG_COLLECTION_EVERY


async def test_process_handler_outlives_the_database_ending_its_idle_session(
    database_url, db, tmp_path
):
    """A frozen container cannot see the server end its idle session (Aurora, so that it may
    pause); the next delivery after the pause must not fail on the dead connection."""
    from tests.fixtures import delivery_body, event
    from topup import accounts, sites
    from topup.tiers import Tier

    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.BANNER_FREE, allowance=10)  # fmt: skip

    def delivery(page: str) -> dict:
        return firehose_delivery(delivery_body([[event(site.id, f"https://example.com/{page}")]]))

    env = process_env(database_url, tmp_path) | {"TOPUP_DATABASE_IDLE_SESSION_S": "0.5"}
    result = invoke("process.handler", [delivery("a"), delivery("b")], env, pause_s=1.5)
    assert [a["statusCode"] for a in result["answers"]] == [200, 200], result["answers"]
    assert await db.fetchval("SELECT count(*) FROM events") == 2


SLOW_START = """
import os, time
from contextlib import asynccontextmanager
from litestar import Litestar, Request, post
from topup.database import create_pool
from topup.lambda_adapter import LambdaHandler


@asynccontextmanager
async def lifespan(app):
    app.state.pool = await create_pool(os.environ["TOPUP_DATABASE_URL"], idle_session_s=0.5)
    # Start-up goes on after the pool's first connection with work that holds the event loop
    # (as settling the heap does), so nothing notices the server ending the idle session.
    time.sleep(0.8)
    yield
    await app.state.pool.close()


@post("/", status_code=200)
async def one(request: Request) -> int:
    return await request.app.state.pool.fetchval("SELECT 1")


handler = LambdaHandler(Litestar([one], lifespan=[lifespan]), idle_session_s=0.5)
"""


async def test_a_start_up_slower_than_the_idle_session_timeout_renews_its_connections(
    database_url, tmp_path
):
    """Start-up may go on after the pool makes its first connection; if that outlasts the
    server's idle-session timeout, the first request must get a live connection, not the one
    the server ended."""
    (tmp_path / "slow_start.py").write_text(SLOW_START)
    request = function_url_event(rawPath="/")
    request["requestContext"]["http"] |= {"path": "/"}
    env = {"TOPUP_DATABASE_URL": database_url, "PYTHONPATH": str(tmp_path)}
    result = invoke("slow_start", [request, request], env)
    assert [a["statusCode"] for a in result["answers"]] == [200, 200], result["answers"]
    assert [a["body"] for a in result["answers"]] == ["1", "1"]
