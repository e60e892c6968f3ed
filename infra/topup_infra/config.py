"""Deployment settings, from CDK context (`cdk deploy -c key=value` or cdk.json): never
hard-coded in the constructs."""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class DeployConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    stage: str = "prod"
    retention_days: int = 35
    recent_window_days: int = 30
    aurora_max_acu: float = 4.0
    aurora_auto_pause_minutes: int = 10
    network: Literal["public", "private"] = "public"
    """public: Aurora's TLS-only public endpoint, functions outside a VPC (no network cost);
    private: Aurora and its functions in private subnets behind one NAT gateway (network.py)."""
    ingest_buffer_seconds: int = 60
    ingest_buffer_mb: int = 1
    archive_writer: Literal["firehose", "process"] = "firehose"
    """firehose: process sends each row to the archive delivery streams, which write the Glue
    Iceberg tables; process: process appends each delivery to those tables itself (pyiceberg),
    without Firehose's charge per record (the cheapest deployment's)."""
    archive_buffer_seconds: int = 900
    archive_buffer_mb: int = 128
    athena_bytes_scanned_cutoff: int = 10 * 1024**3
    maintenance_hours: int = 1
    dashboard_domain: str | None = None
    auth_domain_prefix: str | None = None


def config_from_context(context: dict[str, Any]) -> DeployConfig:
    known = {f.name for f in msgspec.structs.fields(DeployConfig)}
    values = {k: v for k, v in context.items() if k in known}
    return msgspec.convert(values, DeployConfig, strict=False)
