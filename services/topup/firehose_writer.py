"""Putting records to a Kinesis Data Firehose stream, the one way both ingest (its buffer) and
process (the archive streams) do it: PutRecordBatch in chunks of 500, re-sending only the
records that come back failed, with exponential backoff."""

from __future__ import annotations

import asyncio
from typing import Any

MAX_RECORDS = 500  # PutRecordBatch's limit per call


class FirehoseWriteError(RuntimeError):
    """Some records were still not taken after every attempt."""


class FirehoseWriter:
    def __init__(
        self,
        *,
        region: str,
        endpoint_url: str | None = None,
        attempts: int = 4,
        first_backoff_s: float = 0.05,
    ) -> None:
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

    async def put(self, stream: str, records: list[bytes]) -> None:
        """Put every record, or raise `FirehoseWriteError` saying why not."""
        assert self._client is not None, "FirehoseWriter.start() was not awaited"
        for first in range(0, len(records), MAX_RECORDS):
            await self._put_chunk(stream, records[first : first + MAX_RECORDS])

    async def _put_chunk(self, stream: str, pending: list[bytes]) -> None:
        backoff = self.first_backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                answer = await self._client.put_record_batch(
                    DeliveryStreamName=stream, Records=[{"Data": r} for r in pending]
                )
            except Exception as exc:  # botocore raises many types; all mean "not stored"
                error = f"{type(exc).__name__}: {exc}"
            else:
                if answer["FailedPutCount"] == 0:
                    return
                results = answer["RequestResponses"]
                failed = [r for r, res in zip(pending, results, strict=True) if "ErrorCode" in res]
                example = next(res for res in results if "ErrorCode" in res)
                code, message = example.get("ErrorCode"), example.get("ErrorMessage")
                error = f"{len(failed)} records failed, e.g. {code}: {message}"
                pending = failed
            if attempt < self.attempts:
                await asyncio.sleep(backoff)
                backoff *= 2
        raise FirehoseWriteError(f"{stream}: {error}")

    async def close(self) -> None:
        if self._client_cm is not None:
            await self._client_cm.__aexit__(None, None, None)
            self._client = self._client_cm = None
