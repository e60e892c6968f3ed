"""OpenTelemetry set-up shared by every service, from the standard `OTEL_*` variables.

`OTEL_TRACES_EXPORTER` and `OTEL_METRICS_EXPORTER` take `none` (our default: nothing is sent
unless asked for), `console`, or `otlp` (configured by `OTEL_EXPORTER_OTLP_*`, HTTP/protobuf).
`OTEL_SERVICE_NAME` overrides the service name. Spans and metrics never carry an IP address, a
User-Agent string or an API key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

# Providers are process-wide: the first service to start in a process installs them.
_configured: set[str] = set()
EXPORTERS = ("none", "console", "otlp")


class TelemetryConfigError(ValueError):
    """An `OTEL_*_EXPORTER` value we do not support."""


def _exporter_choice(environ: Mapping[str, str], variable: str) -> str:
    choice = environ.get(variable, "none").strip().lower() or "none"
    if choice not in EXPORTERS:
        raise TelemetryConfigError(
            f"{variable}: expected one of {', '.join(EXPORTERS)} (got {choice!r})"
        )
    return choice


def setup_telemetry(service: str, environ: Mapping[str, str] | None = None) -> None:
    """Install tracer and meter providers for `service` once per process."""
    environ = os.environ if environ is None else environ
    traces = _exporter_choice(environ, "OTEL_TRACES_EXPORTER")
    metric_choice = _exporter_choice(environ, "OTEL_METRICS_EXPORTER")
    if _configured:
        return
    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME", f"topup-{service}")})

    if traces != "none":
        provider = TracerProvider(resource=resource)
        if traces == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)

    if metric_choice != "none":
        reader: MetricReader
        if metric_choice == "console":
            reader = PeriodicExportingMetricReader(ConsoleMetricExporter())
        else:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))
    _configured.add(service)


def tracer(service: str) -> trace.Tracer:
    return trace.get_tracer(f"topup.{service}")


def meter(service: str) -> metrics.Meter:
    return metrics.get_meter(f"topup.{service}")
