"""Identifiers: UUIDv7 for rows and events (time-ordered, so inserts stay index-friendly)."""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> uuid.UUID:
    """A fresh UUIDv7 as a standard-library UUID (what asyncpg and msgspec expect)."""
    return uuid.UUID(bytes=uuid_utils.uuid7().bytes)
