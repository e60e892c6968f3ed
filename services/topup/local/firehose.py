"""The local firehose: what Kinesis Data Firehose does for ingest → process, on a laptop.

Records are appended to a spool segment on disk before `put` returns, so an accepted event
survives a crash of `topup dev`. A segment is sealed into a batch when it reaches
`TOPUP_BUFFER_MAX_BYTES` or `TOPUP_BUFFER_MAX_SECONDS`, then delivered to process with
Firehose's HTTP endpoint protocol: a POST of `{requestId, timestamp, records: [{data}]}` with
the `X-Amz-Firehose-*` headers, optionally gzip-encoded. Only a 200 whose body echoes the
`requestId` counts as delivered; anything else is retried with backoff, with the same request id
(so process can recognise a redelivery). A batch's file is deleted only after delivery, so a
restart delivers whatever was left.

Segment files are length-prefixed records (4-byte big-endian length, then the bytes); a segment
cut short by a crash mid-write keeps every complete record and drops the torn tail, which was
never acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import os
import struct
import time
from pathlib import Path

import httpx
import msgspec

from topup.buffer import SinkUnavailableError
from topup.ids import new_id
from topup.settings import Settings
from topup.wire import DeliveryRecord, DeliveryRequest, DeliveryResponse

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">I")
OPEN, READY = ".open", ".ready"
LOCAL_STREAM_ARN = "arn:aws:firehose:local:000000000000:deliverystream/topup-ingest"


def read_frames(path: Path) -> list[bytes]:
    """The complete records of a spool file, in order."""
    data = path.read_bytes()
    records, pos = [], 0
    while pos + _FRAME.size <= len(data):
        (length,) = _FRAME.unpack_from(data, pos)
        end = pos + _FRAME.size + length
        if end > len(data):
            break  # torn tail from a crash mid-write
        records.append(data[pos + _FRAME.size : end])
        pos = end
    return records


class LocalFirehose:
    def __init__(
        self,
        spool_dir: Path,
        url: str,
        access_key: str,
        *,
        max_bytes: int = 1024 * 1024,
        max_seconds: float = 1.0,
        gzip_body: bool = False,
        first_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        timeout_s: float = 180.0,
    ) -> None:
        self.spool_dir = spool_dir
        self.url = url
        self.access_key = access_key
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.gzip_body = gzip_body
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.delivered_batches = 0
        self.failed_attempts = 0
        self._fd: int | None = None
        self._segment: Path | None = None
        self._segment_bytes = 0
        self._opened_at = 0.0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalFirehose:
        if settings.process_url is None or settings.firehose_access_key is None:
            raise ValueError(
                "the local firehose needs TOPUP_PROCESS_URL and TOPUP_FIREHOSE_ACCESS_KEY "
                "(topup dev sets both)"
            )
        return cls(
            Path(settings.data_dir) / "firehose",
            settings.process_url,
            settings.firehose_access_key,
            max_bytes=settings.buffer_max_bytes,
            max_seconds=settings.buffer_max_seconds,
            gzip_body=settings.buffer_gzip,
        )

    # -- the Sink interface

    async def start(self) -> None:
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        for left_open in sorted(self.spool_dir.glob(f"*{OPEN}")):
            # A crash left this segment open: what it holds was acknowledged, so deliver it.
            left_open.rename(left_open.with_suffix(READY))
        self._client = httpx.AsyncClient(timeout=self.timeout_s)
        self._wake.set()
        self._tasks = [
            asyncio.create_task(self._deliver_forever(), name="local-firehose-deliver"),
            asyncio.create_task(self._seal_when_old(), name="local-firehose-seal"),
        ]

    async def put(self, record: bytes) -> None:
        try:
            if self._fd is None:
                self._open_segment()
            assert self._fd is not None
            os.write(self._fd, _FRAME.pack(len(record)) + record)
        except OSError as exc:
            raise SinkUnavailableError(f"local firehose spool unavailable: {exc}") from exc
        self._segment_bytes += len(record)
        if self._segment_bytes >= self.max_bytes:
            self._seal()

    async def close(self, drain_timeout_s: float = 5.0) -> None:
        """Seal what is buffered, try briefly to deliver it, and stop; leftovers stay spooled."""
        self._seal()
        with contextlib.suppress(TimeoutError):
            await self.drain(drain_timeout_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- observation, for tests, the load test and shutdown

    def pending_batches(self) -> list[Path]:
        return sorted(self.spool_dir.glob(f"*{READY}"))

    async def drain(self, timeout_s: float) -> None:
        """Seal the open segment and wait until every batch is delivered."""
        self._seal()
        async with asyncio.timeout(timeout_s):
            while self.pending_batches():
                self._idle.clear()
                await self._idle.wait()

    # -- internals

    def _open_segment(self) -> None:
        self._segment = self.spool_dir / f"{new_id()}{OPEN}"
        self._fd = os.open(self._segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segment_bytes = 0
        self._opened_at = time.monotonic()

    def _seal(self) -> None:
        if self._fd is None or self._segment is None:
            return
        os.close(self._fd)
        self._segment.rename(self._segment.with_suffix(READY))
        self._fd, self._segment = None, None
        self._wake.set()

    async def _seal_when_old(self) -> None:
        tick = min(self.max_seconds / 4, 0.25)
        while True:
            await asyncio.sleep(tick)
            if self._fd is not None and time.monotonic() - self._opened_at >= self.max_seconds:
                self._seal()

    async def _deliver_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for batch in self.pending_batches():
                await self._deliver_until_done(batch)
            self._idle.set()

    async def _deliver_until_done(self, batch: Path) -> None:
        records = read_frames(batch)
        request_id = batch.stem
        backoff = self.first_backoff_s
        while records:
            error = await self._attempt(request_id, records)
            if error is None:
                break
            self.failed_attempts += 1
            log.warning("delivery %s failed (%s); retrying in %.1fs", request_id, error, backoff)
            self._idle.set()  # let drain() observers see progress between attempts
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)
        # Spool files are small and local: the syscall is cheaper than a thread hop.
        batch.unlink()  # noqa: ASYNC240
        self.delivered_batches += 1

    async def _attempt(self, request_id: str, records: list[bytes]) -> str | None:
        """One delivery attempt; None on success, else why it failed."""
        assert self._client is not None
        body = msgspec.json.encode(
            DeliveryRequest(
                request_id=request_id,
                timestamp=int(time.time() * 1000),
                records=[DeliveryRecord(r) for r in records],
            )
        )
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Firehose-Protocol-Version": "1.0",
            "X-Amz-Firehose-Request-Id": request_id,
            "X-Amz-Firehose-Source-Arn": LOCAL_STREAM_ARN,
            "X-Amz-Firehose-Access-Key": self.access_key,
        }
        if self.gzip_body:
            body = gzip.compress(body, compresslevel=5)
            headers["Content-Encoding"] = "gzip"
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:200]}"
        try:
            answer = msgspec.json.decode(response.content, type=DeliveryResponse)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return "200 without a Firehose response body"
        if answer.request_id != request_id:
            return f"200 echoing request id {answer.request_id!r}"
        return None
