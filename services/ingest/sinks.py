"""The buffer between ingest and process: one interface, two adapters chosen by settings.

- `FirehoseSink` (AWS): PutRecordBatch to the ingest delivery stream.
- `LocalFirehose` (`topup dev`, in `topup.local.firehose`): on-disk spool delivered to process
  with Firehose's HTTP endpoint protocol.

A record is one ingest request's events as newline-delimited JSON. `put` returns only when the
record is durable (in Firehose, or on disk); otherwise it raises `SinkUnavailableError` and the
request is answered 503, so the sender retries and nothing accepted is lost.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from topup.buffer import Sink, SinkUnavailableError
from topup.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["FirehoseSink", "Sink", "SinkUnavailableError", "sink_from_settings"]


class FirehoseSink:
    """Kinesis Data Firehose via aioboto3, re-sending a record that comes back failed."""

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
        self.region = region
        self.endpoint_url = endpoint_url
        self.attempts = attempts
        self.first_backoff_s = first_backoff_s
        self._client: Any = None
        self._client_cm: Any = None

    async def start(self) -> None:
        import aioboto3

        self._client_cm = aioboto3.Session().client(
            "firehose", region_name=self.region, endpoint_url=self.endpoint_url
        )
        self._client = await self._client_cm.__aenter__()

    async def put(self, record: bytes) -> None:
        assert self._client is not None, "FirehoseSink.start() was not awaited"
        backoff = self.first_backoff_s
        last_error = "no attempt"
        for attempt in range(1, self.attempts + 1):
            try:
                answer = await self._client.put_record_batch(
                    DeliveryStreamName=self.stream, Records=[{"Data": record}]
                )
                if answer["FailedPutCount"] == 0:
                    return
                failed = answer["RequestResponses"][0]
                last_error = f"{failed.get('ErrorCode')}: {failed.get('ErrorMessage')}"
            except Exception as exc:  # botocore raises many types; all mean "not stored"
                last_error = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                await asyncio.sleep(backoff)
                backoff *= 2
        log.warning("firehose put failed after %d attempts: %s", self.attempts, last_error)
        raise SinkUnavailableError(f"buffer unavailable: {last_error}")

    async def close(self) -> None:
        if self._client_cm is not None:
            await self._client_cm.__aexit__(None, None, None)
            self._client = self._client_cm = None


def sink_from_settings(settings: Settings) -> Sink:
    if settings.sink == "firehose":
        return FirehoseSink(
            settings.firehose_stream,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
        )
    from topup.local.firehose import LocalFirehose

    return LocalFirehose.from_settings(settings)
