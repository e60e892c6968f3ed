"""Identifiers, by tier: the session key, and the privacy_policy tier's daily visitor hash.

A visitor id is BLAKE2b keyed with the day's random salt over (site, IP, User-Agent), cut to 64
bits. The salts live in Postgres and are deleted after 48 hours (`topup maintain`), after which
no id can be linked back to an address. Session keys hash the tracker's random tab id with the
site and the day the session began, so the stored key reveals nothing the client did not
already make up, and a key's events lie within two UTC days (what `visit_days` relies on).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import date, timedelta
from functools import lru_cache

import asyncpg


def _keyed_hash(key: bytes, data: bytes) -> int:
    """BLAKE2b of `data` keyed with `key`, cut to a signed 64-bit integer."""
    digest = hashlib.blake2b(data, digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big", signed=True)


def session_key(site_id: uuid.UUID, client_session: str, began: date | None = None) -> int:
    """The stored key of a session: the client's id (or ours) hashed with the site and, for a
    tab's id, the UTC day the session began."""
    data = client_session if began is None else f"{client_session}\x00{began.isoformat()}"
    return _keyed_hash(site_id.bytes, data.encode())


def tab_session_keys(site_id: uuid.UUID, tab: str, day: date) -> tuple[int, int]:
    """`session_key(site_id, tab, day)` and the same for the day before, made together (on
    process's hot path: once per tab and delivery)."""
    key, prefix = site_id.bytes, tab.encode() + b"\x00"
    today, yesterday = _iso_days(day)
    return _keyed_hash(key, prefix + today), _keyed_hash(key, prefix + yesterday)


@lru_cache(maxsize=16)
def _iso_days(day: date) -> tuple[bytes, bytes]:
    return day.isoformat().encode(), (day - timedelta(days=1)).isoformat().encode()


def visitor_hash(salt: bytes, site_id: uuid.UUID, ip: str, user_agent: str) -> int:
    data = site_id.bytes + b"\x00" + ip.encode() + b"\x00" + user_agent.encode()
    return _keyed_hash(salt[:64], data)


class Salts:
    """Today's salt per UTC day, created on first need and cached in memory."""

    def __init__(self) -> None:
        self._by_day: dict[date, bytes] = {}

    async def for_day(self, conn: asyncpg.Connection, day: date) -> bytes:
        salt = self._by_day.get(day)
        if salt is None:
            salt = await conn.fetchval(
                """INSERT INTO salts (day, salt) VALUES ($1, $2)
                   ON CONFLICT (day) DO UPDATE SET day = EXCLUDED.day RETURNING salt""",
                day,
                os.urandom(32),
            )
            assert salt is not None
            # Keep only the days in use: yesterday's salt is dropped here as in the database.
            self._by_day = {d: s for d, s in self._by_day.items() if d >= day} | {day: salt}
        return salt
