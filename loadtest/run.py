"""`make loadtest`: the local stack under Locust for a bounded time, then a reconciliation.

1. Start `topup dev` (embedded Postgres, local firehose, local archive) on a free loopback port.
2. Run Locust headless against it for `--seconds` (HTML and CSV reports in loadtest/results/).
3. Wait for the buffer to drain, then check that every event the ingest accepted is in Postgres
   and in the archive exactly once.

Prints requests/s, events/s stored, latency percentiles, failures and the reconciliation, and
exits non-zero if an event was lost or doubled, if more than 0.1 % of requests failed, or if
fewer events per second were stored than `--min-events-per-second`.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import httpx

RESULTS = Path(__file__).parent / "results"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_stack(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOPUP_")} | {
        "TOPUP_TRUSTED_PROXIES": "127.0.0.1/32",  # the load generator speaks for many addresses
        "TOPUP_BUFFER_MAX_SECONDS": "0.5",
    }
    stack = subprocess.Popen(
        [str(BIN / "topup"), "dev", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    assert stack.stdout is not None
    for line in stack.stdout:
        if "Ctrl-C stops everything" in line:
            keep_reading(stack.stdout, RESULTS / "loadtest-stack.log")
            return stack, json.loads((data_dir / "dev.json").read_text())
    raise SystemExit("topup dev did not start")


def keep_reading(output: IO[str], log: Path) -> None:
    """Copy the stack's output to a file for the rest of the run: an unread pipe fills up (an
    outage logs a lot) and then blocks the stack on its next log line, shutdown included."""

    def copy() -> None:
        with log.open("w") as sink:
            for line in output:
                sink.write(line)

    log.parent.mkdir(exist_ok=True)
    threading.Thread(target=copy, daemon=True).start()


def postgres_outage(data_dir: Path, after_s: float, outage_s: float) -> None:
    """Stop the stack's Postgres `after_s` into the run and start it again `outage_s` later:
    ingest keeps accepting (the local firehose spools), process answers 503 until it is back."""
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    from topup.local.embedded_postgres import EmbeddedPostgres

    pgdata = (data_dir / "postgres").resolve()
    time.sleep(after_s)
    print(f"stopping Postgres for {outage_s:.0f} s", flush=True)
    pg_ctl(
        ["-w", "-m", "fast", "stop"], pgdata=pgdata, user="pgserver" if os.geteuid() == 0 else None
    )
    time.sleep(outage_s)
    EmbeddedPostgres(pgdata)  # starts it again, on the same data
    print("Postgres is back", flush=True)


def run_locust(info: dict, users: int, seconds: int) -> None:
    RESULTS.mkdir(exist_ok=True)
    env = os.environ | {
        "TOPUP_LOADTEST_SITE": info["site_id"],
        "TOPUP_LOADTEST_DOMAIN": "example.com",
        "TOPUP_LOADTEST_KEY": info["api_key"],
        "TOPUP_LOADTEST_TOTALS": str(RESULTS / "accepted.json"),
    }
    subprocess.run(
        [
            str(BIN / "locust"),
            "-f",
            str(Path(__file__).parent / "locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "-t",
            f"{seconds}s",
            "--stop-timeout",
            "5",
            "--host",
            info["url"],
            "--csv",
            str(RESULTS / "loadtest"),
            "--html",
            str(RESULTS / "loadtest.html"),
            "--only-summary",
            "--exit-code-on-error",
            "0",
        ],
        env=env,
        check=True,
        timeout=seconds + 120,
        cwd=Path(__file__).parent.parent,
    )


async def stored_counts(info: dict, data_dir: Path, wait_s: float) -> dict[str, int]:
    """Wait for the buffer to drain and the count to settle, then count both stores."""
    from topup.archive_tables import open_tables
    from topup.database import connect

    conn = await connect(info["database_url"])
    try:
        deadline, last, stable_since = time.monotonic() + wait_s, -1, time.monotonic()
        while time.monotonic() < deadline:
            spooled = list((data_dir / "firehose").glob("*"))
            count = await conn.fetchval("SELECT count(*) FROM events")
            if count != last:
                last, stable_since = count, time.monotonic()
            if not spooled and time.monotonic() - stable_since > 3:
                break
            await asyncio.sleep(0.5)
        postgres = await conn.fetchval("SELECT count(*) FROM events")
        distinct = await conn.fetchval("SELECT count(DISTINCT event_id) FROM events")
        drops = await conn.fetchval(
            "SELECT coalesce(sum(events), 0) FROM usage_daily WHERE outcome <> 'accepted'"
        )
    finally:
        await conn.close()
    archived = open_tables(data_dir / "archive")["events"].scan().to_arrow()
    ids = archived.column("event_id").to_pylist()
    return {
        "postgres": postgres,
        "postgres_distinct": distinct,
        "dropped": int(drops),
        "archive": len(ids),
        "archive_distinct": len(set(ids)),
    }


def locust_summary() -> dict[str, float]:
    with (RESULTS / "loadtest_stats.csv").open() as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    events = [r for name, r in rows.items() if name.startswith("/api/event")]
    return {
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "requests_per_s": float(total["Requests/s"]),
        "event_requests": sum(int(r["Request Count"]) for r in events),
        "event_failures": sum(int(r["Failure Count"]) for r in events),
        "event_p50_ms": max(float(r["50%"]) for r in events),
        "event_p95_ms": max(float(r["95%"]) for r in events),
        "event_p99_ms": max(float(r["99%"]) for r in events),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Load the local stack, then reconcile.")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--min-events-per-second", type=float, default=50.0)
    parser.add_argument(
        "--db-outage",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stop Postgres this long a third of the way into the run (dashboard queries may "
        "fail meanwhile; only event requests then count towards the failure limit)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="topup-loadtest-") as tmp:
        data_dir = Path(tmp) / "data"
        stack, info = start_stack(data_dir, free_port())
        try:
            headers = {"Authorization": f"Bearer {info['api_key']}"}
            httpx.patch(
                f"{info['url']}/api/sites/{info['site_id']}",
                headers=headers,
                json={"domains": ["localhost", "127.0.0.1", "example.com"]},
            ).raise_for_status()
            started = time.monotonic()
            outage = None
            if args.db_outage:
                outage = threading.Thread(
                    target=postgres_outage, args=(data_dir, args.seconds / 3, args.db_outage)
                )
                outage.start()
            run_locust(info, args.users, args.seconds)
            if outage is not None:
                outage.join()
            elapsed = time.monotonic() - started
            counts = asyncio.run(stored_counts(info, data_dir, wait_s=120))
        finally:
            stack.send_signal(signal.SIGTERM)
            stack.wait(timeout=60)
    accepted = json.loads((RESULTS / "accepted.json").read_text())["events"]
    summary = locust_summary()
    stored_per_s = counts["postgres"] / elapsed
    report = {
        "seconds": args.seconds,
        "users": args.users,
        "accepted_events": accepted,
        "stored_events_per_s": round(stored_per_s, 1),
        **summary,
        **counts,
    }
    (RESULTS / "loadtest.json").write_text(json.dumps(report, indent=2) + "\n")
    failures, requests = summary["failures"], summary["requests"]
    if args.db_outage:  # only the event requests must not fail during an outage
        failures, requests = summary["event_failures"], summary["event_requests"]
    failure_ratio = failures / max(1, requests)
    problems = []
    for store in ("postgres", "archive"):
        held, distinct = counts[store], counts[f"{store}_distinct"]
        if held != accepted or distinct != held:
            problems.append(
                f"{store} holds {held} events ({distinct} distinct); {accepted} accepted"
            )
    if failure_ratio > 0.001:
        problems.append(f"{failure_ratio:.2%} of requests failed (limit 0.1 %)")
    if stored_per_s < args.min_events_per_second:
        floor = args.min_events_per_second
        problems.append(f"{stored_per_s:.0f} events/s stored, below the floor of {floor:.0f}")
    print(json.dumps(report, indent=2))
    print(
        "reconciliation:",
        "OK: every accepted event stored once in Postgres and the archive"
        if not problems
        else "FAILED",
    )
    for problem in problems:
        print(" -", problem)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
