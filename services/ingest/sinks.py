"""The buffer between ingest and process: one interface, two adapters chosen by settings.

- `FirehoseSink` (AWS): PutRecordBatch to the ingest delivery stream.
- `LocalFirehose` (`topup dev`, in `topup.local.firehose`): on-disk spool delivered to process
  with Firehose's HTTP endpoint protocol.

A record is one ingest request's events as newline-delimited JSON. `put` returns only when the
record is durable (in Firehose, or on disk); otherwise it raises `SinkUnavailableError` and the
request is answered 503, so the sender retries and nothing accepted is lost.
"""

from __future__ import annotations

import logging

from topup.buffer import Sink, SinkUnavailableError
from topup.firehose_writer import FirehoseWriteError, FirehoseWriter
from topup.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["FirehoseSink", "Sink", "SinkUnavailableError", "sink_from_settings"]


class FirehoseSink:
    """Kinesis Data Firehose: one record per ingest request."""

    def __init__(
        self,
        stream: str,
        *,
        region: str,
        endpoint_url: str | None = None,
        attempts: int = 4,
        first_backoff_s: float = 0.05,
    ) -> None:
        self.stream = stream
        self.writer = FirehoseWriter(
            region=region, endpoint_url=endpoint_url, attempts=attempts,
            first_backoff_s=first_backoff_s,
        )  # fmt: skip

    async def start(self) -> None:
        await self.writer.start()

    async def put(self, record: bytes) -> None:
        try:
            await self.writer.put(self.stream, [record])
        except FirehoseWriteError as exc:
            log.warning("firehose put failed: %s", exc)
            raise SinkUnavailableError(f"buffer unavailable: {exc}") from exc

    async def close(self) -> None:
        await self.writer.close()


def sink_from_settings(settings: Settings) -> Sink:
    if settings.sink == "firehose":
        return FirehoseSink(
            settings.firehose_stream,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
        )
    from topup.local.firehose import LocalFirehose

    return LocalFirehose.from_settings(settings)
