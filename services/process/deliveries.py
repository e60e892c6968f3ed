"""One Firehose delivery, end to end: decode, run every event through the pipeline, write to
Postgres, then to the archive. The HTTP handler in `app.py` is a thin shell around this."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec
from opentelemetry import trace

from process import pipeline, store
from process.archive import Archive
from process.drops import DropReason
from process.site_directory import SiteDirectory
from process.visitors import Salts
from topup import open_days
from topup.wire import (
    DeliveryRecord,
    DeliveryRequest,
    IngestedEvent,
    UndecodableError,
    decode_untrusted,
    read_record,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer("topup.process")

MAX_DECOMPRESSED_BYTES = 128 * 1024 * 1024  # Firehose buffers at most 64 MiB per delivery
CLOCK_SKEW = timedelta(hours=1)  # ingest's clock may run this far ahead of process's
_delivery_decoder = msgspec.json.Decoder(DeliveryRequest)


class BadDeliveryError(ValueError):
    """The body is not a Firehose delivery at all (answered 400, never retried into success)."""


class DeliveryResult(msgspec.Struct):
    request_id: str
    accepted: int
    dropped: int
    redelivered: bool = False


def read_delivery(body: bytes, content_encoding: str | None) -> DeliveryRequest:
    """The delivery in the body. A record whose data is not base64 stays in it as a record no
    line of which decodes, so it is counted `invalid` like any malformed record (and a
    delivery is never refused, so never retried, for one bad record)."""
    if content_encoding and content_encoding.lower() == "gzip":
        try:
            body = _gunzip(body)
        except (OSError, EOFError, zlib.error) as exc:
            raise BadDeliveryError(f"body is not valid gzip: {exc}") from None
    try:
        return decode_untrusted(_delivery_decoder, body, "body")
    except UndecodableError as exc:
        problem = exc
    try:  # the usual reason: one record is not base64; the rest are read one by one
        lenient = decode_untrusted(_lenient_decoder, body, "body")
    except UndecodableError:
        raise BadDeliveryError(f"not a Firehose delivery: {problem}") from None
    return DeliveryRequest(
        lenient.request_id, lenient.timestamp, [_record(r.data) for r in lenient.records]
    )


class _LenientRecord(msgspec.Struct, frozen=True):
    data: str


class _LenientDelivery(msgspec.Struct, frozen=True, rename="camel"):
    request_id: str
    timestamp: int
    records: list[_LenientRecord]


_lenient_decoder = msgspec.json.Decoder(_LenientDelivery)
BROKEN_RECORD = b"(a record that was not base64)\n"  # no line of it is an event


def _record(data: str) -> DeliveryRecord:
    try:
        return DeliveryRecord(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError):
        return DeliveryRecord(BROKEN_RECORD)


def _gunzip(body: bytes) -> bytes:
    """gunzip with a bound on the output, so a small body cannot inflate without limit."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = decompressor.decompress(body, MAX_DECOMPRESSED_BYTES)
    if decompressor.unconsumed_tail:
        raise OSError("decompressed body is larger than a Firehose delivery can be")
    return out


def decode_events(
    delivery: DeliveryRequest, max_age: timedelta = timedelta(days=30)
) -> tuple[list[IngestedEvent], int]:
    """The delivery's events, and how many of its records (or lines) were malformed. An event
    stamped in the future, or older than Postgres keeps, is malformed too: ingest stamps the
    time, so such a stamp means a broken record, which must not be retried forever."""
    events: list[IngestedEvent] = []
    invalid = 0
    now = datetime.now(UTC)
    earliest, latest = now - max_age, now + CLOCK_SKEW
    for record in delivery.records:
        decoded, malformed = read_record(record.data)
        invalid += len(malformed)
        for event in decoded:
            if earliest <= event.received_at <= latest:
                events.append(event)
            else:
                invalid += 1
    return events, invalid


@dataclass
class Processor:
    """What processing needs across deliveries: the pool, caches, and the archive."""

    pool: asyncpg.Pool
    archive: Archive
    sites: SiteDirectory
    salts: Salts
    partitions: store.Partitions = field(default_factory=store.Partitions)
    counting: open_days.Counting = field(default_factory=open_days.Counting)
    max_age: timedelta = timedelta(days=30)  # older events are not stored (retention - 1 day)

    async def handle(self, delivery: DeliveryRequest) -> DeliveryResult:
        """Store a delivery exactly once. Raises on a transient fault (database, archive), so
        Firehose retries; the retry finds the database part done and redoes only what is not."""
        events, invalid = decode_events(delivery, self.max_age)
        with tracer.start_as_current_span("process.delivery") as span:
            span.set_attribute("topup.request_id", delivery.request_id)
            span.set_attribute("topup.events", len(events))
            async with self.pool.acquire() as conn:
                written = await self._write(conn, delivery.request_id, events, invalid, span)
                redelivered = written is None
                if redelivered:
                    written = await store.stored_rows(
                        conn, delivery.request_id, [e.event_id for e in events]
                    )
                    if written is None:  # fully done before: only the answer was lost
                        return await self._totals(conn, delivery.request_id)
            assert written is not None
            # Holding no connection: the archive may take longer than the database lets a
            # session sit idle (TOPUP_DATABASE_IDLE_SESSION_S).
            await self.archive.write(written.events, written.initials)
            async with self.pool.acquire() as conn:
                await store.mark_archived(conn, delivery.request_id)
                await self._keep_counts_current(conn, {e.site_id for e in written.events})
            return DeliveryResult(
                delivery.request_id, written.accepted, written.dropped, redelivered
            )

    async def _write(
        self, conn: asyncpg.Connection, request_id: str, events: list[IngestedEvent],
        invalid: int, span: trace.Span,
    ) -> store.Written | None:  # fmt: skip
        batch = pipeline.Batch(sites=self.sites, salts=self.salts)
        if events:
            await batch.prepare(conn, events)
        times = pipeline.StepTimes()
        kept, dropped = pipeline.run([pipeline.Work(raw=e) for e in events], batch, times)
        span.set_attributes(times.as_attributes())
        today = datetime.now(UTC).date()
        drops = store.drops_by_site(dropped) + [(None, today, DropReason.INVALID)] * invalid
        try:
            return await store.write_delivery(conn, request_id, kept, drops, self.partitions)
        except asyncpg.CheckViolationError:
            self.partitions.days.clear()  # a partition we thought was there is not: recheck
            raise

    async def _keep_counts_current(
        self, conn: asyncpg.Connection, site_ids: set[uuid.UUID]
    ) -> None:
        """The open days' counts only spare the dashboard reading: a fault here loses nothing
        (the answers stay exact, from older counts) and must not fail a stored delivery."""
        if not site_ids:
            return
        try:
            await self.counting.keep_current(conn, site_ids)
        except (asyncpg.PostgresError, OSError) as exc:
            log.warning("open days not counted on: %s", exc)

    async def _totals(self, conn: asyncpg.Connection, request_id: str) -> DeliveryResult:
        row = await conn.fetchrow(
            "SELECT accepted, dropped FROM processed_deliveries WHERE request_id = $1", request_id
        )
        return DeliveryResult(request_id, row["accepted"], row["dropped"], redelivered=True)
