"""`topup dev` end to end, as a newcomer runs it: embedded Postgres, one port, clean shutdown."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import free_port

TOPUP = str(Path(sys.executable).parent / "topup")


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["name"] == "postgres" and str(data_dir.resolve()) in cmdline:
            found.append(proc)
    return found


class DevProcess:
    def __init__(self, data_dir: Path, port: int, env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")} | (env or {})
        self.proc = subprocess.Popen(
            [TOPUP, "dev", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.output: list[str] = []
        deadline = time.monotonic() + 90
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                break
            self.output.append(line)
            if "Ctrl-C stops everything" in line:
                return
        raise AssertionError("topup dev did not start:\n" + "".join(self.output))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture
def data_dir(tmp_path):
    path = tmp_path / "devdata"
    yield path
    for proc in postgres_processes(path):  # never leave a server behind a failed test
        proc.kill()


def test_dev_prints_everything_serves_health_and_stops_cleanly(data_dir):
    port = free_port()
    dev = DevProcess(data_dir, port)
    text = "".join(dev.output)
    info = json.loads((data_dir / "dev.json").read_text())
    assert set(info) >= {"url", "site_id", "api_key", "snippet"}
    assert info["url"] == dev.url
    for value in (f"{dev.url}/", info["site_id"], info["api_key"], info["snippet"]):
        assert value in text
    assert f'data-site="{info["site_id"]}"' in info["snippet"]
    assert f'src="{dev.url}/js/script.js"' in info["snippet"]

    health = httpx.get(f"{dev.url}/healthz").json()
    assert health == {"status": "ok", "services": {"ingest": True, "process": True, "query": True}}
    for service in ("ingest", "process", "query"):
        answer = httpx.get(f"{dev.url}/_{service}/healthz")
        assert answer.status_code == 200 and answer.json()["service"] == service
    assert postgres_processes(data_dir), "the embedded database should be running"

    assert dev.stop(signal.SIGTERM) == 128 + signal.SIGTERM
    assert postgres_processes(data_dir) == []

    # A restart reuses the data: same demo site, and the same key still works.
    again = DevProcess(data_dir, port)
    info2 = json.loads((data_dir / "dev.json").read_text())
    assert (info2["site_id"], info2["api_key"]) == (info["site_id"], info["api_key"])
    assert httpx.get(f"{again.url}/healthz").status_code == 200
    assert again.stop(signal.SIGINT) == 128 + signal.SIGINT
    assert postgres_processes(data_dir) == []


def test_events_posted_to_dev_reach_postgres_and_the_archive(data_dir):
    import asyncio

    from topup.archive_tables import open_tables
    from topup.database import connect

    dev = DevProcess(data_dir, free_port())
    try:
        info = json.loads((data_dir / "dev.json").read_text())
        events = [
            {"n": "pageview", "u": f"{dev.url}/docs/{i}", "s": info["site_id"], "sid": "tab-e2e",
             "r": "https://duckduckgo.com/", "sw": 1280, "sh": 800}
            for i in range(3)
        ]  # fmt: skip
        plausible = {
            "n": "Signup",
            "u": f"{dev.url}/signup",
            "d": "localhost",
            "p": {"plan": "pro"},
        }
        for body in ({"events": events}, plausible):
            answer = httpx.post(f"{dev.url}/api/event", content=json.dumps(body),
                                headers={"Content-Type": "text/plain", "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"})  # fmt: skip
            assert answer.status_code == 202

        async def stored() -> list:
            conn = await connect(info["database_url"])
            try:
                for _ in range(100):
                    rows = await conn.fetch("SELECT name, pathname FROM events ORDER BY pathname")
                    if len(rows) == 4:
                        return rows
                    await asyncio.sleep(0.1)
                return rows
            finally:
                await conn.close()

        rows = asyncio.run(stored())
        assert [(r["name"], r["pathname"]) for r in rows] == [
            ("pageview", "/docs/0"), ("pageview", "/docs/1"), ("pageview", "/docs/2"), ("Signup", "/signup")]  # fmt: skip
        # The archive is appended after the database commits: give it a moment.
        for _ in range(100):
            archived = open_tables(data_dir / "archive")["events"].scan().to_arrow().to_pylist()
            if len(archived) >= 4:
                break
            time.sleep(0.1)
        assert sorted(r["pathname"] for r in archived) == [
            "/docs/0",
            "/docs/1",
            "/docs/2",
            "/signup",
        ]
    finally:
        dev.stop()
    assert postgres_processes(data_dir) == []


def test_killed_with_undelivered_events_a_restart_delivers_them_once(data_dir):
    import asyncio

    from topup.database import connect

    port = free_port()
    dev = DevProcess(data_dir, port)
    info = json.loads((data_dir / "dev.json").read_text())
    events = [
        {"n": "pageview", "u": f"{dev.url}/k/{i}", "s": info["site_id"], "sid": "tab-k"}
        for i in range(7)
    ]
    answer = httpx.post(
        f"{dev.url}/api/event",
        content=json.dumps({"events": events}),
        headers={
            "User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0"
        },
    )
    assert answer.status_code == 202
    dev.proc.kill()  # SIGKILL: no clean-up at all, the batch still in the spool
    dev.proc.wait(timeout=30)
    assert list((data_dir / "firehose").glob("*")), "the accepted events should be spooled"

    again = DevProcess(data_dir, port)  # adopts the orphaned database, delivers the spool

    async def stored() -> int:
        conn = await connect(info["database_url"])
        try:
            for _ in range(100):
                count = await conn.fetchval("SELECT count(*) FROM events")
                if count >= 7:
                    await asyncio.sleep(0.5)  # and nothing more arrives
                    return await conn.fetchval("SELECT count(*) FROM events")
                await asyncio.sleep(0.1)
            return count
        finally:
            await conn.close()

    assert asyncio.run(stored()) == 7
    assert again.stop(signal.SIGTERM) == 128 + signal.SIGTERM
    assert postgres_processes(data_dir) == []
