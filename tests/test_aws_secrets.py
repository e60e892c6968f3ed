"""Secrets from Secrets Manager (moto's server), as the Lambda functions read them at start-up."""

import json

import aioboto3

from topup.aws_secrets import resolve_secrets
from topup.settings import load_settings


async def test_database_url_and_firehose_key_come_from_their_secrets(moto_server):
    async with aioboto3.Session().client(
        "secretsmanager", region_name="us-east-1", endpoint_url=moto_server
    ) as sm:
        db = await sm.create_secret(
            Name="topup-db",
            SecretString=json.dumps(
                {
                    "username": "topup",
                    "password": "p@ss/w:rd",
                    "host": "db.cluster.local",
                    "port": 5432,
                    "dbname": "topup",
                    "engine": "postgres",
                }
            ),
        )
        key = await sm.create_secret(
            Name="topup-firehose", SecretString=json.dumps({"api_key": "k-123"})
        )
    settings = load_settings(
        {},
        database_secret_arn=db["ARN"],
        firehose_access_key_secret_arn=key["ARN"],
        aws_endpoint_url=moto_server,
    )
    resolved = await resolve_secrets(settings)
    assert resolved.database_url == "postgresql://topup:p%40ss%2Fw%3Ard@db.cluster.local:5432/topup"
    assert resolved.firehose_access_key == "k-123"
    # Explicit values win; nothing is fetched for them.
    explicit = load_settings(
        {},
        database_url="postgresql://a@b/c",
        firehose_access_key="x",
        database_secret_arn="arn:none",
        aws_endpoint_url=moto_server,
    )
    assert await resolve_secrets(explicit) == explicit
