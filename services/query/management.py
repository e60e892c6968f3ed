"""The management API: the caller's account, sites, API keys, usage and allowance."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, delete, get, patch, post
from litestar.exceptions import PermissionDeniedException
from litestar.params import FromPath, JSONBody, Parameter

from query.deps import Caller, Config, Conn
from topup import accounts, sites
from topup.accounts import Account, ApiKey
from topup.sites import Site, SiteChanges
from topup.snippet import tracker_snippet
from topup.tiers import TIER_FIELDS, TIER_GUIDE, Tier


class NewSite(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    domains: list[str]
    tier: Tier | None = None
    timezone: str = "UTC"
    allowed_fields: list[str] | None = None


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    name: str = "api"


class CreatedKey(msgspec.Struct):
    key: str  # shown this once
    api_key: ApiKey


class TopUp(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[int, msgspec.Meta(gt=0, le=sites.MAX_TOP_UP)]


class Snippet(msgspec.Struct):
    snippet: str


class UsageDay(msgspec.Struct):
    day: date
    accepted: int
    dropped: dict[str, int]


class Usage(msgspec.Struct):
    site_id: FromPath[uuid.UUID]
    allowance_remaining: int
    accepted: int
    dropped: int
    days: list[UsageDay]


def public_url(settings: Config, request: Request[Any, Any, Any]) -> str:
    return settings.public_url or str(request.base_url).rstrip("/")


class TierInfo(msgspec.Struct):
    tier: Tier
    title: str
    collects: str
    tell_visitors: str
    fields: list[str]


class AccountController(Controller):
    path = "/api"
    tags = ("account",)

    @get("/me")
    async def me(self, account: Caller) -> Account:
        """The calling account."""
        return account

    @get("/tiers")
    async def tiers(self, account: Caller) -> list[TierInfo]:
        """The privacy tiers: what each collects, what to tell visitors, and its fields."""
        return [
            TierInfo(tier, fields=sorted(TIER_FIELDS[tier]), **TIER_GUIDE[tier]) for tier in Tier
        ]

    @get("/keys")
    async def list_keys(self, account: Caller, conn: Conn) -> list[ApiKey]:
        """The account's API keys (never the secrets)."""
        return await accounts.list_api_keys(conn, account.id)

    @post("/keys")
    async def create_key(self, account: Caller, conn: Conn, data: JSONBody[NewKey]) -> CreatedKey:
        """A new API key; the response is the only time the key is shown."""
        created = await accounts.create_api_key(conn, account.id, data.name)
        return CreatedKey(created.key, created.api_key)

    @delete("/keys/{key_id:uuid}", status_code=200)
    async def revoke_key(self, account: Caller, conn: Conn, key_id: FromPath[uuid.UUID]) -> ApiKey:
        """Revoke a key: requests with it are refused from now on."""
        return await accounts.revoke_api_key(conn, key_id, account_id=account.id)


class SiteController(Controller):
    path = "/api/sites"
    tags = ("sites",)

    @get("/")
    async def list_sites(self, account: Caller, conn: Conn) -> list[Site]:
        return await sites.list_sites(conn, account.id)

    @post("/")
    async def create_site(
        self, account: Caller, conn: Conn, data: JSONBody[NewSite], settings: Config
    ) -> Site:
        return await sites.create_site(
            conn,
            account.id,
            name=data.name,
            domains=data.domains,
            tier=data.tier or settings.default_tier,
            timezone=data.timezone,
            allowance=settings.default_allowance,
            allowed_fields=data.allowed_fields,
        )

    @get("/{site_id:uuid}")
    async def read_site(self, account: Caller, conn: Conn, site_id: FromPath[uuid.UUID]) -> Site:
        return await sites.get_site(conn, site_id, account_id=account.id)

    @patch("/{site_id:uuid}")
    async def update_site(
        self, account: Caller, conn: Conn, site_id: FromPath[uuid.UUID], data: JSONBody[SiteChanges]
    ) -> Site:
        """Change domains, tier, allowed_fields, time zone or name; omitted fields stay."""
        return await sites.update_site(conn, site_id, data, account_id=account.id)

    @delete("/{site_id:uuid}")
    async def delete_site(self, account: Caller, conn: Conn, site_id: FromPath[uuid.UUID]) -> None:
        """Delete a site (its events leave Postgres with the retention window)."""
        await sites.delete_site(conn, site_id, account_id=account.id)

    @get("/{site_id:uuid}/snippet")
    async def snippet(
        self,
        account: Caller,
        conn: Conn,
        site_id: FromPath[uuid.UUID],
        request: Request[Any, Any, Any],
        settings: Config,
    ) -> Snippet:
        """The tracker snippet to paste into the site's pages."""
        site = await sites.get_site(conn, site_id, account_id=account.id)
        return Snippet(tracker_snippet(public_url(settings, request), site))

    @get("/{site_id:uuid}/usage")
    async def usage(
        self,
        account: Caller,
        conn: Conn,
        site_id: FromPath[uuid.UUID],
        days: Annotated[int, Parameter(ge=1, le=400)] = 30,
    ) -> Usage:
        """Accepted and dropped events per day (dropped by reason), and the allowance left."""
        site = await sites.get_site(conn, site_id, account_id=account.id)
        rows = await conn.fetch(
            """SELECT day, outcome, events FROM usage_daily
               WHERE site_id = $1 AND day >= current_date - $2::int ORDER BY day""",
            site_id,
            days - 1,
        )
        by_day: dict[date, UsageDay] = {}
        for row in rows:
            entry = by_day.setdefault(row["day"], UsageDay(row["day"], 0, {}))
            if row["outcome"] == "accepted":
                entry.accepted += row["events"]
            else:
                entry.dropped[row["outcome"]] = row["events"]
        listed = list(by_day.values())
        return Usage(
            site_id=site.id,
            allowance_remaining=site.allowance_remaining,
            accepted=sum(d.accepted for d in listed),
            dropped=sum(sum(d.dropped.values()) for d in listed),
            days=listed,
        )

    @post("/{site_id:uuid}/topup", status_code=200)
    async def top_up(
        self, account: Caller, conn: Conn, site_id: FromPath[uuid.UUID], data: JSONBody[TopUp]
    ) -> Site:
        """Add events to any site's allowance: operators only."""
        if not account.is_operator:
            raise PermissionDeniedException("only an operator account may top up an allowance")
        return await sites.top_up(conn, site_id, data.events)
