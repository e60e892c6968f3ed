"""Ingest benchmarks: the event API against a minimal Litestar app doing the same decode, the
Lambda invocation cost, and the handler's import time (a cold-start proxy).

Requests are driven in-process through ASGI so the figure is the app's own cost per request on
one worker, not the load generator's or the socket's (both apps pay those equally).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, post
from litestar.response import Response

from ingest.app import create_app
from ingest.body import Envelope
from topup.lambda_adapter import LambdaHandler
from topup.settings import load_settings

BODY = json.dumps(
    {
        "n": "pageview",
        "u": "https://example.com/blog/how-we-cut-costs?utm_source=newsletter&utm_medium=email",
        "s": "0191f2c4-8a5e-7b7c-9f00-0a1b2c3d4e5f",
        "r": "https://www.google.com/",
        "sid": "k3j4h5l6m7n8",
        "sw": 1440,
        "sh": 900,
    }
).encode()
HEADERS = [
    (b"content-type", b"text/plain;charset=UTF-8"),
    (b"user-agent", b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36"),
    (b"origin", b"https://example.com"),
]
EVENT_FILE = (
    Path(__file__).parent.parent / "tests" / "lambda_events" / "function_url_post_event.json"
)


class NullSink:
    """Takes records and forgets them: the benchmark measures ingest, not the buffer."""

    async def start(self) -> None:
        pass

    async def put(self, record: bytes) -> None:
        pass

    async def close(self) -> None:
        pass


def minimal_app() -> Litestar:
    """The baseline: the smallest Litestar app that decodes the same body with msgspec."""
    decoder = msgspec.json.Decoder(Envelope)

    @post("/api/event", status_code=202)
    async def accept(request: Request[Any, Any, Any]) -> Response[dict[str, int]]:
        decoder.decode(await request.body())
        return Response({"accepted": 1}, status_code=202)

    return Litestar([accept], logging_config=None)


async def _requests_per_second(app: Any, count: int) -> float:
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/event", "raw_path": b"/api/event", "root_path": "",
        "query_string": b"", "headers": HEADERS, "client": ("198.51.100.7", 50000),
        "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async with app.lifespan():
        for _ in range(min(count // 10, 2000)):  # warm-up
            await app(dict(scope), receive, send)
        statuses.clear()
        started = time.perf_counter()
        for _ in range(count):
            await app(dict(scope), receive, send)
        elapsed = time.perf_counter() - started
    assert set(statuses) == {202}, set(statuses)
    return count / elapsed


def lambda_invocation_us(count: int) -> float:
    event = json.loads(EVENT_FILE.read_text())
    handler = LambdaHandler(create_app(load_settings({}, sink="firehose"), sink=NullSink()))
    for _ in range(min(count // 10, 1000)):
        assert handler(event, None)["statusCode"] == 202
    started = time.perf_counter()
    for _ in range(count):
        handler(event, None)
    elapsed = time.perf_counter() - started
    handler.shutdown()
    return elapsed / count * 1e6


def import_seconds(module: str, env: dict[str, str]) -> float:
    """Median of 5 fresh interpreters importing `module` (what a cold Lambda pays)."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")} | env
    runs = sorted(
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=clean, check=True).stdout)
        for _ in range(5)
    )  # fmt: skip
    return runs[2]


def run(full: bool) -> dict[str, Any]:
    count = 50_000 if full else 10_000
    settings = load_settings({}, sink="firehose")
    ours = asyncio.run(_requests_per_second(create_app(settings, sink=NullSink()), count))
    baseline = asyncio.run(_requests_per_second(minimal_app(), count))
    return {
        "requests": count,
        "ingest_req_per_s": round(ours),
        "minimal_litestar_req_per_s": round(baseline),
        "ratio_to_minimal": round(ours / baseline, 3),
        "lambda_invocation_us": round(lambda_invocation_us(count // 5), 1),
        "import_ingest_handler_s": round(
            import_seconds("ingest.handler", {"TOPUP_SINK": "firehose"}), 3
        ),
    }
