import hashlib
import uuid

import pytest

from topup import accounts, sites
from topup.tiers import Tier


async def test_api_key_is_shown_once_and_only_its_hash_is_stored(db):
    account = await accounts.create_account(db, "Acme")
    created = await accounts.create_api_key(db, account.id, "ci")
    assert created.key.startswith("tk_") and len(created.key) > 40
    row = await db.fetchrow("SELECT * FROM api_keys WHERE id = $1", created.api_key.id)
    stored = " ".join(str(v) for v in dict(row).values())
    assert created.key not in stored
    assert row["key_hash"] == hashlib.sha256(created.key.encode()).digest()
    assert row["prefix"] == created.key[:10]


async def test_key_resolves_to_its_account_until_revoked(db):
    account = await accounts.create_account(db, "Acme")
    created = await accounts.create_api_key(db, account.id, "ci")
    found = await accounts.account_for_key(db, created.key)
    assert found is not None and found.id == account.id
    listed = await accounts.list_api_keys(db, account.id)
    assert listed[0].last_used_at is not None
    assert await accounts.account_for_key(db, created.key + "x") is None
    revoked = await accounts.revoke_api_key(db, created.api_key.id)
    assert revoked.revoked_at is not None
    assert await accounts.account_for_key(db, created.key) is None
    again = await accounts.revoke_api_key(db, created.api_key.id)
    assert again.revoked_at == revoked.revoked_at


async def test_revoking_another_accounts_key_is_not_found(db):
    owner = await accounts.create_account(db, "Owner")
    other = await accounts.create_account(db, "Other")
    created = await accounts.create_api_key(db, owner.id, "ci")
    with pytest.raises(accounts.NotFoundError):
        await accounts.revoke_api_key(db, created.api_key.id, account_id=other.id)
    assert await accounts.account_for_key(db, created.key) is not None


async def test_site_is_created_with_normalised_domains(db):
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(
        db,
        account.id,
        name="Blog",
        domains=["https://WWW.Example.com/blog", "shop.example.com", "example.com"],
        tier=Tier.PRIVACY_POLICY,
        timezone="Europe/Berlin",
        allowance=500,
    )
    assert site.domains == ["example.com", "shop.example.com"]
    assert site.tier is Tier.PRIVACY_POLICY
    assert site.allowance_remaining == 500
    assert await sites.get_site(db, site.id) == site


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"domains": ["not a domain!"]}, "invalid domain"),
        ({"domains": []}, "at least one domain"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"allowed_fields": ["city"]}, "fields not collected by tier banner_free: city"),
    ],
)
async def test_invalid_site_settings_are_refused(db, kwargs, message):
    account = await accounts.create_account(db, "Acme")
    args = {
        "name": "x",
        "domains": ["example.com"],
        "tier": Tier.BANNER_FREE,
        "allowance": 1,
    } | kwargs
    with pytest.raises(sites.InvalidSiteError, match=message):
        await sites.create_site(db, account.id, **args)
    assert await sites.list_sites(db) == []


async def test_update_changes_only_what_is_given(db):
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(
        db,
        account.id,
        name="Blog",
        domains=["example.com"],
        tier=Tier.FULL,
        allowance=1,
        allowed_fields=["country", "city", "distinct_id"],
    )
    renamed = await sites.update_site(db, site.id, sites.SiteChanges(name="Journal"))
    assert (renamed.name, renamed.domains, renamed.tier) == ("Journal", ["example.com"], Tier.FULL)
    assert renamed.updated_at > site.updated_at
    # Lowering the tier keeps the owner's narrowing, cut to what the new tier collects.
    lowered = await sites.update_site(db, site.id, sites.SiteChanges(tier=Tier.BANNER_FREE))
    assert lowered.allowed_fields == ["country"]
    cleared = await sites.update_site(db, site.id, sites.SiteChanges(allowed_fields=None))
    assert cleared.allowed_fields is None


async def test_another_accounts_site_is_as_missing_as_no_site(db):
    owner = await accounts.create_account(db, "Owner")
    other = await accounts.create_account(db, "Other")
    site = await sites.create_site(
        db, owner.id, name="x", domains=["a.com"], tier=Tier.FULL, allowance=1
    )
    for call in (
        lambda: sites.get_site(db, site.id, account_id=other.id),
        lambda: sites.update_site(db, site.id, sites.SiteChanges(name="y"), account_id=other.id),
        lambda: sites.top_up(db, site.id, 5, account_id=other.id),
        lambda: sites.delete_site(db, site.id, account_id=other.id),
        lambda: sites.get_site(db, uuid.uuid4()),
    ):
        with pytest.raises(accounts.NotFoundError):
            await call()
    assert (await sites.get_site(db, site.id)).name == "x"


async def test_top_up_adds_to_the_allowance(db):
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(
        db, account.id, name="x", domains=["a.com"], tier=Tier.FULL, allowance=10
    )
    assert (await sites.top_up(db, site.id, 90)).allowance_remaining == 100
    with pytest.raises(sites.InvalidSiteError):
        await sites.top_up(db, site.id, 0)
