"""What the three Litestar apps share: `GET /healthz`."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE


class Health(msgspec.Struct, frozen=True):
    status: str
    service: str
    database: str | None = None


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
