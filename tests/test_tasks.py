"""The deploy-time migration and scheduled maintenance handlers, invoked with the payloads
CloudFormation's custom resource provider and EventBridge send, in a fresh process."""

import json
import os
import subprocess
import sys

from tests.conftest import database_url_for
from topup.database import bundled_migrations, connect

INVOKE = """
import json, sys
from topup.tasks import {name}
print(json.dumps({name}(json.loads(sys.stdin.read()), None)))
"""


def invoke(name: str, event: dict, database_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")} | {
        "TOPUP_DATABASE_URL": database_url
    }
    result = subprocess.run(
        [sys.executable, "-c", INVOKE.format(name=name)],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


CREATE = {
    "RequestType": "Create",
    "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:provider",
    "ResponseURL": "https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/x",
    "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/topup/1",
    "RequestId": "r-1",
    "LogicalResourceId": "Schema",
    "ResourceType": "Custom::TopupSchema",
    "ResourceProperties": {"Version": "1"},
}


async def test_migration_custom_resource_and_scheduled_maintenance(postgres_server_url):
    admin = await connect(postgres_server_url)
    await admin.execute("DROP DATABASE IF EXISTS tasks_db WITH (FORCE)")
    await admin.execute("CREATE DATABASE tasks_db")
    url = database_url_for(postgres_server_url, "tasks_db")
    try:
        created = invoke("migrate_handler", CREATE, url)
        assert created["PhysicalResourceId"] == "topup-schema"
        assert created["Data"]["Applied"] == ",".join(
            f"{m.version:04d}_{m.name}" for m in bundled_migrations()
        )
        updated = invoke(
            "migrate_handler",
            CREATE | {"RequestType": "Update", "PhysicalResourceId": "topup-schema"},
            url,
        )
        assert updated["Data"]["Applied"] == ""
        deleted = invoke(
            "migrate_handler",
            CREATE | {"RequestType": "Delete", "PhysicalResourceId": "topup-schema"},
            url,
        )
        assert deleted["PhysicalResourceId"] == "topup-schema"
        scheduled = {
            "version": "0",
            "id": "e-1",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2026-11-26T06:00:00Z",
            "region": "eu-west-1",
            "resources": ["arn:aws:events:eu-west-1:123456789012:rule/topup-maintain"],
            "detail": {},
        }
        report = invoke("maintain_handler", scheduled, url)
        assert report["partitions_created"] > 0 and report["salts_created"] == 2
        conn = await connect(url)
        assert await conn.fetchval("SELECT count(*) FROM salts") == 2
        await conn.close()
    finally:
        await admin.execute("DROP DATABASE IF EXISTS tasks_db WITH (FORCE)")
        await admin.close()
