"""Lambda entry points for the deploy-time migration and the scheduled maintenance (AWS).

`migrate_handler` is the on-event handler of a CloudFormation custom resource (through the CDK
Provider framework): it applies the schema on Create and Update, and leaves the data on Delete.
`maintain_handler` runs `topup maintain` on an EventBridge schedule.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import msgspec

from topup.aws_secrets import resolve_secrets
from topup.database import connect, migrate
from topup.maintenance import maintain
from topup.settings import Settings, load_settings

SCHEMA_RESOURCE_ID = "topup-schema"


async def _connect() -> tuple[asyncpg.Connection, Settings]:
    """The task's one connection (settings from the environment and the secrets) and settings."""
    settings = await resolve_secrets(load_settings())
    assert settings.database_url is not None, "TOPUP_DATABASE_URL or TOPUP_DATABASE_SECRET_ARN"
    conn = await connect(
        settings.database_url, connect_timeout_s=settings.database_connect_timeout_s
    )
    return conn, settings


async def _migrate() -> list[str]:
    conn, _ = await _connect()
    try:
        return [f"{m.version:04d}_{m.name}" for m in await migrate(conn)]
    finally:
        await conn.close()


async def _maintain() -> dict[str, Any]:
    conn, settings = await _connect()
    try:
        report = await maintain(conn, retention_days=settings.retention_days)
    finally:
        await conn.close()
    result: dict[str, Any] = msgspec.to_builtins(report)
    return result


def migrate_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    applied: list[str] = []
    if event.get("RequestType") in ("Create", "Update"):
        applied = asyncio.run(_migrate())
    return {"PhysicalResourceId": SCHEMA_RESOURCE_ID, "Data": {"Applied": ",".join(applied)}}


def maintain_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return asyncio.run(_maintain())
