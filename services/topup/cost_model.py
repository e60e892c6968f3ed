"""`topup cost`: what a month of traffic costs on AWS, per million events, itemised by service.

Inputs are figures measured by `make bench` (`loadtest/results/latest.json`, section
`cost_inputs`); prices come from `topup/data/aws_prices.json` (each with its unit and source
page). Two deployments are priced:

- **default**: as `infra/` deploys it — events through CloudFront, the ingest stream delivering
  every 60 s (so with steady traffic Aurora never pauses), three interface endpoints in one AZ.
- **cheapest** documented (infra/README.md): events sent straight to the ingest function URL
  (the snippet's `data-api`; no CloudFront for events, the dashboard still uses it), and the
  ingest stream buffering at Firehose's 900 s maximum with Aurora pausing after 5 idle minutes
  (`-c topup='{"ingest_buffer_seconds": 900, "aurora_auto_pause_minutes": 5}'`), so Aurora is
  awake about a third of the time.

Fixed monthly costs (Aurora's active floor, endpoints, secrets) are shown as their own lines
and spread over the volume.
"""

from __future__ import annotations

import importlib.resources
import json
import math
from pathlib import Path
from typing import Any

import msgspec

HOURS_PER_MONTH = 730
RECORD_ROUNDING = 5 * 1024  # Firehose bills each record as a multiple of 5 KB
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
    postgres_bytes_per_event: float = 400.0
    measured: bool = False  # False: these defaults, not a measurement


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


def _billed_record(size: float) -> float:
    return math.ceil(max(size, 1) / RECORD_ROUNDING) * RECORD_ROUNDING


def price(events: int, inputs: CostInputs, prices: dict[str, Any], *, cheapest: bool) -> Deployment:
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
    add("Aurora", "I/O (~2 writes per event, an estimate)", events * 2 * p["aurora_io_request"])
    active = 1 / 3 if cheapest else 1.0
    add(
        "Aurora",
        f"compute floor: 0.5 ACU awake {active:.0%} of the month",
        0.5 * HOURS_PER_MONTH * active * p["aurora_acu_hour"],
        fixed=True,
    )
    # Both variants keep the network of infra/: three endpoints in one AZ and four secrets.
    add(
        "VPC",
        "3 interface endpoints in one AZ",
        3 * HOURS_PER_MONTH * p["vpc_interface_endpoint_az_hour"],
        fixed=True,
    )
    add("Secrets Manager", "4 secrets", 4 * p["secrets_manager_secret_month"], fixed=True)
    millions = events / 1_000_000
    built = [Line(s, i, round(u, 4), round(u / millions, 4), f) for s, i, u, f in lines]
    total = sum(u for _, _, u, _ in lines)
    return Deployment(
        name="cheapest" if cheapest else "default",
        total_monthly_usd=round(total, 2),
        total_per_million=round(total / millions, 4),
        lines=built,
    )


def report(events: int, inputs: CostInputs, prices: dict[str, Any]) -> CostReport:
    return CostReport(
        events_per_month=events,
        inputs=inputs,
        default=price(events, inputs, prices, cheapest=False),
        cheapest=price(events, inputs, prices, cheapest=True),
        prices_status=prices.get("status", ""),
    )


def render(r: CostReport) -> str:
    out = [f"TopUp Analytics on AWS ({r.events_per_month:,} events a month, us-east-1)"]
    if not r.inputs.measured:
        out.append("inputs: defaults, not measured (run `make bench` first for measured ones)")
    for deployment in (r.default, r.cheapest):
        out.append("")
        out.append(f"{deployment.name} deployment".ljust(58) + "per month   per million")
        for line in deployment.lines:
            tag = " (fixed)" if line.fixed else ""
            label = f"  {line.service}: {line.item}{tag}"
            out.append(f"{label:<56} ${line.monthly_usd:>9.2f}   ${line.per_million_usd:>9.4f}")
        out.append(
            f"  {'total':<54} ${deployment.total_monthly_usd:>9.2f}   "
            f"${deployment.total_per_million:>9.4f}"
        )
    out.append("")
    out.append(
        f"price ${r.price_per_million:.2f} per million; first estimate "
        f"${r.original_estimate_per_million:.2f}; goal for the cheapest at 10M/month: $0.50"
    )
    out.append(f"prices: {r.prices_status}")
    return "\n".join(out)
