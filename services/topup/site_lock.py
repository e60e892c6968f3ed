"""The per-site write lock: a delivery holds it for each of its sites while it writes their
events, and a rollup builder while it reads a site's rows and stores their totals, so no
delivery commits between the two (a delivery after it deletes the totals it changes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg


async def lock_sites(conn: asyncpg.Connection, site_ids: Iterable[uuid.UUID]) -> None:
    """Take the sites' locks until the transaction ends, in one order so two never deadlock."""
    for site_id in sorted(site_ids):
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", str(site_id))
