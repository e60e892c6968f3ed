"""Who is calling: an API key (`Authorization: Bearer tk_…`) or an OIDC token (Cognito's JWT,
verified against the issuer's JWKS with PyJWT). A token's account is its `sub`, created on first
use. Anything else is a 401."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import jwt
import msgspec

from topup import accounts
from topup.accounts import KEY_PREFIX, Account
from topup.ids import new_id
from topup.settings import Settings

# Asymmetric algorithms only: a token signed with a shared secret (HS256, the "confusion"
# attack) or not at all (`alg: none`) is refused before its claims are read.
ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]


class Unauthenticated(Exception):
    """No credentials, or credentials that do not check out."""


class TokenVerifier:
    def __init__(self, issuer: str, audience: str, jwks_url: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=3600)

    def claims(self, token: str) -> dict[str, Any]:
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=ALGORITHMS,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "sub"], "verify_aud": False},
            )
        except (jwt.PyJWTError, jwt.PyJWKClientError) as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        # Cognito ID tokens carry the app client in `aud`, access tokens in `client_id`.
        audience = claims.get("aud") or claims.get("client_id")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            raise Unauthenticated("invalid token: wrong audience")
        return claims


def verifier_from_settings(settings: Settings) -> TokenVerifier | None:
    if settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url:
        return TokenVerifier(settings.oidc_issuer, settings.oidc_audience, settings.oidc_jwks_url)
    return None


async def account_for_subject(conn: asyncpg.Connection, subject: str, name: str) -> Account:
    row = await conn.fetchrow(
        """INSERT INTO accounts (id, name, external_id) VALUES ($1, $2, $3)
           ON CONFLICT (external_id) DO UPDATE SET external_id = EXCLUDED.external_id
           RETURNING id, name, is_operator, created_at, external_id""",
        new_id(),
        name,
        subject,
    )
    return msgspec.convert(dict(row), Account)


async def authenticate(
    conn: asyncpg.Connection, authorization: str | None, verifier: TokenVerifier | None
) -> Account:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthenticated("send `Authorization: Bearer <API key or token>`")
    credential = authorization[7:].strip()
    if credential.startswith(KEY_PREFIX):
        account = await accounts.account_for_key(conn, credential)
        if account is None:
            raise Unauthenticated("unknown or revoked API key")
        return account
    if verifier is None:
        raise Unauthenticated("tokens are not accepted here (no OIDC issuer configured)")
    claims = await asyncio.to_thread(verifier.claims, credential)  # may fetch the JWKS
    name = claims.get("email") or claims.get("cognito:username") or claims["sub"]
    return await account_for_subject(conn, claims["sub"], str(name))
