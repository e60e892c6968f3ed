"""The local router sends each path where CloudFront sends it in AWS."""

import asyncio
from urllib.parse import urlsplit

import pytest

from tests.conftest import LiveServer
from topup.local.devstack import build_router


@pytest.mark.parametrize(
    ("path", "service", "seen_as"),
    [
        ("/api/event", "ingest", "/api/event"),
        ("/js/script.js", "ingest", "/js/script.js"),
        ("/firehose", "process", "/firehose"),
        ("/", "query", "/"),
        ("/api/query", "query", "/api/query"),
        ("/api/events", "query", "/api/events"),
        ("/_ingest/healthz", "ingest", "/healthz"),
        ("/_process", "process", "/"),
        ("/_processing/x", "query", "/_processing/x"),
    ],
)
def test_routes(settings, path, service, seen_as):
    router = build_router(settings)
    app, seen = router.route(path)
    assert app is router.services[service]
    assert seen == seen_as


async def test_health_over_http_reports_each_service(settings):
    async with LiveServer(build_router(settings)) as server, server.client() as client:
        answer = await client.get("/healthz")
        assert answer.status_code == 200
        assert answer.json()["services"] == {"ingest": True, "process": True, "query": True}
        for service in ("ingest", "process", "query"):
            health = (await client.get(f"/_{service}/healthz")).json()
            assert health["service"] == service
        assert (await client.get("/_query/healthz")).json()["database"] == "ok"


async def test_health_is_503_when_the_database_is_gone(settings, postgres_server_url):
    from topup.database import connect

    async with LiveServer(build_router(settings)) as server, server.client() as client:
        admin = await connect(postgres_server_url)
        name = urlsplit(settings.database_url).path.lstrip("/")
        await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        for _ in range(100):  # termination is asynchronous: wait until the backends are gone
            left = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1"
            if await admin.fetchval(left, name) == 0:
                break
            await asyncio.sleep(0.05)
        try:
            answer = await client.get("/healthz")
            assert answer.status_code == 503
            assert answer.json()["services"]["ingest"] is True
            assert answer.json()["services"]["query"] is False
        finally:
            await admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS true")
            await admin.close()
