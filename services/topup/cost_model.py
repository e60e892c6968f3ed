"""`topup cost`: what a month of traffic costs on AWS, per million events, itemised by service.

Inputs are figures measured by `make bench` (`loadtest/results/latest.json`, section
`cost_inputs`); prices come from `topup/data/aws_prices.json` (each with its unit and source
page). Two deployments are priced:

- **default**: as `infra/` deploys it — events through CloudFront, the ingest stream delivering
  every 60 s (so with steady traffic Aurora never pauses), `network: public` (functions outside
  a VPC, Aurora's TLS-only public endpoint: its public IPv4 address is the network's only cost).
- **cheapest** documented (infra/README.md): events sent straight to the ingest function URL
  (the snippet's `data-api`; no CloudFront for events, the dashboard still uses it), the ingest
  stream buffering up to Firehose's 900 s maximum (and 4 MiB) with Aurora pausing after 5 idle
  minutes, and process appending to the archive's Glue tables itself instead of sending a
  Firehose record per row (`-c topup='{"ingest_buffer_seconds": 900, "ingest_buffer_mb": 4,
  "archive_writer": "process", "aurora_auto_pause_minutes": 5}'`). After each delivery Aurora
  stays awake for the idle minute before it ends the function's session, then the 5 minutes
  before it pauses, and it takes ~15 s to resume — 375 s of every 900 (42 %) when a delivery
  comes every 900 s; more when the buffer fills sooner. `topup maintain` (hourly) and
  dashboard views wake it too; not counted.

`network: private` adds a NAT gateway (about $33 a month and $0.045 per GB), priced by neither.

Fixed monthly costs (Aurora's active floor, its address, secrets) are shown as their own lines
and spread over the volume. Dashboard use is priced from its measured cost per view (Postgres
CPU for the overview; Athena's scanned bytes when the range is in the archive) times the views
a month given on the command line, since it grows with readers, not with events.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from pathlib import Path
from typing import Any

import msgspec

from topup.archive_layout import COLUMNS

HOURS_PER_MONTH = 730
RECORD_ROUNDING = 5 * 1024  # Firehose bills each record as a multiple of 5 KB
AURORA_IO_BYTES = 4 * 1024  # Aurora counts log writes in 4 KB units (small ones batched)
ATHENA_MIN_QUERY_BYTES = 10 * 1024**2  # Athena bills at least 10 MB a query
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
# The cheapest variant's ingest buffer (infra/: ingest_buffer_seconds, ingest_buffer_mb): a
# delivery when either is reached.
CHEAPEST_BUFFER_S, CHEAPEST_BUFFER_MB = 900, 4
# Aurora's day in the cheapest variant (the functions' TOPUP_DATABASE_IDLE_SESSION_S,
# aurora_auto_pause_minutes; AWS's typical resume time).
IDLE_SESSION_S = 60
AUTO_PAUSE_S = 300
RESUME_S = 15
PRICE_TODAY = 10.0  # the product's price per million events
ORIGINAL_ESTIMATE = 1.74  # the cost per million first quoted, never derived


class CostInputs(msgspec.Struct, frozen=True):
    """Per-event and per-request figures, measured by `make bench`."""

    events_per_request: float = 1.0  # the tracker sends each page view when it happens
    ingest_record_bytes: float = 700.0
    ingest_lambda_ms: float = 0.08
    process_ms_per_event: float = 0.045
    sessions_per_event: float = 0.29
    archive_record_bytes: float = 400.0
    archive_bytes_per_event: float = 60.0
    # Files pyiceberg writes to append one delivery to one table (its data files, manifest,
    # manifest list and metadata file): S3 PUTs when process writes the archive itself.
    archive_files_per_commit: float = 4.0
    postgres_bytes_per_event: float = 400.0
    # The database server's CPU and WAL per stored event (process benchmark); WAL includes
    # full-page images Aurora never writes, so the I/O priced from it is an upper bound.
    postgres_cpu_us_per_event: float = 11.0
    wal_bytes_per_event: float = 600.0
    # One dashboard overview (8 queries, 30 days): the database's CPU seconds per million
    # events in the range, and what Athena scans per event in the range (query benchmark).
    overview_cpu_s_per_million_events: float = 5.0
    archive_overview_bytes_per_event: float = 220.0
    archive_overview_queries: int = 8
    measured: bool = False  # False: these defaults, not a measurement


class Usage(msgspec.Struct, frozen=True):
    """How the dashboard is used in the month: given by the operator, not measured."""

    views: int = 300  # overviews of the last 30 days, answered by Postgres
    archive_views: int = 30  # overviews of older ranges, answered by Athena


class Line(msgspec.Struct):
    service: str
    item: str
    monthly_usd: float
    per_million_usd: float
    fixed: bool = False


class Deployment(msgspec.Struct):
    name: str
    total_monthly_usd: float
    total_per_million: float
    lines: list[Line]


class CostReport(msgspec.Struct):
    events_per_month: int
    inputs: CostInputs
    usage: Usage
    default: Deployment
    cheapest: Deployment
    price_per_million: float = PRICE_TODAY
    original_estimate_per_million: float = ORIGINAL_ESTIMATE
    prices_status: str = ""


def load_prices() -> dict[str, Any]:
    text = (importlib.resources.files("topup.data") / "aws_prices.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def load_inputs(results: Path | None) -> CostInputs:
    if results is None or not results.exists():
        return CostInputs()
    section = json.loads(results.read_text()).get("results", {}).get("cost_inputs")
    if not section:
        return CostInputs()
    return msgspec.convert(section | {"measured": True}, CostInputs)


def aurora_awake_fraction(delivery_every_s: float) -> float:
    """The share of time Aurora runs when the only traffic is a delivery every so often: each one
    wakes it, and it pauses once the idle session has ended and the pause delay has passed."""
    return min(1.0, (RESUME_S + IDLE_SESSION_S + AUTO_PAUSE_S) / delivery_every_s)


def deliveries_per_month(
    events: int, inputs: CostInputs, buffer_s: float, buffer_mb: float
) -> float:
    """How often the ingest stream delivers: every `buffer_s`, or sooner when the records fill
    `buffer_mb` first."""
    requests = events / inputs.events_per_request
    by_size = requests * inputs.ingest_record_bytes / (buffer_mb * 1024**2)
    return max(SECONDS_PER_MONTH / buffer_s, by_size)


# Per delivery and table when process appends to the Glue tables: pyiceberg reads the table's
# metadata file and manifest list (GETs; an estimate, not measured) and Glue's GetTable and
# UpdateTable commit it.
ARCHIVE_GETS_PER_COMMIT = 2
GLUE_REQUESTS_PER_COMMIT = 2


def _billed_record(size: float) -> float:
    return math.ceil(max(size, 1) / RECORD_ROUNDING) * RECORD_ROUNDING


def _acu_hours(cpu_seconds: float, prices: dict[str, Any]) -> float:
    return cpu_seconds / prices["capacity"]["aurora_vcpu_per_acu"]["value"] / 3600


def price(
    events: int,
    inputs: CostInputs,
    prices: dict[str, Any],
    *,
    cheapest: bool,
    usage: Usage | None = None,
) -> Deployment:
    usage = usage or Usage()
    p = {name: entry["usd"] for name, entry in prices["prices"].items()}
    requests = events / inputs.events_per_request
    gb = 1024**3
    lines: list[tuple[str, str, float, bool]] = []

    def add(service: str, item: str, usd: float, fixed: bool = False) -> None:
        lines.append((service, item, usd, fixed))

    if not cheapest:
        add("CloudFront", "event requests", requests * p["cloudfront_https_request"])
        add(
            "CloudFront",
            "answers out (~0.5 KB each)",
            requests * 512 / gb * p["cloudfront_data_out_gb"],
        )
    ingest_ms = max(1, math.ceil(inputs.ingest_lambda_ms))  # Lambda bills whole milliseconds
    add("Lambda", "ingest requests", requests * p["lambda_request"])
    add(
        "Lambda",
        "ingest compute (512 MB)",
        requests * ingest_ms / 1000 * 0.5 * p["lambda_arm_gb_second"],
    )
    add(
        "Lambda",
        "process compute (1 GB)",
        events * inputs.process_ms_per_event / 1000 * 1.0 * p["lambda_arm_gb_second"],
    )
    add(
        "Firehose",
        "ingest stream (records rounded to 5 KB)",
        requests * _billed_record(inputs.ingest_record_bytes) / gb * p["firehose_ingest_gb"],
    )
    if cheapest:
        deliveries = deliveries_per_month(events, inputs, CHEAPEST_BUFFER_S, CHEAPEST_BUFFER_MB)
        active = aurora_awake_fraction(SECONDS_PER_MONTH / deliveries)
        commits = deliveries * len(COLUMNS)  # a commit per archive table
        puts = commits * inputs.archive_files_per_commit
        gets = commits * ARCHIVE_GETS_PER_COMMIT
        add(
            "S3",
            f"archive appends ({deliveries:,.0f} deliveries: {puts:,.0f} PUTs, {gets:,.0f} GETs)",
            puts * p["s3_put_request"] + gets * p["s3_get_request"],
        )
        add(
            "Glue",
            "catalog requests (GetTable, UpdateTable per table and delivery)",
            commits * GLUE_REQUESTS_PER_COMMIT * p["glue_catalog_request"],
        )
    else:
        active = 1.0  # a delivery every minute: Aurora never pauses
        archive_records = events * (1 + inputs.sessions_per_event)
        add(
            "Firehose",
            "archive streams (a record per row, rounded to 5 KB)",
            archive_records
            * _billed_record(inputs.archive_record_bytes)
            / gb
            * (p["firehose_ingest_gb"] + p["firehose_iceberg_gb"]),
        )
    add(
        "S3",
        "archive storage added this month",
        events * inputs.archive_bytes_per_event / gb * p["s3_standard_gb_month"],
    )
    add(
        "Aurora",
        "storage (35 days of events)",
        events * 35 / 30 * inputs.postgres_bytes_per_event / gb * p["aurora_storage_gb_month"],
    )
    add(
        "Aurora",
        f"write I/O ({inputs.wal_bytes_per_event:.0f} B of WAL per event, in 4 KB units)",
        events * inputs.wal_bytes_per_event / AURORA_IO_BYTES * p["aurora_io_request"],
    )
    # Work above the floor, priced as if none of it fitted in the floor's idle capacity (an
    # upper bound): dashboard bursts scale Aurora up; steady writes mostly fit the floor.
    add(
        "Aurora",
        f"compute for writing ({inputs.postgres_cpu_us_per_event:.0f} µs CPU per event)",
        _acu_hours(events * inputs.postgres_cpu_us_per_event / 1e6, prices) * p["aurora_acu_hour"],
    )
    millions_in_range = events / 1_000_000  # an overview covers the last 30 days, ~a month
    overview_cpu = inputs.overview_cpu_s_per_million_events * millions_in_range
    add(
        "Aurora",
        f"compute for {usage.views:,} dashboard views ({overview_cpu:.1f} s CPU each)",
        _acu_hours(usage.views * overview_cpu, prices) * p["aurora_acu_hour"],
    )
    scanned = max(
        inputs.archive_overview_queries * ATHENA_MIN_QUERY_BYTES,
        events * inputs.archive_overview_bytes_per_event,
    )
    add(
        "Athena",
        f"{usage.archive_views:,} archive dashboard views ({scanned / 1024**2:,.0f} MB each)",
        usage.archive_views * scanned / 1024**4 * p["athena_tb_scanned"],
    )
    add(
        "Aurora",
        f"compute floor: 0.5 ACU awake {active:.0%} of the month",
        0.5 * HOURS_PER_MONTH * active * p["aurora_acu_hour"],
        fixed=True,
    )
    # Both variants keep infra/'s public network and its three secrets (database, Firehose
    # access key, CloudFront origin header).
    add(
        "VPC",
        "Aurora's public IPv4 address",
        HOURS_PER_MONTH * p["public_ipv4_address_hour"],
        fixed=True,
    )
    add("Secrets Manager", "3 secrets", 3 * p["secrets_manager_secret_month"], fixed=True)
    millions = events / 1_000_000
    built = [Line(s, i, round(u, 4), round(u / millions, 4), f) for s, i, u, f in lines]
    total = sum(u for _, _, u, _ in lines)
    return Deployment(
        name="cheapest" if cheapest else "default",
        total_monthly_usd=round(total, 2),
        total_per_million=round(total / millions, 4),
        lines=built,
    )


def report(
    events: int, inputs: CostInputs, prices: dict[str, Any], usage: Usage | None = None
) -> CostReport:
    usage = usage or Usage()
    return CostReport(
        events_per_month=events,
        inputs=inputs,
        usage=usage,
        default=price(events, inputs, prices, cheapest=False, usage=usage),
        cheapest=price(events, inputs, prices, cheapest=True, usage=usage),
        prices_status=prices.get("status", ""),
    )


def render(r: CostReport) -> str:
    out = [
        f"TopUp Analytics on AWS ({r.events_per_month:,} events a month, us-east-1; "
        f"dashboard views: {r.usage.views:,} recent, {r.usage.archive_views:,} over the archive)"
    ]
    if not r.inputs.measured:
        out.append("inputs: defaults, not measured (run `make bench` first for measured ones)")
    labels = {
        id(line): f"  {line.service}: {line.item}{' (fixed)' if line.fixed else ''}"
        for deployment in (r.default, r.cheapest)
        for line in deployment.lines
    }
    width = max(len(label) for label in labels.values()) + 1
    for deployment in (r.default, r.cheapest):
        out.append("")
        out.append(f"{deployment.name} deployment".ljust(width + 2) + "per month   per million")
        for line in deployment.lines:
            out.append(
                f"{labels[id(line)]:<{width}} ${line.monthly_usd:>9.2f}   "
                f"${line.per_million_usd:>9.4f}"
            )
        out.append(
            f"{'  total':<{width}} ${deployment.total_monthly_usd:>9.2f}   "
            f"${deployment.total_per_million:>9.4f}"
        )
    out.append("")
    out.append(
        f"price ${r.price_per_million:.2f} per million; first estimate "
        f"${r.original_estimate_per_million:.2f}; goal for the cheapest at 10M/month: $0.50"
    )
    out.append(f"prices: {r.prices_status}")
    return "\n".join(out)
