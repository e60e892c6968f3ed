"""The archive: every accepted event, kept as Iceberg tables `events` and `initial_events`.

Two adapters, chosen by `TOPUP_ARCHIVE`:
- `LocalArchive` (`topup dev`): pyiceberg's SqlCatalog (sqlite) with a warehouse folder under
  the data folder, one append per delivery.
- `FirehoseArchive` (AWS): PutRecordBatch to the two archive delivery streams, which Firehose
  writes into the Glue Iceberg tables.

Layout, the same in both: `topup.archive_tables` (partitioned by site bucket and day).

Semantics: at least once. A delivery's archive write can succeed and its acknowledgement be lost
(a crash, a timeout), and the retry archives it again, so the archive may hold an event twice;
every query over the archive deduplicates by `event_id`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Protocol

import msgspec

from process.rows import EventRow, InitialRow
from topup.firehose_writer import FirehoseWriteError, FirehoseWriter
from topup.settings import Settings

log = logging.getLogger(__name__)


class ArchiveUnavailableError(RuntimeError):
    """The archive did not take the rows; the delivery must be retried."""


class Archive(Protocol):
    async def start(self) -> None: ...

    async def write(self, events: list[EventRow], initials: list[InitialRow]) -> None: ...

    async def close(self) -> None: ...


def _json_row(row: EventRow | InitialRow) -> bytes:
    """A row as the archive's JSON record: ids as strings, props as a JSON string."""
    record = msgspec.to_builtins(msgspec.structs.asdict(row))
    if isinstance(row, EventRow):
        record["props"] = None if row.props is None else msgspec.json.encode(row.props).decode()
    return msgspec.json.encode(record) + b"\n"


class FirehoseArchive:
    """The two archive delivery streams (Firehose writes them into the Glue Iceberg tables)."""

    def __init__(
        self, events_stream: str, initial_events_stream: str, *, region: str,
        endpoint_url: str | None = None, attempts: int = 3,
    ) -> None:  # fmt: skip
        self.streams = {"events": events_stream, "initial_events": initial_events_stream}
        self.writer = FirehoseWriter(
            region=region, endpoint_url=endpoint_url, attempts=attempts, first_backoff_s=0.1
        )

    async def start(self) -> None:
        await self.writer.start()

    async def write(self, events: list[EventRow], initials: list[InitialRow]) -> None:
        try:
            await self.writer.put(self.streams["events"], [_json_row(r) for r in events])
            if initials:
                await self.writer.put(
                    self.streams["initial_events"], [_json_row(r) for r in initials]
                )
        except FirehoseWriteError as exc:
            raise ArchiveUnavailableError(str(exc)) from exc

    async def close(self) -> None:
        await self.writer.close()


class LocalArchive:
    """Iceberg tables in a local warehouse, written with pyiceberg (in a worker thread: it is
    synchronous)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tables: dict[str, Any] = {}

    async def start(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        from topup import archive_tables

        self.root.mkdir(parents=True, exist_ok=True)
        self.tables = archive_tables.open_tables(self.root)

    async def write(self, events: list[EventRow], initials: list[InitialRow]) -> None:
        try:
            await asyncio.to_thread(self._append, events, initials)
        except Exception as exc:
            raise ArchiveUnavailableError(f"local archive: {type(exc).__name__}: {exc}") from exc

    def _append(self, events: list[EventRow], initials: list[InitialRow]) -> None:
        from topup import archive_tables

        if events:
            self.tables["events"].append(archive_tables.to_arrow("events", events))
        if initials:
            self.tables["initial_events"].append(
                archive_tables.to_arrow("initial_events", initials)
            )

    async def close(self) -> None:
        self.tables = {}


def archive_from_settings(settings: Settings) -> Archive:
    if settings.archive == "firehose":
        return FirehoseArchive(
            settings.archive_events_stream,
            settings.archive_initial_events_stream,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
        )
    return LocalArchive(Path(settings.data_dir) / "archive")
