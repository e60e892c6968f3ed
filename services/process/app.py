"""The process service: receives Firehose deliveries (`POST /firehose`) and stores their events.

It speaks the receiving side of Firehose's HTTP endpoint protocol: the access key header is
checked in constant time (401 when wrong), a gzip body is accepted, and the answer is a 200
echoing `requestId`, or an error with `errorMessage` that makes Firehose retry.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
from litestar import Litestar, Request, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.response import Response

from process import geo, user_agents
from process.archive import ArchiveUnavailableError, archive_from_settings
from process.deliveries import BadDeliveryError, Processor, read_delivery
from process.site_directory import SiteDirectory
from process.visitors import Salts
from topup.aws_secrets import resolve_secrets
from topup.database import CONNECTION_FAULTS, create_pool
from topup.settings import Settings, load_settings
from topup.telemetry import setup_telemetry
from topup.web import health_route
from topup.wire import DeliveryResponse

log = logging.getLogger(__name__)

# Faults that pass: Firehose retries the delivery later (with the same request id).
TRANSIENT = (
    *CONNECTION_FAULTS,
    asyncpg.CheckViolationError,  # e.g. a day partition dropped under us; the retry recreates it
    ArchiveUnavailableError,
)


def answer(request_id: str, status: int = 200, error: str | None = None) -> Response[Any]:
    body = DeliveryResponse(request_id, int(time.time() * 1000), error)
    return Response(body, status_code=status)


def internal_error(request: Request[Any, Any, State], exc: Exception) -> Response[Any]:
    """A fault of ours: logged, and answered in Firehose's shape so it retries."""
    if isinstance(exc, HTTPException):  # e.g. /healthz's 503: not a fault, an answer
        return Response({"detail": exc.detail}, status_code=exc.status_code)
    log.exception("delivery failed: %s", exc)
    request_id = request.headers.get("x-amz-firehose-request-id", "")
    return answer(request_id, 500, f"internal error: {type(exc).__name__}")


def create_app(settings: Settings | None = None) -> Litestar:
    settings = load_settings() if settings is None else settings
    setup_telemetry("process")
    if settings.firehose_access_key is None and settings.firehose_access_key_secret_arn is None:
        raise ValueError("process needs TOPUP_FIREHOSE_ACCESS_KEY (the key Firehose sends)")
    archive = archive_from_settings(settings)

    @post("/firehose", status_code=200)
    async def firehose(request: Request[Any, Any, State]) -> Response[Any]:
        """A Firehose HTTP endpoint delivery: `{requestId, timestamp, records: [{data}]}`."""
        request_id = request.headers.get("x-amz-firehose-request-id", "")
        given = request.headers.get("x-amz-firehose-access-key", "").encode()
        if not hmac.compare_digest(given, request.app.state.access_key):
            return answer(request_id, 401, "wrong or missing X-Amz-Firehose-Access-Key")
        try:
            delivery = read_delivery(await request.body(), request.headers.get("content-encoding"))
        except BadDeliveryError as exc:
            return answer(request_id, 400, str(exc))
        try:
            await request.app.state.processor.handle(delivery)
        except TRANSIENT as exc:
            log.warning("delivery %s failed, Firehose will retry: %s", delivery.request_id, exc)
            return answer(delivery.request_id, 503, f"transient failure: {type(exc).__name__}")
        return answer(delivery.request_id)

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        # Parser patterns and GeoIP data load here, not on the first delivery.
        user_agents.warm_up()
        geo.warm_up(settings.geoip_database)
        resolved = await resolve_secrets(settings)
        if resolved.database_url is None or resolved.firehose_access_key is None:
            raise RuntimeError("process needs TOPUP_DATABASE_URL (topup dev sets it)")
        app.state.access_key = resolved.firehose_access_key.encode()
        pool = await create_pool(
            resolved.database_url,
            max_size=settings.database_pool_size,
            connect_timeout_s=settings.database_connect_timeout_s,
            idle_session_s=settings.database_idle_session_s,
        )
        await archive.start()
        app.state.pool = pool
        app.state.processor = Processor(
            pool,
            archive,
            SiteDirectory(),
            Salts(),
            max_age=timedelta(days=settings.retention_days - 1),
        )
        try:
            yield
        finally:
            await archive.close()
            await pool.close()

    return Litestar(
        logging_config=None,  # logging is the process's to configure, not the app's
        route_handlers=[firehose, health_route("process", uses_database=True)],
        lifespan=[resources],
        exception_handlers={Exception: internal_error},
        request_max_body_size=70 * 1024 * 1024,  # Firehose's largest buffer, base64-encoded
    )
