"""`topup dev`: the whole pipeline on a laptop, on embedded defaults."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import msgspec

from topup import accounts, heap, sites
from topup.database import connect, migrate
from topup.local.demo import create_demo_app
from topup.local.embedded_postgres import database
from topup.local.router import LocalRouter
from topup.maintenance import local_archive, maintain
from topup.settings import Settings
from topup.snippet import tracker_snippet

log = logging.getLogger(__name__)

DEMO_ACCOUNT = "Demo account"
DEMO_SITE = "Demo site"
DEMO_DOMAINS = ["localhost", "127.0.0.1"]


class DevInfo(msgspec.Struct, frozen=True):
    """What `topup dev` prints, and writes to `<data-dir>/dev.json` for scripts and tests."""

    url: str
    site_id: uuid.UUID
    api_key: str
    snippet: str
    account_id: uuid.UUID
    database_url: str = ""


def dev_settings(settings: Settings, port: int) -> Settings:
    """Point the local firehose at this router, with an access key kept in the data folder."""
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    key = settings.firehose_access_key
    if key is None:
        key_file = data_dir / "firehose-access-key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(32))
            key_file.chmod(0o600)
        key = key_file.read_text().strip()
    return msgspec.structs.replace(
        settings,
        firehose_access_key=key,
        process_url=settings.process_url or f"http://127.0.0.1:{port}/firehose",
    )


async def prepare(settings: Settings, url: str) -> DevInfo:
    """Migrate, run maintenance once, and make sure the demo account, site and key exist."""
    assert settings.database_url is not None
    previous = _read_dev_json(Path(settings.data_dir))
    conn = await connect(settings.database_url)
    try:
        await migrate(conn)
        await maintain(conn, retention_days=settings.retention_days)
        account = await _demo_account(conn, previous)
        site = await _demo_site(conn, account.id, settings)
        api_key = await _demo_key(conn, account.id, previous)
    finally:
        await conn.close()
    return DevInfo(
        url=url,
        site_id=site.id,
        api_key=api_key,
        snippet=tracker_snippet(url, site),
        account_id=account.id,
        database_url=settings.database_url,
    )


def _read_dev_json(data_dir: Path) -> DevInfo | None:
    try:
        return msgspec.json.decode((data_dir / "dev.json").read_bytes(), type=DevInfo)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def write_dev_json(data_dir: Path, info: DevInfo) -> Path:
    path = data_dir / "dev.json"
    path.write_bytes(msgspec.json.format(msgspec.json.encode(info)) + b"\n")
    path.chmod(0o600)
    return path


async def _demo_account(conn: asyncpg.Connection, previous: DevInfo | None) -> accounts.Account:
    if previous is not None:
        with contextlib.suppress(accounts.NotFoundError):
            return await accounts.get_account(conn, previous.account_id)
    for account in await accounts.list_accounts(conn):
        if account.name == DEMO_ACCOUNT:
            return account
    return await accounts.create_account(conn, DEMO_ACCOUNT, is_operator=True)


async def _demo_site(
    conn: asyncpg.Connection, account_id: uuid.UUID, settings: Settings
) -> sites.Site:
    for site in await sites.list_sites(conn, account_id):
        if site.name == DEMO_SITE:
            return site
    return await sites.create_site(
        conn,
        account_id,
        name=DEMO_SITE,
        domains=DEMO_DOMAINS,
        tier=settings.default_tier,
        allowance=settings.default_allowance,
    )


async def _demo_key(
    conn: asyncpg.Connection, account_id: uuid.UUID, previous: DevInfo | None
) -> str:
    """Reuse the key from the last run while it still works: only its hash is in the database."""
    if previous is not None:
        owner = await accounts.account_for_key(conn, previous.api_key)
        if owner is not None and owner.id == account_id:
            return previous.api_key
    return (await accounts.create_api_key(conn, account_id, "topup dev")).key


def banner(info: DevInfo, dev_json: Path) -> str:
    return "\n".join(
        [
            "",
            "TopUp Analytics is running.",
            f"  Dashboard:  {info.url}/   (sign in with the API key below)",
            f"  Demo site:  {info.url}/demo/   (click around, then watch the dashboard)",
            f"  Site id:    {info.site_id}",
            f"  API key:    {info.api_key}",
            "  Tracker snippet (paste into your pages' <head>):",
            f"    {info.snippet}",
            f"  The same as JSON: {dev_json}",
            "  Ctrl-C stops everything, database included.",
            "",
        ]
    )


def build_router(settings: Settings, demo: DevInfo | None = None) -> LocalRouter:
    """The one place that knows all three services (and, with `demo`, the demo site)."""
    from ingest.app import create_app as ingest_app
    from process.app import create_app as process_app
    from query.app import create_app as query_app

    return LocalRouter(
        ingest_app(settings),
        process_app(settings),
        query_app(settings),
        background=lambda: maintenance_loop(settings),
        demo=None if demo is None else create_demo_app(demo.site_id, demo.url),
    )


MAINTENANCE_INTERVAL_S = 3600.0


@contextlib.asynccontextmanager
async def maintenance_loop(settings: Settings) -> AsyncIterator[None]:
    """`topup maintain` every hour while `topup dev` runs (AWS runs it on a schedule)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)
            try:
                conn = await connect(settings.database_url or "")
                try:
                    report = await maintain(
                        conn,
                        retention_days=settings.retention_days,
                        archive=local_archive(settings),
                    )
                finally:
                    await conn.close()
                log.info("maintenance: %s", report)
            except Exception as exc:  # keep the loop alive; the next hour tries again
                log.warning("maintenance failed: %s", exc)

    task = asyncio.create_task(loop(), name="topup-maintenance")
    try:
        yield
    finally:
        task.cancel()


def run(settings: Settings, *, host: str, port: int, echo: Callable[[str], None] = print) -> None:
    """Serve until Ctrl-C or SIGTERM; the embedded database stops with it."""
    settings = dev_settings(settings, port)
    url = f"http://{host}:{port}"
    with database(settings) as settings:
        info = asyncio.run(prepare(settings, url))
        dev_json = write_dev_json(Path(settings.data_dir), info)
        asyncio.run(
            _serve(build_router(settings, info), host, port, lambda: echo(banner(info, dev_json)))
        )


async def _serve(app: LocalRouter, host: str, port: int, on_ready: Callable[[], None]) -> None:
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="on", proxy_headers=False
        )
    )
    serving = asyncio.create_task(server.serve())
    # uvicorn exposes readiness only as a flag, so poll it.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    if server.started:
        heap.settle()
        on_ready()
    await serving
    if not server.started:
        raise SystemExit(f"topup dev: could not serve on {host}:{port} (is the port in use?)")
