"""The local router: one ASGI app on one port that mounts the three services as CloudFront would.

`/api/event` and `/js/*` go to ingest, `/firehose` to process (where the local firehose
delivers), `/demo/*` to the demo site, everything else to query. Each service is also reachable
under `/_ingest`, `/_process` and `/_query` (e.g. `/_process/healthz`), and `/healthz` reports
all three.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from typing import Any, cast

from litestar import Litestar
from litestar.types import Message, Receive, Scope, Send


class LocalRouter:
    def __init__(
        self,
        ingest: Litestar,
        process: Litestar,
        query: Litestar,
        background: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = None,
        demo: Litestar | None = None,
    ) -> None:
        self.services = {"ingest": ingest, "process": process, "query": query}
        self.demo = demo
        self._background = background
        self._stack: contextlib.AsyncExitStack | None = None

    def route(self, path: str) -> tuple[Litestar, str]:
        """The service a path goes to, and the path that service sees."""
        for name, app in self.services.items():
            prefix = f"/_{name}"
            if path == prefix or path.startswith(prefix + "/"):
                return app, path[len(prefix) :] or "/"
        if path == "/api/event" or path.startswith("/js/"):
            return self.services["ingest"], path
        if path == "/firehose":
            return self.services["process"], path
        if self.demo is not None and (path == "/demo" or path.startswith("/demo/")):
            return self.demo, path
        return self.services["query"], path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await self._health(send)
            return
        app, path = self.route(scope["path"])
        if path != scope["path"]:
            scope = cast(Scope, {**scope, "path": path, "raw_path": path.encode()})
        await app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Any) -> None:
        while True:
            message: Any = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self._stack = contextlib.AsyncExitStack()
                    for app in self.services.values():
                        await self._stack.enter_async_context(app.lifespan())
                    if self._background is not None:
                        await self._stack.enter_async_context(self._background())
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._stack is not None:
                    await self._stack.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _health(self, send: Any) -> None:
        report = {name: await _get_status(app, "/healthz") for name, app in self.services.items()}
        ok = all(status == 200 for status in report.values())
        body = json.dumps(
            {
                "status": "ok" if ok else "unavailable",
                "services": {k: v == 200 for k, v in report.items()},
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200 if ok else 503,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _get_status(app: Litestar, path: str) -> int:
    """Call `GET path` on an ASGI app in-process and return the response status."""
    status = 500
    scope: Any = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status
