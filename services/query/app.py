"""The query service: the Stats API, site management, and (from the dashboard issue on) the
dashboard page itself. Every call names its caller; a site of another account is as missing
as one that does not exist."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import msgspec
from litestar import Litestar, Request, Response, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, HTTPException, NotAuthorizedException
from litestar.openapi import OpenAPIConfig

from query.archive_reader import archive_reader_from_settings
from query.auth import Unauthenticated, authenticate, verifier_from_settings
from query.dashboard_routes import asset, dashboard, security_headers
from query.management import AccountController, SiteController
from query.stats_request import InvalidQueryError
from query.stats_routes import export_csv, prop_keys, query_stats, realtime
from topup.accounts import Account, NotFoundError
from topup.aws_secrets import resolve_secrets
from topup.database import CONNECTION_FAULTS, create_pool
from topup.settings import Settings, load_settings
from topup.sites import InvalidSiteError
from topup.telemetry import setup_telemetry
from topup.web import health_route

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> Response[dict[str, Any]]:
    """Every error answer: `error` for people, `status_code` and `detail` as the OpenAPI
    document describes errors (Litestar's own shape)."""
    return Response(
        {"error": message, "status_code": status, "detail": message}, status_code=status
    )


class _Request(Request[Any, Any, State]):
    """Litestar decodes the management API's bodies with msgspec, which raises invalid UTF-8 in
    a string and arrays nested thousands deep as UnicodeDecodeError and RecursionError, not as a
    DecodeError: here they are a 400 like any malformed body (the Stats API decodes its own
    with `topup.wire.decode_untrusted`)."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except (UnicodeDecodeError, RecursionError):
            message = "malformed JSON body: invalid UTF-8 or nested too deeply"
            raise ClientException(message) from None


def _unexpected(request: Request[Any, Any, State], exc: Exception) -> Response[Any]:
    if isinstance(exc, HTTPException):  # 400, 401, 403, 404, 405, 413…: answers, not faults
        return _error(exc.status_code, exc.detail)
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError):  # Postgres text holds no NUL
        return _error(400, "text may not contain NUL (\\u0000) characters")
    if isinstance(exc, CONNECTION_FAULTS):
        log.warning("%s %s: database unavailable: %r", request.method, request.url.path, exc)
        answer = _error(503, "database unavailable; retry shortly")
        answer.headers["Retry-After"] = "5"
        return answer
    log.exception("%s %s failed", request.method, request.url.path)
    return _error(500, "internal error")


def login_origin(settings: Settings) -> str | None:
    if not settings.oidc_login_url:
        return None
    parts = urlsplit(settings.oidc_login_url)
    return f"{parts.scheme}://{parts.netloc}"


class AuthConfig(msgspec.Struct):
    """How the dashboard may sign in: always with an API key; with the hosted login if set."""

    api_keys: bool
    authorize_url: str | None = None
    token_url: str | None = None
    client_id: str | None = None


def create_app(settings: Settings | None = None) -> Litestar:
    settings = load_settings() if settings is None else settings
    setup_telemetry("query")
    verifier = verifier_from_settings(settings)

    async def provide_conn(state: State) -> AsyncIterator[asyncpg.Connection]:
        async with state.pool.acquire() as conn:
            yield conn

    async def provide_account(
        request: Request[Any, Any, State], conn: NamedDependency[asyncpg.Connection]
    ) -> Account:
        try:
            return await authenticate(conn, request.headers.get("authorization"), verifier)
        except Unauthenticated as exc:
            raise NotAuthorizedException(str(exc)) from None

    @asynccontextmanager
    async def pool(app: Litestar) -> AsyncIterator[None]:
        resolved = await resolve_secrets(settings)
        if resolved.database_url is None:
            raise RuntimeError("query needs TOPUP_DATABASE_URL (topup dev sets it)")
        app.state.settings = settings
        app.state.archive = archive_reader_from_settings(settings)
        app.state.pool = await create_pool(
            resolved.database_url,
            max_size=settings.database_pool_size,
            connect_timeout_s=settings.database_connect_timeout_s,
            idle_session_s=settings.database_idle_session_s,
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    @get("/api/auth/config", tags=["account"])
    async def auth_config() -> AuthConfig:
        """Sign-in options for the dashboard (no credentials needed)."""
        if settings.oidc_login_url and settings.oidc_audience:
            base = settings.oidc_login_url.rstrip("/")
            return AuthConfig(True, f"{base}/oauth2/authorize", f"{base}/oauth2/token",
                              settings.oidc_audience)  # fmt: skip
        return AuthConfig(True)

    cors = (
        CORSConfig(
            allow_origins=[settings.dashboard_origin],
            allow_headers=["Authorization", "Content-Type"],
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_credentials=False,
        )
        if settings.dashboard_origin
        else None
    )
    return Litestar(
        route_handlers=[
            dashboard,
            asset,
            auth_config,
            AccountController,
            SiteController,
            query_stats,
            realtime,
            export_csv,
            prop_keys,
            health_route("query", uses_database=True),
        ],
        dependencies={
            "conn": Provide(provide_conn),
            "account": Provide(provide_account),
            "settings": Provide(lambda: settings, sync_to_thread=False, use_cache=True),
        },
        exception_handlers={
            NotFoundError: lambda request, exc: _error(404, "not found"),
            InvalidSiteError: lambda request, exc: _error(400, str(exc)),
            InvalidQueryError: lambda request, exc: _error(400, str(exc)),
            Exception: _unexpected,
        },
        lifespan=[pool],
        request_class=_Request,
        cors_config=cors,
        response_headers=security_headers(login_origin(settings)),
        openapi_config=OpenAPIConfig(title="TopUp Analytics", version="0.1.0", path="/schema"),
        logging_config=None,  # logging is the process's to configure, not the app's
    )
