"""What each Lambda image holds, checked without Docker: its service's dependency group alone,
installed into a fresh virtual environment as the Dockerfile does, must import its handler and
answer a real Function URL event; and the ingest image must not carry the heavy parts."""

import json
import os
import subprocess
import sys
import uuid
import venv
from pathlib import Path

import pytest

from tests.test_firehose_sink import make_stream
from tests.test_lambda_handlers import function_url_event

ROOT = Path(__file__).parent.parent
INVOKE = """
import json, sys
from {service}.handler import handler
answers = [handler(json.loads(line), None) for line in sys.stdin]
print(json.dumps(answers))
"""


def test_dockerfiles_install_one_group_on_the_arm64_lambda_base():
    for service in ("ingest", "process", "query"):
        text = (ROOT / "docker" / f"{service}.Dockerfile").read_text()
        assert "FROM public.ecr.aws/lambda/python:3.11-arm64" in text
        # process: its group, or the groups the stack passes as EXTRAS (infra/services.py).
        group = "${EXTRAS}" if service == "process" else service
        assert f'"/tmp/src[{group}]"' in text
        assert ("ARG EXTRAS=process" in text) is (service == "process")
        assert f'CMD ["{service}.handler.handler"]' in text
        assert "-c /tmp/src/requirements.lock" in text
        # The two that reach the database verify its TLS certificate against RDS's bundle.
        reaches_database = service in ("process", "query")
        assert ("ENV TOPUP_DATABASE_CA_FILE=/opt/rds-ca-bundle.pem" in text) is reaches_database
        assert ("truststore.pki.rds.amazonaws.com/global/global-bundle.pem" in text) is (
            reaches_database
        )


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """One virtual environment per image, with only that image's groups installed (the process
    image twice: as deployed by default, and with the Glue archive writer's group)."""
    root = tmp_path_factory.mktemp("images")
    pythons = {}
    groups = {"ingest": "ingest", "process": "process", "query": "query",
              "process-glue": "process,glue-archive"}  # fmt: skip
    for service, group in groups.items():
        target = root / service
        venv.create(target, with_pip=True)
        python = target / "bin" / "python"
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-c",
                str(ROOT / "requirements.lock"),
                f"{ROOT}[{group}]",
            ],
            check=True,
            timeout=600,
        )
        pythons[service] = python
    return pythons


def run(python, service, events, env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")} | env
    result = subprocess.run(
        [str(python), "-c", INVOKE.format(service=service)],
        cwd="/",
        input="\n".join(json.dumps(e) for e in events),
        capture_output=True,
        text=True,
        env=clean,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def imports(python, module):
    return (
        subprocess.run(
            [str(python), "-c", f"import {module}"], capture_output=True, cwd="/"
        ).returncode
        == 0
    )


async def test_each_image_answers_a_function_url_event(images, moto_server, database_url):
    await make_stream(moto_server, "image-ingest", "image-bucket")
    ingest = run(
        images["ingest"],
        "ingest",
        [function_url_event()],
        {
            "TOPUP_SINK": "firehose",
            "TOPUP_FIREHOSE_STREAM": "image-ingest",
            "TOPUP_AWS_ENDPOINT_URL": moto_server,
        },
    )
    assert ingest[0]["statusCode"] == 202
    health = function_url_event(rawPath="/healthz", body=None)
    health["requestContext"]["http"] |= {"method": "GET", "path": "/healthz"}
    env = {
        "TOPUP_DATABASE_URL": database_url,
        "TOPUP_ARCHIVE": "firehose",
        "TOPUP_FIREHOSE_ACCESS_KEY": "k",
    }
    for service in ("process", "query"):
        answer = run(images[service], service, [health], env)
        assert answer[0]["statusCode"] == 200, answer
        assert json.loads(answer[0]["body"])["database"] == "ok"


def test_the_ingest_image_carries_no_heavy_parts(images):
    for module in ("pyiceberg", "duckdb", "aws_cdk", "asyncpg", "pgserver", "pyarrow"):
        assert not imports(images["ingest"], module), module
    for module in ("pyiceberg", "duckdb", "aws_cdk", "pgserver"):
        assert not imports(images["process"], module), module
    assert imports(images["process"], "ua_parser") and imports(images["query"], "jwt")
    assert sys.version_info >= (3, 11)


GLUE_WRITE = """
import asyncio, sys, uuid
from datetime import UTC, datetime
from process.archive import archive_from_settings
from process.rows import EventRow
from topup.settings import load_settings
async def main():
    archive = archive_from_settings(load_settings())
    await archive.start()
    now = datetime.now(UTC)
    await archive.write([EventRow(uuid.UUID(sys.argv[1]), uuid.uuid4(), now, 1, None, "pageview",
                                  "example.com", "/", None)], [])
asyncio.run(main())
"""


def test_the_process_image_with_the_glue_group_writes_the_glue_tables(images, moto_server):
    from tests.test_glue_archive import archived, make_tables

    database = f"image_{uuid.uuid4().hex[:8]}"
    make_tables(moto_server, database)
    event_id = str(uuid.uuid4())
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")} | {
        "TOPUP_ARCHIVE": "glue", "TOPUP_ATHENA_DATABASE": database,
        "TOPUP_AWS_ENDPOINT_URL": moto_server}  # fmt: skip
    result = subprocess.run([str(images["process-glue"]), "-c", GLUE_WRITE, event_id],
                            cwd="/", env=env, capture_output=True, text=True, timeout=120,
                            check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["event_id"] for r in archived(moto_server, database, "events")] == [event_id]
