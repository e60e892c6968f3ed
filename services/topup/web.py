"""What the three Litestar apps share: the database pool's life-cycle and `GET /healthz`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
from litestar import Litestar, Request, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE

from topup.settings import Settings


class Health(msgspec.Struct, frozen=True):
    status: str
    service: str
    database: str | None = None


def pool_lifespan(settings: Settings) -> Callable[[Litestar], Any]:
    """Open the asyncpg pool at start-up (into `app.state.pool`) and close it at shut-down."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        from topup.database import create_pool

        if settings.database_url is None:
            raise RuntimeError("TOPUP_DATABASE_URL is not set (topup dev sets it for its services)")
        app.state.pool = await create_pool(
            settings.database_url, max_size=settings.database_pool_size
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    return lifespan


def health_route(service: str, *, uses_database: bool) -> Any:
    """`GET /healthz`: 200 when the service (and its database, if it has one) answers, else 503."""

    @get("/healthz", include_in_schema=False)
    async def healthz(request: Request[Any, Any, State]) -> Health:
        if not uses_database:
            return Health("ok", service)
        try:
            async with request.app.state.pool.acquire(timeout=2) as conn:
                await conn.fetchval("SELECT 1")
        except Exception as exc:
            raise HTTPException(
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"database unavailable: {type(exc).__name__}",
            ) from None
        return Health("ok", service, "ok")

    return healthz
