"""Resolve events to sites, by id (tracker) or by domain (Plausible format), with a short cache.

A delivery looks up all its sites in one query; answers (including "no such site") are kept for
`ttl_s` seconds, so a settings change or a top-up reaches process within that time.
"""

from __future__ import annotations

import time
import uuid

import asyncpg
import msgspec

from topup.tiers import Tier, kept_fields


class SiteConfig(msgspec.Struct, frozen=True):
    id: uuid.UUID
    domains: list[str]
    tier: Tier
    kept: frozenset[str]
    allowance_remaining: int
    visitor_hourly_limit: int


_COLUMNS = "id, domains, tier, allowed_fields, allowance_remaining, visitor_hourly_limit"


def _config(row: asyncpg.Record) -> SiteConfig:
    tier = Tier(row["tier"])
    return SiteConfig(
        id=row["id"],
        domains=list(row["domains"]),
        tier=tier,
        kept=kept_fields(tier, row["allowed_fields"]),
        allowance_remaining=row["allowance_remaining"],
        visitor_hourly_limit=row["visitor_hourly_limit"],
    )


class SiteDirectory:
    def __init__(self, ttl_s: float = 10.0) -> None:
        self.ttl_s = ttl_s
        self._by_id: dict[uuid.UUID, tuple[float, SiteConfig | None]] = {}
        self._by_domain: dict[str, tuple[float, SiteConfig | None]] = {}

    def _fresh(self, entry: tuple[float, SiteConfig | None] | None) -> bool:
        return entry is not None and time.monotonic() - entry[0] < self.ttl_s

    async def load(self, conn: asyncpg.Connection, ids: set[uuid.UUID], domains: set[str]) -> None:
        """Fetch whatever of `ids` and `domains` is not freshly cached, in one query."""
        ids = {i for i in ids if not self._fresh(self._by_id.get(i))}
        domains = {d for d in domains if not self._fresh(self._by_domain.get(d))}
        if not ids and not domains:
            return
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM sites WHERE id = ANY($1::uuid[]) OR domains && $2::text[]",
            list(ids),
            list(domains),
        )
        now = time.monotonic()
        found = [_config(r) for r in rows]
        for site_id in ids:
            self._by_id[site_id] = (now, next((s for s in found if s.id == site_id), None))
        for domain in domains:
            self._by_domain[domain] = (now, next((s for s in found if domain in s.domains), None))

    def by_id(self, site_id: uuid.UUID) -> SiteConfig | None:
        entry = self._by_id.get(site_id)
        return entry[1] if entry else None

    def by_domain(self, domain: str) -> SiteConfig | None:
        entry = self._by_domain.get(domain)
        return entry[1] if entry else None

    def forget(self) -> None:
        self._by_id.clear()
        self._by_domain.clear()
