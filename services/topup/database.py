"""The one database access module: pools, connections and schema migrations."""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from topup.settings import redact_url

log = logging.getLogger(__name__)

# Any constant shared by every migrating process: `pg_advisory_lock` serialises them.
MIGRATION_LOCK_ID = 0x70707570  # "topup" in spirit
CONNECT_TIMEOUT_S = 10.0  # the default; TOPUP_DATABASE_CONNECT_TIMEOUT_S sets it


class DatabaseUnavailableError(RuntimeError):
    """The database at the configured URL cannot be reached or refused us."""


# What a request meets while the server is down or restarting: worth a retry, not a 500.
CONNECTION_FAULTS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    DatabaseUnavailableError,
)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


# timestamptz on the wire: microseconds since Postgres's epoch.
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _encode_instant(instant: datetime) -> tuple[int]:
    # An aware datetime only: a naive one raises TypeError here rather than being read as
    # local time.
    return ((instant - _PG_EPOCH) // _MICROSECOND,)


def _decode_instant(wire: tuple[int]) -> datetime:
    return _PG_EPOCH + timedelta(microseconds=wire[0])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb (event props) travels as Python objects, in the binary format so COPY can carry it:
    # a version byte (1) followed by the JSON text.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + msgspec.json.encode(value),
        decoder=lambda data: msgspec.json.decode(data[1:]),
        schema="pg_catalog",
        format="binary",
    )
    # timestamptz as an integer: asyncpg's own encoder converts each value to UTC and builds a
    # timedelta in Python objects (measured: 568 ns a value in a COPY, 745 in an array; this
    # one 271 and 438). process sends ~3 per event (the event, its session's hour summary,
    # the rate limit's hour).
    await conn.set_type_codec(
        "timestamptz",
        encoder=_encode_instant,
        decoder=_decode_instant,
        schema="pg_catalog",
        format="tuple",
    )


async def connect(url: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> asyncpg.Connection:
    """One connection, with a clear error naming the (redacted) URL when it fails."""
    try:
        conn = await asyncpg.connect(url, timeout=connect_timeout_s)
    except (OSError, asyncpg.PostgresError, TimeoutError, ValueError) as exc:
        raise DatabaseUnavailableError(f"cannot connect to {redact_url(url)}: {exc}") from exc
    await _init_connection(conn)
    return conn


class _PooledConnection(asyncpg.Connection):
    async def close(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 (asyncpg's)
        """Close; one the server has already ended (idle, frozen in Lambda) is dropped quietly."""
        try:
            await super().close(timeout=timeout)
        except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError):
            self.terminate()


async def create_pool(
    url: str,
    *,
    max_size: int = 10,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    idle_session_s: float | None = None,
) -> asyncpg.Pool:
    """A pool whose sessions the server ends after `idle_session_s` idle, when given."""
    server_settings = (
        {"idle_session_timeout": str(round(idle_session_s * 1000))} if idle_session_s else None
    )
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=connect_timeout_s,
            init=_init_connection,
            server_settings=server_settings,
            connection_class=_PooledConnection,
        )
    except (OSError, asyncpg.PostgresError, TimeoutError, ValueError) as exc:
        raise DatabaseUnavailableError(f"cannot connect to {redact_url(url)}: {exc}") from exc
    assert pool is not None
    return pool


def bundled_migrations() -> list[Migration]:
    """The numbered `NNNN_name.sql` files shipped in `topup/migrations`, in order."""
    found = []
    for entry in importlib.resources.files("topup.migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    return found


class MigrationChangedError(RuntimeError):
    """An applied migration's file was edited afterwards; add a new migration instead."""


async def migrate(
    conn: asyncpg.Connection, migrations: Sequence[Migration] | None = None
) -> list[Migration]:
    """Apply the migrations not yet applied, each in its own transaction; return those applied.

    Safe to run twice, or from several processes at once: an advisory lock serialises them, and
    whoever comes second finds nothing left to do.
    """
    migrations = bundled_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            row["version"]: row["checksum"]
            for row in await conn.fetch("SELECT version, checksum FROM schema_migrations")
        }
        done = []
        for migration in migrations:
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationChangedError(
                        f"migration {migration.version:04d}_{migration.name} was changed after it "
                        "was applied; add a new numbered migration instead"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            log.info("applied migration %04d_%s", migration.version, migration.name)
            done.append(migration)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
