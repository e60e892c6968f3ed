"""Compacting the local archive: closed days become one file per partition, every row stays
exactly as it was, queries answer the same, files nothing refers to any more go after the
grace period, and process's writer keeps appending across a compaction."""

import asyncio
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from process.archive import LocalArchive
from process.rows import EventRow, InitialRow
from query.archive_reader import LocalArchiveReader
from topup import archive_compaction
from topup.archive_compaction import GRACE, compact
from topup.archive_layout import local_path
from topup.archive_tables import open_tables
from topup.maintenance import maintain

TODAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
SITES = [uuid.uuid4(), uuid.uuid4()]
PER_DAY = """SELECT CAST(ts AS DATE) AS day, count(*) AS n, count(DISTINCT event_id) AS ids
               FROM events GROUP BY 1 ORDER BY 1"""


def rows(day_offset: int, batch: int) -> tuple[list[EventRow], list[InitialRow]]:
    """One delivery's rows: 5 events for each site, in a session that starts in it."""
    events, initials = [], []
    for s, site in enumerate(SITES):
        session = 1000 * day_offset + 10 * batch + s
        for i in range(5):
            at = TODAY - timedelta(days=day_offset, minutes=60 - 7 * batch - i)
            event = EventRow(uuid.uuid4(), site, at, session, None, "pageview", "example.com",
                             f"/p{i}", None)  # fmt: skip
            events.append(event)
            if i == 0:
                initials.append(InitialRow(event.event_id, site, at, session, None, None,
                                           "example.com", "/p0", *([None] * 20)))  # fmt: skip
    return events, initials


async def fill(root, days=(3, 2, 1, 0), batches=4):
    """Append as process does, one delivery at a time, plus one delivery archived twice."""
    archive = LocalArchive(root)
    await archive.start()
    for day in days:
        for batch in range(batches):
            await archive.write(*rows(day, batch))
    again = rows(2, 0)
    await archive.write(*again)
    await archive.write(*again)  # at-least-once: a retried delivery
    return archive


def data_files(table, day=None):
    """The table's data files (of one UTC day's partitions, if given)."""
    number = None if day is None else (day - date(1970, 1, 1)).days
    return {
        task.file.file_path
        for task in table.scan().plan_files()
        if number is None or task.file.partition[1] == number
    }


def partitions_before(table, day):
    number = (day - date(1970, 1, 1)).days
    return [
        p for p in (tuple(t.file.partition) for t in table.scan().plan_files()) if p[1] < number
    ]


def event_ids(root):
    scan = open_tables(root)["events"].scan(selected_fields=("event_id",))
    return sorted(scan.to_arrow()["event_id"].to_pylist())


def on_disk(file_uri):
    return Path(local_path(file_uri)).exists()


def files_on_disk(root):
    return sorted(p for p in (root / "warehouse").rglob("*.parquet"))


async def answers(root):
    reader = LocalArchiveReader(root)
    start, end = TODAY - timedelta(days=10), TODAY + timedelta(days=1)
    return [await reader.fetch(PER_DAY, [], site, start, end) for site in SITES]


async def test_closed_days_become_one_file_per_partition_and_answer_the_same(tmp_path):
    root = tmp_path / "archive"
    await fill(root)
    before, ids_before = await answers(root), event_ids(root)
    today = TODAY.date()
    todays_files = data_files(open_tables(root)["events"], today)

    report = compact(root, today)

    assert report.days_compacted == 2 * 3  # both tables, the three closed days
    assert report.days_left_for_later == 0
    assert report.files_after < report.files_before
    for table in open_tables(root).values():
        closed = partitions_before(table, today)
        assert len(closed) == len(set(closed))  # a file per site bucket and day
        assert len({day for _, day in closed}) == 3
    assert data_files(open_tables(root)["events"], today) == todays_files  # today stays open
    assert event_ids(root) == ids_before  # every row, the retried delivery's twice, as before
    assert await answers(root) == before


async def test_files_nothing_refers_to_go_only_after_the_grace_period(tmp_path):
    root = tmp_path / "archive"
    await fill(root, days=(2, 1), batches=3)
    on_disk = len(files_on_disk(root))
    now = datetime.now(UTC)
    # Within the grace period: the compacted days' old files are still referred to by the
    # snapshots kept, so a query planned before the compaction still finds them.
    assert compact(root, TODAY.date(), now).files_deleted == 0
    assert len(files_on_disk(root)) > on_disk
    # An append that has written its file but not committed it yet.
    events_dir = next((root / "warehouse").rglob("data"))
    pending = events_dir / "pending-append.parquet"
    pending.write_bytes(b"PAR1")
    later = now + GRACE + timedelta(minutes=1)
    os.utime(pending, (later.timestamp(), later.timestamp()))
    report = compact(root, TODAY.date(), later + timedelta(seconds=1))
    assert report.files_deleted > 0
    assert pending.exists()  # younger than the grace period at `later`
    referenced = {Path(local_path(f)) for t in open_tables(root).values() for f in data_files(t)}
    left = {p for p in files_on_disk(root) if p != pending}
    assert left == referenced  # the old files are gone, every file a snapshot needs is there
    assert len(await answers(root)) == len(SITES)


async def test_files_of_a_snapshot_replaced_just_now_stay_for_the_grace_period(tmp_path):
    """The snapshot a compaction replaces may be old, but a query may have planned on it a
    moment ago: its files stay until the compaction's own snapshot is older than the grace."""
    root = tmp_path / "archive"
    await fill(root, days=(1,), batches=3)
    grace = timedelta(seconds=4)  # longer than this compaction takes
    await asyncio.sleep(grace.total_seconds() + 0.5)  # the appends are older than the grace
    planned = data_files(open_tables(root)["events"])  # what a query planned just before
    assert compact(root, TODAY.date(), grace=grace).days_compacted > 0
    assert all(on_disk(f) for f in planned)  # older files, but replaced only just now
    await asyncio.sleep(grace.total_seconds() + 0.5)
    compact(root, TODAY.date(), grace=grace)
    assert not any(on_disk(f) for f in planned)


async def test_process_keeps_appending_across_a_compaction(tmp_path):
    root = tmp_path / "archive"
    archive = await fill(root, days=(2, 1), batches=2)  # its tables were loaded before
    compact(root, TODAY.date())
    late, initials = rows(0, 5)
    await archive.write(late, initials)  # the compaction's commits came in between
    ids = open_tables(root)["events"].scan(selected_fields=("event_id",)).to_arrow()["event_id"]
    assert {str(e.event_id) for e in late} <= set(ids.to_pylist())


async def test_a_late_delivery_to_a_day_being_compacted_is_kept(tmp_path, monkeypatch):
    """Process appends to a closed day (a late delivery) after the compaction read the day's
    rows and before it commits: the compaction of that day gives way, the late rows stay, and
    the next run compacts the day with them."""
    root = tmp_path / "archive"
    await fill(root, days=(1,), batches=3)
    late, initials = rows(1, 7)
    writer = LocalArchive(root)
    await writer.start()
    read_rows = archive_compaction._day_rows

    def rows_then_a_late_append(table, day):
        read = read_rows(table, day)
        if table.name()[-1] == "events":
            writer._append(late, initials)  # what process's writer thread does meanwhile
        return read

    monkeypatch.setattr(archive_compaction, "_day_rows", rows_then_a_late_append)
    report = compact(root, TODAY.date())
    assert report.days_left_for_later == 1  # the events table's day
    assert {str(e.event_id) for e in late} <= set(event_ids(root))
    monkeypatch.undo()
    ids = event_ids(root)
    assert compact(root, TODAY.date()).days_compacted == 1
    assert event_ids(root) == ids


async def test_maintain_compacts_the_local_archive(db, tmp_path):
    root = tmp_path / "archive"
    await fill(root, days=(1, 0), batches=2)
    report = await maintain(db, retention_days=35, today=TODAY.date(), archive=root)
    assert report.archive is not None
    # yesterday and the day before (the retried delivery's), in both tables; today stays open
    assert report.archive.days_compacted == 2 * 2
    assert (await maintain(db, retention_days=35, today=TODAY.date())).archive is None


async def test_concurrent_deliveries_append_to_the_local_archive_in_turn(tmp_path):
    """`topup dev` handles deliveries concurrently; pyiceberg's tables are not safe to append to
    from two threads at once (a lost snapshot, or an error that fails the delivery)."""
    archive = LocalArchive(tmp_path / "warehouse")
    await archive.start()
    batches = [rows(0, batch) for batch in range(8)]
    await asyncio.gather(*(archive.write(*batch) for batch in batches))
    expected = sorted(str(e.event_id) for events, _ in batches for e in events)
    assert sorted(event_ids(tmp_path / "warehouse")) == expected
