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
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")}
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
