"""The query service: the dashboard, its stats API and site management."""

from __future__ import annotations

from litestar import Litestar

from topup.settings import Settings, load_settings
from topup.telemetry import setup_telemetry
from topup.web import health_route, pool_lifespan


def create_app(settings: Settings | None = None) -> Litestar:
    settings = load_settings() if settings is None else settings
    setup_telemetry("query")
    return Litestar(
        logging_config=None,  # logging is the process's to configure, not the app's
        route_handlers=[health_route("query", uses_database=True)],
        lifespan=[pool_lifespan(settings)],
    )
