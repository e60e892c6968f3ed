"""`make bench`: every stage's benchmark beside its baseline, measured in the same run.

Writes `loadtest/results/latest.json` and prints a table. `--quick` (the default under CI) keeps
each run CI-sized; `--full` gives the README's numbers. `--only NAME…` runs some benchmarks and
keeps the others' last figures; each result records the mode it was measured in. Each benchmark
reports ratios against a baseline measured in the same run, never a wall-clock pass/fail.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from topup.database import connect, migrate
from topup.ids import new_id
from topup.local.embedded_postgres import database
from topup.settings import load_settings

RESULTS = Path(__file__).parent / "results" / "latest.json"

Benchmark = Callable[[str, bool], Awaitable[dict[str, Any]]]


async def raw_copy(database_url: str, full: bool) -> dict[str, Any]:
    """Rows/s of a plain asyncpg COPY of event rows: the ceiling process is compared with."""
    rows_total = 1_000_000 if full else 100_000
    conn = await connect(database_url)
    try:
        await migrate(conn)
        await conn.execute("SELECT topup_create_partitions(current_date, current_date)")
        site = new_id()
        now = datetime.now(UTC)
        rows = [
            (new_id(), site, now, i // 5, None, "pageview", "example.com", f"/page/{i % 50}", None)
            for i in range(rows_total)
        ]
        columns = [
            "event_id", "site_id", "ts", "session_id", "visitor_id", "name", "hostname",
            "pathname", "props",
        ]  # fmt: skip
        started = time.perf_counter()
        await conn.copy_records_to_table("events", records=rows, columns=columns)
        elapsed = time.perf_counter() - started
        await conn.execute("DELETE FROM events WHERE site_id = $1", site)
    finally:
        await conn.close()
    return {
        "rows": rows_total,
        "seconds": round(elapsed, 3),
        "rows_per_s": round(rows_total / elapsed),
    }


async def ingest(database_url: str, full: bool) -> dict[str, Any]:
    from loadtest import bench_ingest

    # The ingest benchmark drives its own event loops (ASGI in-process, Lambda invocations).
    return await asyncio.to_thread(bench_ingest.run, full)


async def process(database_url: str, full: bool) -> dict[str, Any]:
    from loadtest import bench_process

    return await bench_process.run(database_url, full)


async def cold_start(database_url: str, full: bool) -> dict[str, Any]:
    """Import time of each Lambda handler module (median of 5 fresh interpreters), and the
    tracker's size: what a cold start and a first page view pay."""
    import gzip

    from loadtest.bench_ingest import import_seconds

    env = {
        "TOPUP_SINK": "firehose",
        "TOPUP_FIREHOSE_ACCESS_KEY": "bench",
        "TOPUP_ARCHIVE": "firehose",
    }
    result: dict[str, Any] = {}
    for service in ("ingest", "process", "query"):
        seconds = await asyncio.to_thread(import_seconds, f"{service}.handler", env)
        result[f"import_{service}_handler_s"] = round(seconds, 3)
    dist = Path(__file__).parent.parent / "services" / "ingest" / "tracker" / "dist"
    for name in ("script.js", "script.links.js"):
        body = (dist / name).read_bytes()
        result[f"{name}_bytes_gzipped"] = len(gzip.compress(body, compresslevel=9))
    return result


async def query(database_url: str, full: bool) -> dict[str, Any]:
    from loadtest import bench_query

    return await bench_query.run(database_url, full)


async def _archive_bytes_per_event(database_url: str, events: int = 50_000) -> float:
    """Parquet bytes per event in a local archive the generator writes (one file per 50k-event
    append, as Firehose writes one per buffer): what S3 stores per event."""
    from loadtest.generate import generate

    with tempfile.TemporaryDirectory(prefix="topup-bench-archive-") as archive:
        await generate(database_url, events, days=30, seed=5, archive=Path(archive))
        parquet = await asyncio.to_thread(_parquet_bytes, Path(archive))
    return round(parquet / events, 1)


async def _archive_files_per_commit(deliveries: int = 5, events: int = 2_000) -> float:
    """Files pyiceberg writes to append one delivery (a site's events of one day) to one archive
    table: its data file, manifest, manifest list and metadata file. S3 PUTs, when process
    appends to the Glue tables itself."""
    from process.archive import LocalArchive
    from process.rows import EventRow, InitialRow

    site, now = new_id(), datetime.now(UTC)

    def begins(event: EventRow) -> InitialRow:  # a session's first row, attributes unknown
        known = {"event_id": event.event_id, "site_id": site, "ts": now, "session_id": 0,
                 "hostname": "example.com", "entry_page": "/"}  # fmt: skip
        return InitialRow(**dict.fromkeys(InitialRow.__struct_fields__) | known)

    with tempfile.TemporaryDirectory(prefix="topup-bench-commits-") as root:
        archive = LocalArchive(Path(root))
        await archive.start()
        warehouse = Path(root) / "warehouse"
        before = sum(1 for f in warehouse.rglob("*") if f.is_file())
        for d in range(deliveries):
            rows = [EventRow(new_id(), site, now, d * events + i, None, "pageview",
                             "example.com", f"/{i % 50}", None) for i in range(events)]  # fmt: skip
            await archive.write(rows, [begins(e) for e in rows[::3]])  # ~0.3 sessions an event
        written = sum(1 for f in warehouse.rglob("*") if f.is_file()) - before
        await archive.close()
    return round(written / (deliveries * 2), 2)


def _parquet_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*.parquet"))


def _from_process(result: dict[str, Any]) -> dict[str, Any]:
    inputs = {
        "process_ms_per_event": round(1000 / result["process_events_per_s"], 4),
        "sessions_per_event": result["sessions_per_event"],
        "wal_bytes_per_event": result["wal_bytes_per_event"],
    }
    if result.get("postgres_cpu_us_per_event") is not None:
        inputs["postgres_cpu_us_per_event"] = result["postgres_cpu_us_per_event"]
    return inputs


def _from_query(result: dict[str, Any]) -> dict[str, Any]:
    in_range = result["overview_events_in_range"]
    inputs = {
        "archive_overview_bytes_per_event": round(
            result["archive_overview_scanned_bytes"] / in_range, 1
        ),
        "archive_overview_queries": result["archive_overview_queries"],
    }
    if result.get("overview_postgres_cpu_s") is not None:
        inputs["overview_cpu_s_per_million_events"] = round(
            result["overview_postgres_cpu_s"] / (in_range / 1_000_000), 3
        )
    return inputs


async def _postgres_bytes_per_event(database_url: str, last: dict[str, Any]) -> dict[str, Any]:
    """Table and index bytes per stored event, over what the benchmarks before wrote; with
    nothing written in this run (`--only cost_inputs`), the last run's figure."""
    conn = await connect(database_url)
    try:
        await migrate(conn)
        rows = await conn.fetchval("SELECT count(*) FROM events")
        if not rows:
            return {k: v for k, v in last.items() if k == "postgres_bytes_per_event"}
        size = await conn.fetchval(
            """SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid"""
        )
        size += await conn.fetchval(
            "SELECT pg_total_relation_size('events') + pg_total_relation_size('initial_events')"
        )
        return {"postgres_bytes_per_event": round(int(size) / rows, 1)}
    finally:
        await conn.close()


async def cost_inputs(database_url: str, full: bool) -> dict[str, Any]:
    """What `topup cost` needs per event, measured here or by the benchmarks before it (in this
    run, else the last run's figures in latest.json)."""
    from loadtest import bench_process
    from loadtest.traffic import hits
    from topup.wire import encode_record

    site = new_id()
    sample = [
        bench_process.ingested(site, h)
        for h in itertools.islice(hits(5, "example.com", 2000), 5000)
    ]
    record_bytes = statistics.fmean(len(encode_record([e])) for e in sample)
    # An archive record is one stored row as JSON (ids, ts, hashes, page, props).
    archive_bytes = statistics.fmean(len(e.url) + len(e.name) + 260 for e in sample)
    inputs: dict[str, Any] = {
        "ingest_record_bytes": round(record_bytes, 1),
        "archive_record_bytes": round(archive_bytes, 1),
        "events_per_request": 1.0,
    }
    known = (
        json.loads(RESULTS.read_text())["results"] if RESULTS.exists() else {}
    ) | RESULTS_SO_FAR
    if "ingest" in known:
        inputs["ingest_lambda_ms"] = known["ingest"]["lambda_invocation_us"] / 1000
    if "process" in known:
        inputs |= _from_process(known["process"])
    if "query" in known:
        inputs |= _from_query(known["query"])
    inputs |= await _postgres_bytes_per_event(database_url, known.get("cost_inputs", {}))
    # After the Postgres figure, which these 50k generated events would skew on an empty server.
    inputs["archive_bytes_per_event"] = await _archive_bytes_per_event(database_url)
    inputs["archive_files_per_commit"] = await _archive_files_per_commit()
    return inputs


BENCHMARKS: dict[str, Benchmark] = {
    "postgres_raw_copy": raw_copy,
    "ingest": ingest,
    "process": process,
    "cold_start": cold_start,
    "query": query,
    "cost_inputs": cost_inputs,  # last: it reads what the others measured
}
RESULTS_SO_FAR: dict[str, Any] = {}


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "system": platform.platform(),
    }


async def run_all(database_url: str, full: bool, only: list[str] | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, bench in BENCHMARKS.items():
        if only and name not in only:
            continue
        measured = await bench(database_url, full)
        # Each result says its mode: a partial run (--only) merges into the last full file.
        results[name] = RESULTS_SO_FAR[name] = {"mode": "full" if full else "quick"} | measured
        print(f"{name:<28} {json.dumps(results[name])}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="README-sized runs")
    mode.add_argument("--quick", action="store_true", help="CI-sized runs (default)")
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    args = parser.parse_args()
    settings = load_settings()
    with contextlib.ExitStack() as stack:
        if settings.database_url is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="topup-bench-"))
            settings = load_settings(data_dir=tmp)
        ready = stack.enter_context(database(settings))
        assert ready.database_url is not None
        results = asyncio.run(run_all(ready.database_url, args.full, args.only))
    if args.only and RESULTS.exists():
        # A partial run updates its benchmarks and keeps the others' last figures.
        results = json.loads(RESULTS.read_text())["results"] | results
    report = {
        "mode": "full" if args.full else "quick",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
