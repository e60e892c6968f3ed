"""Runs a Litestar app as a Lambda function (Function URL payload v2, API Gateway, ALB).

Mangum 0.22 would run the app's start-up and shut-down on every invocation (lifespan "auto"):
a new database pool and buffer client per request. Instead the app's lifespan is entered once,
on the first invocation, on the event loop Mangum uses, and left open for the container's life;
Lambda freezes the container between invocations and ends it without warning. Once started,
what start-up made is frozen out of the garbage collector's sight (`topup/heap.py`).

A frozen container's event loop does not run, so it cannot notice the database ending its idle
sessions (`TOPUP_DATABASE_IDLE_SESSION_S`): after a pause of half that time the app's pooled
connections (`app.state.pool`) are replaced before the next request uses one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

from litestar import Litestar
from mangum import Mangum

from topup import heap


class LambdaHandler:
    def __init__(self, app: Litestar, *, idle_session_s: float | None = None) -> None:
        self.app = app
        self._stale_after_s = idle_session_s / 2 if idle_session_s else None
        self._last_end: float | None = None  # wall clock: the monotonic one may stop when frozen
        self._mangum = Mangum(cast(Any, app), lifespan="off")
        self._lifespan: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.started = 0  # how many times the app's start-up ran (once per container)
        # Mangum logs each invocation at INFO; keep per-invocation logging quiet.
        logging.getLogger("mangum").setLevel(logging.WARNING)

    async def _hold_lifespan(self, ready: asyncio.Future[None]) -> None:
        # Litestar's lifespan must be left from the task that entered it, so one task holds it.
        try:
            async with self.app.lifespan():
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def _start_once(self) -> None:
        if self._lifespan is not None:
            return
        loop = asyncio.get_event_loop()
        ready: asyncio.Future[None] = loop.create_future()
        # The pool's first connections may be idle from the start: start-up goes on after it
        # makes them (the archive's tables, then settling the heap), and a slow start-up must
        # renew them like a pause, or the server may have ended them meanwhile.
        self._last_end = time.time()
        self._lifespan = loop.create_task(self._hold_lifespan(ready))
        try:
            loop.run_until_complete(ready)
        except BaseException:
            self._lifespan = None  # the next invocation tries the start-up again
            self._last_end = None
            raise
        self.started += 1
        heap.settle()

    def _after_a_pause(self) -> bool:
        if self._stale_after_s is None or self._last_end is None:
            return False
        return time.time() - self._last_end >= self._stale_after_s

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self._start_once()
        if self._after_a_pause():
            pool = self.app.state.pool
            asyncio.get_event_loop().run_until_complete(pool.expire_connections())
        try:
            return self._mangum(event, context)
        finally:
            self._last_end = time.time()

    def shutdown(self) -> None:
        """Leave the app's lifespan (tests; a Lambda container is simply frozen and ended)."""
        if self._lifespan is not None:
            self._stop.set()
            asyncio.get_event_loop().run_until_complete(self._lifespan)
            self._lifespan = None
