"""The dashboard page and its two assets, served by the query service (no Node at run time,
nothing loaded from another host)."""

from __future__ import annotations

import hashlib
import importlib.resources
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.datastructures import ResponseHeader
from litestar.params import FromPath

TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "application/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


def security_headers(login_origin: str | None) -> list[ResponseHeader]:
    """Every response of the query service: no inline script, nothing from elsewhere (but the
    hosted login's token endpoint, when there is one), no framing."""
    connect = "'self'" + (f" {login_origin}" if login_origin else "")
    policy = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return [
        ResponseHeader(name="Content-Security-Policy", value=policy),
        ResponseHeader(name="X-Content-Type-Options", value="nosniff"),
        ResponseHeader(name="Referrer-Policy", value="same-origin"),
        ResponseHeader(name="X-Frame-Options", value="DENY"),
    ]


class Asset(msgspec.Struct, frozen=True):
    body: bytes
    etag: str
    media_type: str


def load_assets() -> dict[str, Asset]:
    folder = importlib.resources.files("query.dashboard")
    assets = {}
    for name, media_type in TYPES.items():
        body = (folder / name).read_bytes()
        assets[name] = Asset(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', media_type)
    return assets


ASSETS = load_assets()


def _serve(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    asset = ASSETS.get(name)
    if asset is None or (name == "index.html" and request.url.path.startswith("/assets/")):
        return Response(b"not found\n", status_code=404, media_type="text/plain")
    # Revalidated on every load (cheap with the ETag), so a new release shows at once.
    headers = {"ETag": asset.etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@get("/", include_in_schema=False)
async def dashboard(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The dashboard page."""
    return _serve(request, "index.html")


@get("/assets/{name:str}", include_in_schema=False)
async def asset(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    return _serve(request, name)
