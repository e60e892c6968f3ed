"""Test harness: a real PostgreSQL, a fresh migrated database per test, real HTTP to the apps,
and moto's server for AWS APIs.

PostgreSQL is embedded (the pgserver wheel) unless TOPUP_DATABASE_URL names a server, in which
case the role needs CREATEDB. Each test gets its own database cloned from a migrated template,
so tests never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import uvicorn

from topup.database import connect, migrate
from topup.settings import Settings, load_settings

TEMPLATE_DB = "topup_template"


def database_url_for(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The PostgreSQL server all tests use: TOPUP_DATABASE_URL, or an embedded one."""
    configured = os.environ.get("TOPUP_DATABASE_URL")
    if configured:
        yield configured
        return
    import shutil
    import tempfile

    from topup.local.embedded_postgres import embedded_postgres

    # Outside pytest's own temporary root: a second pytest run resets that root to mode 0700,
    # which would lock the server (running as its own user) out of its data directory.
    root = Path(tempfile.mkdtemp(prefix="topup-test-pg-"))
    try:
        with embedded_postgres(root / "data") as server:
            yield server.url
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_database(postgres_server_url: str) -> str:
    """A database migrated once per session; each test clones it."""
    admin = await connect(postgres_server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    finally:
        await admin.close()
    conn = await connect(database_url_for(postgres_server_url, TEMPLATE_DB))
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return TEMPLATE_DB


@pytest.fixture
async def database_url(postgres_server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await connect(postgres_server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    finally:
        await admin.close()
    yield database_url_for(postgres_server_url, name)
    admin = await connect(postgres_server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[object]:
    """A connection to this test's database."""
    conn = await connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return load_settings(
        {},
        database_url=database_url,
        data_dir=str(tmp_path / "data"),
        firehose_access_key="test-access-key",
        # Nothing listens on the discard port: the local firehose keeps its batches spooled.
        process_url="http://127.0.0.1:9/firehose",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def loopback_server(app: Any, port: int) -> uvicorn.Server:
    """uvicorn on 127.0.0.1 without its own signal handling or proxy-header rewriting (ingest
    reads X-Forwarded-For itself, by its own trust rules)."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", proxy_headers=False
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    return server


class LiveServer:
    """An ASGI app served by uvicorn on a loopback port, in the test's event loop."""

    def __init__(self, app: object) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = loopback_server(app, self.port)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveServer:
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise RuntimeError("server stopped during start-up")
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self._task is not None
        await self._task

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """moto's server on a loopback port: the AWS endpoint for every AWS client in tests."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


class ThreadedServer:
    """An ASGI app served by uvicorn in a thread with its own event loop, for sync tests
    (hypothesis, browsers) that cannot share the test's loop."""

    def __init__(self, app: object) -> None:
        import threading

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = loopback_server(app, self.port)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        import time

        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=30)


class MemorySink:
    """A buffer that keeps records in memory: the collaborator ingest writes to, so tests can
    read exactly what would have gone to Firehose."""

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.available = True

    async def start(self) -> None:
        pass

    async def put(self, record: bytes) -> None:
        from topup.buffer import SinkUnavailableError

        if not self.available:
            raise SinkUnavailableError("buffer unavailable (test)")
        self.records.append(record)

    async def close(self) -> None:
        pass


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's headless Chromium driven by Playwright (installed with apt-get when missing;
    Playwright's own browser download is never used). Module-scoped: Playwright's sync API
    keeps an event loop running in this thread, which async tests in other modules need."""
    import shutil
    import subprocess

    if not Path(CHROMIUM).exists():
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.fail("Chromium is missing: install Debian's `chromium` package")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def run_in_thread(coroutine: Any) -> Any:
    """Run async set-up in a thread with its own loop (beside Playwright's or a server's)."""
    import threading

    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = asyncio.run(coroutine)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
