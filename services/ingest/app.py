"""The ingest service: accepts events from browsers and servers and puts them on the buffer.

It runs once per browser request, so it does the least it can: decode and check the body, stamp
each event with an id and the time, copy the request context process needs, put one record on
the buffer, answer 202. It never touches the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Litestar, Request, get, route
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Response
from litestar.types import ASGIApp, Receive, Scope, Send

from ingest.body import MAX_BATCH, MAX_BODY_BYTES, BadEventError, Event, parse_body
from ingest.context import parse_networks, request_context
from ingest.sinks import Sink, SinkUnavailableError, sink_from_settings
from ingest.tracker_files import CACHE_CONTROL, load_tracker_files
from topup.ids import new_id
from topup.settings import Settings, load_settings
from topup.telemetry import meter, setup_telemetry
from topup.web import health_route
from topup.wire import IngestedEvent, RequestContext, encode_record

# Any page may send events. A text/plain POST needs no preflight; callers that send
# application/json get their preflight answered for any origin.
_CORS = [(b"access-control-allow-origin", b"*")]
_PREFLIGHT = [
    *_CORS,
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"Content-Type"),
    (b"access-control-max-age", b"86400"),
]
# The request headers process needs; the rest are not copied.
_CONTEXT_HEADERS = frozenset(
    {
        b"user-agent",
        b"origin",
        b"referer",
        b"x-forwarded-for",
        b"cloudfront-viewer-address",
        b"cloudfront-viewer-country",
        b"cloudfront-viewer-country-region",
        b"cloudfront-viewer-city",
        b"cloudfront-viewer-time-zone",
        b"x-topup-origin",
    }
)


class Answer:
    """A response assembled once: the event API's hot path skips Litestar's response building
    (about a third of a request's cost in `make bench`)."""

    __slots__ = ("body", "start")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        length = str(len(body)).encode()
        self.start = {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", length),
                *headers,
            ],
        }
        self.body = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(self.start)  # type: ignore[arg-type]
        await send(self.body)  # type: ignore[arg-type]

    @classmethod
    def error(cls, status: int, message: str) -> Answer:
        return cls(status, msgspec.json.encode({"error": message}), _CORS)


ACCEPTED = {n: Answer(202, b'{"accepted":%d}' % n, _CORS) for n in range(1, MAX_BATCH + 1)}
PREFLIGHT = Answer(204, b"", _PREFLIGHT)


def context_headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode(): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _CONTEXT_HEADERS
    }


def stamp(events: list[Event], context: RequestContext) -> list[IngestedEvent]:
    """Give each event its id and arrival time, and the request's context."""
    received_at = datetime.now(UTC)
    return [
        IngestedEvent(
            event_id=new_id(),
            received_at=received_at,
            name=e.name,
            url=e.url,
            context=context,
            site_id=e.site_id,
            domain=e.domain,
            referrer=e.referrer,
            props=e.props,
            revenue=e.revenue,
            hash_mode=e.hash_mode,
            interactive=e.interactive,
            session_id=e.session_id,
            distinct_id=e.distinct_id,
            screen_width=e.screen_width,
            screen_height=e.screen_height,
        )
        for e in events
    ]


def create_app(settings: Settings | None = None, sink: Sink | None = None) -> Litestar:
    settings = load_settings() if settings is None else settings
    setup_telemetry("ingest")
    buffer = sink_from_settings(settings) if sink is None else sink
    trusted = parse_networks(tuple(settings.trusted_proxies))
    tracker_files = load_tracker_files()
    accepted_events = meter("ingest").create_counter(
        "topup.ingest.events_accepted", description="Events accepted and put on the buffer"
    )
    rejected_requests = meter("ingest").create_counter(
        "topup.ingest.requests_rejected", description="Event requests answered 4xx"
    )

    @route("/api/event", http_method=["POST", "OPTIONS"], status_code=202)
    async def accept_event(request: Request[Any, Any, State]) -> ASGIApp:
        """Accept one event or `{"events": [...]}` (JSON, sent as text/plain or
        application/json); answer 202, or 400 naming the bad field."""
        if request.method == "OPTIONS":
            return PREFLIGHT
        body = await request.body()
        try:
            events = parse_body(body)
        except BadEventError as exc:
            rejected_requests.add(1)
            return Answer.error(400, str(exc))
        context = request_context(
            context_headers(request.scope),
            request.client.host if request.client else None,
            trust_cloudfront=settings.trust_cloudfront_headers,
            trusted_proxies=trusted,
            origin_secret=settings.origin_secret,
        )
        try:
            await buffer.put(encode_record(stamp(events, context)))
        except SinkUnavailableError:
            return Answer.error(503, "the event buffer is unavailable; retry later")
        accepted_events.add(len(events))
        return ACCEPTED[len(events)]

    @get("/js/{name:str}", include_in_schema=False)
    async def tracker_script(
        request: Request[Any, Any, State], name: FromPath[str]
    ) -> Response[bytes]:
        """The tracker: `script.js`, or `script.links.js` with link tracking."""
        file = tracker_files.get(name)
        if file is None:
            return Response(b"no such script\n", status_code=404, media_type="text/plain")
        headers = {"ETag": file.etag, "Cache-Control": CACHE_CONTROL}
        if request.headers.get("if-none-match") == file.etag:
            return Response(b"", status_code=304, headers=headers)
        return Response(
            file.body, media_type="application/javascript; charset=utf-8", headers=headers
        )

    @asynccontextmanager
    async def run_buffer(app: Litestar) -> AsyncIterator[None]:
        await buffer.start()
        try:
            yield
        finally:
            await buffer.close()

    app = Litestar(
        logging_config=None,  # logging is the process's to configure, not the app's
        route_handlers=[accept_event, tracker_script, health_route("ingest", uses_database=False)],
        lifespan=[run_buffer],
        request_max_body_size=MAX_BODY_BYTES,
    )
    app.state.buffer = buffer
    return app
