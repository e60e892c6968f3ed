"""The ingest service: accepts events from browsers and servers and puts them on the buffer."""

from __future__ import annotations

from litestar import Litestar
from topup.settings import Settings, load_settings
from topup.telemetry import setup_telemetry
from topup.web import health_route


def create_app(settings: Settings | None = None) -> Litestar:
    settings = load_settings() if settings is None else settings
    setup_telemetry("ingest")
    return Litestar(route_handlers=[health_route("ingest", uses_database=False)])
