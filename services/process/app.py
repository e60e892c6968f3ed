"""The process service: turns Firehose deliveries into stored, privacy-filtered events."""

from __future__ import annotations

from litestar import Litestar

from topup.settings import Settings, load_settings
from topup.telemetry import setup_telemetry
from topup.web import health_route, pool_lifespan


def create_app(settings: Settings | None = None) -> Litestar:
    settings = load_settings() if settings is None else settings
    setup_telemetry("process")
    return Litestar(
        logging_config=None,  # logging is the process's to configure, not the app's
        route_handlers=[health_route("process", uses_database=True)],
        lifespan=[pool_lifespan(settings)],
    )
