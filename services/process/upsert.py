"""Adding a delivery's rows to tables keyed by a tuple, in one statement over arrays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg


async def upsert(
    conn: asyncpg.Connection,
    sql: str,
    rows: Mapping[tuple[Any, ...], tuple[Any, ...]],
    *more: Any,
) -> list[asyncpg.Record]:
    """Run `sql` (INSERT … SELECT FROM unnest($1, $2, …) ON CONFLICT …) with one array per key
    part, then one per value part, then `more` parameters; what it returns. Keys go in sorted
    order, so concurrent deliveries lock the rows they share in the same order and never
    deadlock."""
    if not rows:
        return []
    keys = sorted(rows)
    key_columns = map(list, zip(*keys, strict=True))
    value_columns = map(list, zip(*(rows[k] for k in keys), strict=True))
    return await conn.fetch(sql, *key_columns, *value_columns, *more)
