import subprocess
import sys

import pytest

from topup.telemetry import TelemetryConfigError, setup_telemetry


def test_unknown_exporter_is_refused():
    with pytest.raises(
        TelemetryConfigError, match="OTEL_TRACES_EXPORTER: expected one of none, console, otlp"
    ):
        setup_telemetry("ingest", {"OTEL_TRACES_EXPORTER": "zipkin"})


def test_console_exporter_prints_spans_with_the_service_name():
    code = (
        "from topup.telemetry import setup_telemetry, tracer\n"
        "setup_telemetry('ingest')\n"
        "with tracer('ingest').start_as_current_span('accept'): pass\n"
        "from opentelemetry import trace; trace.get_tracer_provider().shutdown()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"OTEL_TRACES_EXPORTER": "console", "PATH": ""},
    ).stdout
    assert '"name": "accept"' in out
    assert '"service.name": "topup-ingest"' in out
