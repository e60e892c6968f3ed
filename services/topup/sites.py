"""Sites: the domains an account tracks, each with its privacy tier and event allowance."""

from __future__ import annotations

import re
import uuid
import zoneinfo
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec

from topup.accounts import NotFoundError
from topup.ids import new_id
from topup.tiers import TIER_FIELDS, Tier, check_allowed_fields

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


class Site(msgspec.Struct, frozen=True):
    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    domains: list[str]
    tier: Tier
    allowed_fields: list[str] | None
    timezone: str
    allowance_remaining: int
    visitor_hourly_limit: int
    created_at: datetime
    updated_at: datetime


class SiteChanges(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A partial update: fields left UNSET keep their value; `allowed_fields=None` clears it."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    domains: list[str] | msgspec.UnsetType = msgspec.UNSET
    tier: Tier | msgspec.UnsetType = msgspec.UNSET
    allowed_fields: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    visitor_hourly_limit: Annotated[int, msgspec.Meta(gt=0)] | msgspec.UnsetType = msgspec.UNSET


class InvalidSiteError(ValueError):
    """A site setting that cannot be saved; the message says which and why."""


def normalize_domain(value: str) -> str:
    """`https://WWW.Example.com:443/path` → `example.com`: how sites are named and matched."""
    domain = value.strip().lower()
    domain = re.sub(r"^[a-z][a-z0-9+.-]*://", "", domain)
    domain = domain.split("/", 1)[0].split(":", 1)[0].rstrip(".")
    domain = domain.removeprefix("www.")
    if not _HOSTNAME.match(domain):
        raise InvalidSiteError(f"invalid domain {value!r}: expected a host name like example.com")
    return domain


def check_timezone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSiteError(
            f"unknown time zone {name!r} (expected an IANA name like Europe/Berlin)"
        ) from None
    return name


def _domains(values: list[str]) -> list[str]:
    if not values:
        raise InvalidSiteError("a site needs at least one domain")
    return list(dict.fromkeys(normalize_domain(v) for v in values))


_COLUMNS = (
    "id, account_id, name, domains, tier, allowed_fields, timezone, allowance_remaining, "
    "visitor_hourly_limit, created_at, updated_at"
)


def _site(row: asyncpg.Record) -> Site:
    return msgspec.convert(dict(row), Site)


async def create_site(
    conn: asyncpg.Connection,
    account_id: uuid.UUID,
    *,
    name: str,
    domains: list[str],
    tier: Tier,
    timezone: str = "UTC",
    allowance: int,
    allowed_fields: list[str] | None = None,
) -> Site:
    if allowed_fields is not None:
        _check_fields(tier, allowed_fields)
    try:
        row = await conn.fetchrow(
            f"""INSERT INTO sites (id, account_id, name, domains, tier, allowed_fields, timezone,
                                   allowance_remaining)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {_COLUMNS}""",
            new_id(),
            account_id,
            name,
            _domains(domains),
            tier.value,
            allowed_fields,
            check_timezone(timezone),
            allowance,
        )
    except asyncpg.ForeignKeyViolationError:
        raise NotFoundError(f"no account {account_id}") from None
    return _site(row)


def _check_fields(tier: Tier, allowed_fields: list[str]) -> None:
    try:
        check_allowed_fields(tier, allowed_fields)
    except ValueError as exc:
        raise InvalidSiteError(str(exc)) from None


async def get_site(
    conn: asyncpg.Connection, site_id: uuid.UUID, *, account_id: uuid.UUID | None = None
) -> Site:
    """A site, of `account_id` when given; another account's site is as missing as no site."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM sites WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2)",
        site_id,
        account_id,
    )
    if row is None:
        raise NotFoundError(f"no site {site_id}")
    return _site(row)


async def list_sites(conn: asyncpg.Connection, account_id: uuid.UUID | None = None) -> list[Site]:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM sites WHERE $1::uuid IS NULL OR account_id = $1
            ORDER BY created_at""",
        account_id,
    )
    return [_site(r) for r in rows]


async def update_site(
    conn: asyncpg.Connection,
    site_id: uuid.UUID,
    changes: SiteChanges,
    *,
    account_id: uuid.UUID | None = None,
) -> Site:
    async with conn.transaction():
        site = await get_site(conn, site_id, account_id=account_id)
        values: dict[str, Any] = {}
        if changes.name is not msgspec.UNSET:
            values["name"] = changes.name
        if changes.domains is not msgspec.UNSET:
            values["domains"] = _domains(changes.domains)
        if changes.timezone is not msgspec.UNSET:
            values["timezone"] = check_timezone(changes.timezone)
        if changes.visitor_hourly_limit is not msgspec.UNSET:
            values["visitor_hourly_limit"] = changes.visitor_hourly_limit
        tier = site.tier if changes.tier is msgspec.UNSET else changes.tier
        values["tier"] = tier.value
        allowed = (
            site.allowed_fields
            if changes.allowed_fields is msgspec.UNSET
            else changes.allowed_fields
        )
        if allowed is not None:
            if changes.tier is not msgspec.UNSET and changes.allowed_fields is msgspec.UNSET:
                # A tier change keeps the owner's narrowing, cut to what the new tier collects.
                allowed = sorted(set(allowed) & TIER_FIELDS[tier])
            _check_fields(tier, allowed)
        values["allowed_fields"] = allowed
        assignments = ", ".join(f"{col} = ${i}" for i, col in enumerate(values, start=2))
        row = await conn.fetchrow(
            f"""UPDATE sites SET {assignments}, updated_at = now()
                WHERE id = $1 RETURNING {_COLUMNS}""",
            site_id,
            *values.values(),
        )
    return _site(row)


# A trillion events ($10M at list price) per top-up keeps the bigint allowance far from overflow.
MAX_TOP_UP = 10**12


async def top_up(
    conn: asyncpg.Connection,
    site_id: uuid.UUID,
    events: int,
    *,
    account_id: uuid.UUID | None = None,
) -> Site:
    """Add `events` to a site's allowance."""
    if not 0 < events <= MAX_TOP_UP:
        raise InvalidSiteError(f"a top-up adds 1 to {MAX_TOP_UP:,} events")
    row = await conn.fetchrow(
        f"""UPDATE sites SET allowance_remaining = allowance_remaining + $2, updated_at = now()
            WHERE id = $1 AND ($3::uuid IS NULL OR account_id = $3) RETURNING {_COLUMNS}""",
        site_id,
        events,
        account_id,
    )
    if row is None:
        raise NotFoundError(f"no site {site_id}")
    return _site(row)


async def delete_site(
    conn: asyncpg.Connection, site_id: uuid.UUID, *, account_id: uuid.UUID | None = None
) -> None:
    deleted = await conn.fetchval(
        "DELETE FROM sites WHERE id = $1 AND ($2::uuid IS NULL OR account_id = $2) RETURNING id",
        site_id,
        account_id,
    )
    if deleted is None:
        raise NotFoundError(f"no site {site_id}")
