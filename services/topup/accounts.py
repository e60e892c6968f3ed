"""Accounts and their API keys. Keys are shown once; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

import asyncpg
import msgspec

from topup.ids import new_id

KEY_PREFIX = "tk_"
_SHOWN_PREFIX_LEN = 10


class Account(msgspec.Struct, frozen=True):
    id: uuid.UUID
    name: str
    is_operator: bool
    created_at: datetime
    external_id: str | None = None


class ApiKey(msgspec.Struct, frozen=True):
    """An API key as listed: never the secret itself."""

    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewApiKey(msgspec.Struct, frozen=True):
    """A key just created: the only time the secret `key` exists outside its owner's hands."""

    key: str
    api_key: ApiKey


class NotFoundError(LookupError):
    """No such row, or it belongs to another account (the two are indistinguishable)."""


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_account(
    conn: asyncpg.Connection,
    name: str,
    *,
    is_operator: bool = False,
    external_id: str | None = None,
) -> Account:
    row = await conn.fetchrow(
        """INSERT INTO accounts (id, name, is_operator, external_id) VALUES ($1, $2, $3, $4)
           RETURNING id, name, is_operator, created_at, external_id""",
        new_id(),
        name,
        is_operator,
        external_id,
    )
    return Account(**dict(row))


async def get_account(conn: asyncpg.Connection, account_id: uuid.UUID) -> Account:
    row = await conn.fetchrow(
        "SELECT id, name, is_operator, created_at, external_id FROM accounts WHERE id = $1",
        account_id,
    )
    if row is None:
        raise NotFoundError(f"no account {account_id}")
    return Account(**dict(row))


async def list_accounts(conn: asyncpg.Connection) -> list[Account]:
    rows = await conn.fetch(
        "SELECT id, name, is_operator, created_at, external_id FROM accounts ORDER BY created_at"
    )
    return [Account(**dict(r)) for r in rows]


_KEY_COLUMNS = "id, account_id, name, prefix, created_at, last_used_at, revoked_at"


async def create_api_key(conn: asyncpg.Connection, account_id: uuid.UUID, name: str) -> NewApiKey:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    try:
        row = await conn.fetchrow(
            f"""INSERT INTO api_keys (id, account_id, name, prefix, key_hash)
                VALUES ($1, $2, $3, $4, $5) RETURNING {_KEY_COLUMNS}""",
            new_id(),
            account_id,
            name,
            key[:_SHOWN_PREFIX_LEN],
            hash_key(key),
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFoundError(f"no account {account_id}") from None
    return NewApiKey(key=key, api_key=ApiKey(**dict(row)))


async def list_api_keys(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[ApiKey]:
    rows = await conn.fetch(
        f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created_at",
        account_id,
    )
    return [ApiKey(**dict(r)) for r in rows]


async def revoke_api_key(
    conn: asyncpg.Connection, key_id: uuid.UUID, *, account_id: uuid.UUID | None = None
) -> ApiKey:
    """Revoke a key (of `account_id`, when given). Revoking twice keeps the first time."""
    row = await conn.fetchrow(
        f"""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
            WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2)
            RETURNING {_KEY_COLUMNS}""",
        key_id,
        account_id,
    )
    if row is None:
        raise NotFoundError(f"no API key {key_id}")
    return ApiKey(**dict(row))


async def account_for_key(conn: asyncpg.Connection, key: str) -> Account | None:
    """The account a live key belongs to, recording the key's use; None for unknown or revoked.

    The lookup is by hash, so comparing the secret never depends on how much of it matched.
    """
    row = await conn.fetchrow(
        """WITH used AS (
               UPDATE api_keys SET last_used_at = now()
               WHERE key_hash = $1 AND revoked_at IS NULL
               RETURNING account_id)
           SELECT a.id, a.name, a.is_operator, a.created_at, a.external_id
           FROM accounts a JOIN used ON used.account_id = a.id""",
        hash_key(key),
    )
    return None if row is None else Account(**dict(row))
