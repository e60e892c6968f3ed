"""Site management and authentication over real HTTP: API keys, OIDC tokens, tenancy."""

import base64
import json
import time
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from litestar import Litestar, get

from query.app import create_app
from tests.conftest import LiveServer
from topup import accounts, sites
from topup.tiers import Tier

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST"
AUDIENCE = "dashboard-client"


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def signing_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def oidc(signing_key):
    public = signing_key.public_key().public_numbers()
    jwks = {
        "keys": [
            {
                "kty": "RSA",
                "kid": "k1",
                "use": "sig",
                "alg": "RS256",
                "n": _b64(public.n),
                "e": _b64(public.e),
            }
        ]
    }

    @get("/.well-known/jwks.json")
    async def keys() -> dict:
        return jwks

    server = LiveServer(Litestar([keys], logging_config=None))
    async with server:
        yield f"{server.url}/.well-known/jwks.json"


@pytest.fixture
async def api(settings, oidc, db):
    import msgspec

    settings = msgspec.structs.replace(
        settings,
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=oidc,
        public_url="https://stats.example.net",
    )
    owner = await accounts.create_account(db, "Owner")
    other = await accounts.create_account(db, "Other")
    operator = await accounts.create_account(db, "Operator", is_operator=True)
    keys = {
        name: (await accounts.create_api_key(db, a.id, "t"))
        for name, a in (("owner", owner), ("other", other), ("operator", operator))
    }
    server = LiveServer(create_app(settings))
    async with server, server.client() as client:
        yield client, {name: k.key for name, k in keys.items()}, keys, owner


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def token(signing_key, **claims):
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-123",
        "email": "ada@example.com",
        "exp": int(time.time()) + 600,
        "iat": int(time.time()),
    } | claims
    return jwt.encode(body, signing_key, algorithm="RS256", headers={"kid": "k1"})


async def test_site_lifecycle(api, db):
    client, keys, _, owner = api
    me = (await client.get("/api/me", headers=auth(keys["owner"]))).json()
    assert me["id"] == str(owner.id) and me["is_operator"] is False
    created = await client.post(
        "/api/sites",
        headers=auth(keys["owner"]),
        json={
            "name": "Blog",
            "domains": ["https://www.Example.com/"],
            "tier": "privacy_policy",
            "timezone": "Europe/Paris",
        },
    )
    assert created.status_code == 201, created.text
    site = created.json()
    assert site["domains"] == ["example.com"] and site["tier"] == "privacy_policy"
    assert site["allowance_remaining"] == 1_000_000
    listed = (await client.get("/api/sites", headers=auth(keys["owner"]))).json()
    assert [s["id"] for s in listed] == [site["id"]]
    updated = await client.patch(
        f"/api/sites/{site['id']}",
        headers=auth(keys["owner"]),
        json={"tier": "full", "allowed_fields": ["country", "distinct_id"]},
    )
    assert updated.status_code == 200 and updated.json()["allowed_fields"] == [
        "country",
        "distinct_id",
    ]
    refused = await client.patch(
        f"/api/sites/{site['id']}",
        headers=auth(keys["owner"]),
        json={"tier": "banner_free", "allowed_fields": ["city"]},
    )
    assert refused.status_code == 400 and "city" in refused.json()["error"]
    bad = await client.post(
        "/api/sites", headers=auth(keys["owner"]), json={"name": "x", "domains": ["not a domain"]}
    )
    assert bad.status_code == 400 and "invalid domain" in bad.json()["error"]
    snippet = (
        await client.get(f"/api/sites/{site['id']}/snippet", headers=auth(keys["owner"]))
    ).json()["snippet"]
    assert snippet == (
        f'<script defer data-site="{site["id"]}" data-tier="full" '
        'src="https://stats.example.net/js/script.js"></script>'
    )

    await db.execute(
        """INSERT INTO usage_daily (site_id, day, outcome, events) VALUES
        ($1, current_date, 'accepted', 40), ($1, current_date, 'bot', 3), ($1, current_date - 1, 'accepted', 7)""",
        uuid.UUID(site["id"]),
    )
    usage = (await client.get(f"/api/sites/{site['id']}/usage", headers=auth(keys["owner"]))).json()
    assert (usage["accepted"], usage["dropped"], usage["allowance_remaining"]) == (47, 3, 1_000_000)
    assert usage["days"][-1]["dropped"] == {"bot": 3}

    assert (
        await client.delete(f"/api/sites/{site['id']}", headers=auth(keys["owner"]))
    ).status_code == 204
    assert (
        await client.get(f"/api/sites/{site['id']}", headers=auth(keys["owner"]))
    ).status_code == 404


async def test_keys_are_shown_once_listed_without_secret_and_revocable(api):
    client, keys, _, _ = api
    nul = await client.post("/api/keys", headers=auth(keys["owner"]), json={"name": "a\u0000b"})
    assert nul.status_code == 400 and "NUL" in nul.json()["error"]
    created = (
        await client.post("/api/keys", headers=auth(keys["owner"]), json={"name": "ci"})
    ).json()
    new_key = created["key"]
    listed = await client.get("/api/keys", headers=auth(keys["owner"]))
    assert new_key not in listed.text and len(listed.json()) == 2
    assert (await client.get("/api/me", headers=auth(new_key))).status_code == 200
    key_id = created["api_key"]["id"]
    assert (
        await client.delete(f"/api/keys/{key_id}", headers=auth(keys["other"]))
    ).status_code == 404
    assert (
        await client.delete(f"/api/keys/{key_id}", headers=auth(keys["owner"]))
    ).status_code == 200
    revoked = await client.get("/api/me", headers=auth(new_key))
    assert revoked.status_code == 401


async def test_top_up_is_for_operators(api, db):
    client, keys, _, owner = api
    site = await sites.create_site(
        db, owner.id, name="x", domains=["a.com"], tier=Tier.BANNER_FREE, allowance=5
    )
    path = f"/api/sites/{site.id}/topup"
    assert (
        await client.post(path, headers=auth(keys["owner"]), json={"events": 10})
    ).status_code == 403
    answer = await client.post(path, headers=auth(keys["operator"]), json={"events": 10})
    assert answer.status_code == 200 and answer.json()["allowance_remaining"] == 15
    for events in (0, 10**12 + 1, 2**100):  # 2**100 once overflowed bigint into a 500
        answer = await client.post(path, headers=auth(keys["operator"]), json={"events": events})
        assert answer.status_code == 400, answer.text
    assert (await sites.get_site(db, site.id)).allowance_remaining == 15


async def test_tenancy_matrix(api, db):
    """Every site-scoped route × (owner, other account, no credentials, revoked key)."""
    client, keys, _key_rows, owner = api
    site = await sites.create_site(
        db, owner.id, name="x", domains=["a.com"], tier=Tier.FULL, allowance=5
    )
    revoked = await accounts.create_api_key(db, owner.id, "old")
    await accounts.revoke_api_key(db, revoked.api_key.id)
    query = {"site_id": str(site.id), "metrics": ["visitors"], "date_range": "7d"}
    routes = [
        ("GET", f"/api/sites/{site.id}", None, 200),
        ("PATCH", f"/api/sites/{site.id}", {"name": "y"}, 200),
        ("GET", f"/api/sites/{site.id}/snippet", None, 200),
        ("GET", f"/api/sites/{site.id}/usage", None, 200),
        ("POST", "/api/query", query, 200),
        ("POST", "/api/v2/query", query, 200),
        ("POST", "/api/export", query, 200),
        ("GET", f"/api/realtime?site_id={site.id}", None, 200),
        ("DELETE", f"/api/sites/{site.id}", None, 204),
    ]
    callers = {
        "other": (auth(keys["other"]), 404),
        "none": ({}, 401),
        "revoked": (auth(revoked.key), 401),
        "garbage": ({"Authorization": "Bearer nonsense"}, 401),
    }
    for method, path, body, _ in routes:
        for name, (headers, expected) in callers.items():
            answer = await client.request(method, path, json=body, headers=headers)
            assert answer.status_code == expected, (method, path, name, answer.text)
    missing = await client.get(f"/api/sites/{uuid.uuid4()}", headers=auth(keys["other"]))
    foreign = await client.get(f"/api/sites/{site.id}", headers=auth(keys["other"]))
    assert missing.json() == foreign.json()  # indistinguishable
    for method, path, body, expected in routes:
        answer = await client.request(method, path, json=body, headers=auth(keys["owner"]))
        assert answer.status_code == expected, (method, path, answer.text)
    for path in ("/api/me", "/api/keys", "/api/sites"):
        assert (await client.get(path)).status_code == 401


async def test_oidc_tokens(api, signing_key, db):
    client, _, _, _ = api
    good = token(signing_key)
    first = await client.get("/api/me", headers=auth(good))
    assert first.status_code == 200, first.text
    again = await client.get("/api/me", headers=auth(token(signing_key, iat=int(time.time()) - 5)))
    assert again.json()["id"] == first.json()["id"]  # the token's sub is the account
    assert first.json()["name"] == "ada@example.com"
    assert await db.fetchval("SELECT count(*) FROM accounts WHERE external_id = 'user-123'") == 1
    access = token(signing_key, aud=None, client_id=AUDIENCE, token_use="access")
    assert (await client.get("/api/me", headers=auth(access))).status_code == 200

    public_pem = signing_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(
        json.dumps({"alg": "none", "typ": "JWT", "kid": "k1"}).encode()
    ).rstrip(b"=")
    payload = base64.urlsafe_b64encode(
        json.dumps(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "evil", "exp": int(time.time()) + 600}
        ).encode()
    ).rstrip(b"=")
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    hs_payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "evil", "exp": int(time.time()) + 600}
    signing_input = (
        base64.urlsafe_b64encode(json.dumps(hs_header).encode()).rstrip(b"=")
        + b"."
        + base64.urlsafe_b64encode(json.dumps(hs_payload).encode()).rstrip(b"=")
    )
    import hashlib
    import hmac

    confused = (
        signing_input
        + b"."
        + base64.urlsafe_b64encode(
            hmac.new(public_pem, signing_input, hashlib.sha256).digest()
        ).rstrip(b"=")
    )
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    bad_tokens = {
        "alg none": (header + b"." + payload + b".").decode(),
        "HS256 signed with the public key": confused.decode(),
        "wrong issuer": token(signing_key, iss="https://evil.example.com"),
        "wrong audience": token(signing_key, aud="someone-else"),
        "expired": token(signing_key, exp=int(time.time()) - 60),
        "no sub": jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 600},
            signing_key,
            algorithm="RS256",
            headers={"kid": "k1"},
        ),
        "signed by another key": jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "evil", "exp": int(time.time()) + 600},
            other_key,
            algorithm="RS256",
            headers={"kid": "k1"},
        ),
    }
    for name, bad in bad_tokens.items():
        answer = await client.get("/api/me", headers=auth(bad))
        assert answer.status_code == 401, name
    assert await db.fetchval("SELECT count(*) FROM accounts WHERE external_id = 'evil'") == 0


async def test_openapi_is_served(api):
    client, _, _, _ = api
    spec = (await client.get("/schema/openapi.json")).json()
    assert {"/api/query", "/api/sites", "/api/keys", "/api/realtime", "/api/export"} <= set(
        spec["paths"]
    )
