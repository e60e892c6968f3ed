"""The archive: every accepted event, kept as Iceberg tables `events` and `initial_events`.

Three adapters, chosen by `TOPUP_ARCHIVE`:
- `LocalArchive` (`topup dev`): pyiceberg's SqlCatalog (sqlite) with a warehouse folder under
  the data folder, one append per delivery.
- `FirehoseArchive` (AWS, default): PutRecordBatch to the two archive delivery streams, which
  Firehose writes into the Glue Iceberg tables.
- `GlueArchive` (AWS, the cheapest deployment): one pyiceberg append per delivery to the same
  Glue tables, without Firehose's charge per record.

Layout, the same in all: `topup.archive_tables` (partitioned by site bucket and day).

Semantics: at least once. A delivery's archive write can succeed and its acknowledgement be lost
(a crash, a timeout), and the retry archives it again, so the archive may hold an event twice;
every query over the archive deduplicates by `event_id`.
"""

from __future__ import annotations

import abc
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


class IcebergArchive(abc.ABC):
    """Iceberg tables appended to with pyiceberg, once per delivery (in a worker thread: it is
    synchronous). A remote catalog's tables are found on the first write, so a catalog that is
    unreachable at start-up fails a delivery (retried) rather than the function."""

    name = "archive"

    def __init__(self) -> None:
        self.tables: dict[str, Any] = {}
        # A pyiceberg table is not safe to append to from two threads: one process's
        # deliveries (concurrent under `topup dev`) take turns; other processes' commits are
        # found and retried on (below).
        self._turn = asyncio.Lock()

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    def _load_tables(self) -> dict[str, Any]: ...

    async def write(self, events: list[EventRow], initials: list[InitialRow]) -> None:
        try:
            async with self._turn:
                await asyncio.to_thread(self._append, events, initials)
        except Exception as exc:
            raise ArchiveUnavailableError(f"{self.name}: {type(exc).__name__}: {exc}") from exc

    def _append(self, events: list[EventRow], initials: list[InitialRow]) -> None:
        from topup import archive_tables

        if not self.tables:
            self.tables = self._load_tables()
        # A commit that finds another writer's first (a concurrent process function) is
        # retried by pyiceberg on the table's new state (`commit.retry.num-retries`).
        for table, rows in (("events", events), ("initial_events", initials)):
            if rows:
                self.tables[table].append(archive_tables.to_arrow(table, rows))

    async def close(self) -> None:
        self.tables = {}


class LocalArchive(IcebergArchive):
    """The local warehouse: pyiceberg's SqlCatalog (sqlite) under the data folder."""

    name = "local archive"

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    async def start(self) -> None:
        # Made at once, so the query side finds the tables before the first delivery.
        self.tables = await asyncio.to_thread(self._load_tables)

    def _load_tables(self) -> dict[str, Any]:
        from topup import archive_tables

        self.root.mkdir(parents=True, exist_ok=True)
        return archive_tables.open_tables(self.root)


class GlueArchive(IcebergArchive):
    """The Glue Iceberg tables (made by the stack, as for the archive streams), appended to
    directly: per delivery a data file per partition it touches and the commit's metadata files,
    instead of a Firehose record per row."""

    name = "glue archive"

    def __init__(self, database: str, *, region: str, endpoint_url: str | None = None) -> None:
        super().__init__()
        self.database = database
        self.region, self.endpoint_url = region, endpoint_url
        self.catalog: Any = None

    async def start(self) -> None:
        # The catalog's client only (no request): the tables are loaded by the first write.
        self.catalog = await asyncio.to_thread(glue_catalog, self.region, self.endpoint_url)

    def _load_tables(self) -> dict[str, Any]:
        from topup.archive_layout import COLUMNS

        return {t: self.catalog.load_table(f"{self.database}.{t}") for t in COLUMNS}


def glue_catalog(region: str, endpoint_url: str | None = None) -> Any:
    """pyiceberg's catalog of the Glue Data Catalog, its files on S3 (both at `endpoint_url`
    when given: moto's server in tests)."""
    from pyiceberg.catalog.glue import GlueCatalog

    properties = {"glue.region": region, "s3.region": region}
    if endpoint_url:
        properties |= {"glue.endpoint": endpoint_url, "s3.endpoint": endpoint_url}
    return GlueCatalog("topup", **properties)


def archive_from_settings(settings: Settings) -> Archive:
    if settings.archive == "firehose":
        return FirehoseArchive(
            settings.archive_events_stream,
            settings.archive_initial_events_stream,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
        )
    if settings.archive == "glue":
        return GlueArchive(
            settings.athena_database,
            region=settings.aws_region,
            endpoint_url=settings.aws_endpoint_url,
        )
    return LocalArchive(Path(settings.data_dir) / "archive")
