"""Settings whose secrets live in Secrets Manager (AWS): resolved once, at start-up."""

from __future__ import annotations

import json
from urllib.parse import quote

import msgspec

from topup.settings import Settings


async def _secret(arn: str, settings: Settings) -> dict[str, object]:
    import aioboto3

    async with aioboto3.Session().client(
        "secretsmanager", region_name=settings.aws_region, endpoint_url=settings.aws_endpoint_url
    ) as client:
        answer = await client.get_secret_value(SecretId=arn)
    value: dict[str, object] = json.loads(answer["SecretString"])
    return value


def database_url_from_secret(secret: dict[str, object], ca_file: str | None = None) -> str:
    """An RDS-managed secret as a postgresql:// URL (password URL-quoted); with a CA bundle, one
    that refuses a server without TLS, a certificate not from that CA, or another host's."""
    user = quote(str(secret["username"]), safe="")
    password = quote(str(secret["password"]), safe="")
    database = secret.get("dbname", "postgres")
    url = f"postgresql://{user}:{password}@{secret['host']}:{secret.get('port', 5432)}/{database}"
    if ca_file:
        url += f"?sslmode=verify-full&sslrootcert={quote(ca_file, safe='/')}"
    return url


async def resolve_secrets(settings: Settings) -> Settings:
    """The settings with the database URL and Firehose key filled in from their secrets."""
    changes: dict[str, str] = {}
    if settings.database_url is None and settings.database_secret_arn:
        changes["database_url"] = database_url_from_secret(
            await _secret(settings.database_secret_arn, settings), settings.database_ca_file
        )
    if settings.firehose_access_key is None and settings.firehose_access_key_secret_arn:
        secret = await _secret(settings.firehose_access_key_secret_arn, settings)
        changes["firehose_access_key"] = str(secret["api_key"])
    return msgspec.structs.replace(settings, **changes) if changes else settings
