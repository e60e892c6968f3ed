"""The buffer interface ingest writes to (DESIGN.md: Firehose in AWS, the local firehose here)."""

from __future__ import annotations

from typing import Protocol


class SinkUnavailableError(RuntimeError):
    """The buffer did not take the record; the request must not be acknowledged."""


class Sink(Protocol):
    """Takes one record per ingest request. `put` returns only once the record is durable."""

    async def start(self) -> None: ...

    async def put(self, record: bytes) -> None: ...

    async def close(self) -> None: ...
