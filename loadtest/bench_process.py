"""Process benchmark: events per second from a Firehose delivery to committed rows, beside a raw
asyncpg COPY of the same final rows into the same tables, in the same run.

The processor reads each delivery's body (JSON, base64 records) and handles it in-process (no
HTTP: the socket is not what is measured) on one event loop, so the figure is per core. The
archive is measured apart: with the null archive the figure is the Postgres path;
`local_archive` adds the pyiceberg append of each delivery.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgspec

from loadtest.pg_usage import Meter
from loadtest.traffic import Hit, hits
from process import geo, user_agents
from process.deliveries import Processor, decode_events, read_delivery
from process.site_directory import SiteDirectory
from process.visitors import Salts
from topup import accounts, heap, sites
from topup.archive_layout import EVENT_COLUMNS, INITIAL_COLUMNS
from topup.database import connect, create_pool, migrate
from topup.ids import new_id
from topup.tiers import Tier
from topup.wire import (
    DeliveryRecord,
    DeliveryRequest,
    IngestedEvent,
    RequestContext,
    encode_record,
)

DELIVERY_EVENTS = 2500  # ~1 MiB of records: the default buffer size (TOPUP_BUFFER_MAX_BYTES)
RECORD_EVENTS = 5  # the tracker batches a few events per request


class NullArchive:
    async def start(self) -> None:
        pass

    async def write(self, events: list, initials: list) -> None:
        pass

    async def close(self) -> None:
        pass


def ingested(site_id: Any, hit: Hit) -> IngestedEvent:
    from datetime import UTC, datetime

    country, region, city, timezone = hit.geo
    return IngestedEvent(
        event_id=new_id(), received_at=datetime.now(UTC), name=hit.name, url=hit.url,
        context=RequestContext(ip=hit.ip, user_agent=hit.user_agent, country=country,
                               region=region, city=city, timezone=timezone),
        site_id=site_id, referrer=hit.referrer, props=hit.props, session_id=hit.session,
        screen_width=hit.screen[0], screen_height=hit.screen[1],
    )  # fmt: skip


def deliveries(site_id: Any, count: int) -> list[bytes]:
    """Delivery bodies as Firehose POSTs them (JSON, each record's data base64)."""
    traffic = itertools.islice(hits(7, "example.com", count), count)
    events = [ingested(site_id, h) for h in traffic]
    out = []
    for start in range(0, len(events), DELIVERY_EVENTS):
        chunk = events[start : start + DELIVERY_EVENTS]
        records = [
            DeliveryRecord(encode_record(chunk[i : i + RECORD_EVENTS]))
            for i in range(0, len(chunk), RECORD_EVENTS)
        ]
        delivery = DeliveryRequest(str(new_id()), int(time.time() * 1000), records)
        out.append(msgspec.json.encode(delivery))
    return out


async def run(database_url: str, full: bool) -> dict[str, Any]:
    count = 200_000 if full else 20_000
    conn = await connect(database_url)
    await migrate(conn)
    await conn.execute(
        "TRUNCATE events, initial_events, visit_hours, processed_deliveries, usage_daily"
    )
    account = await accounts.create_account(conn, "bench")
    site = await sites.create_site(conn, account.id, name="bench", domains=["example.com"],
                                   tier=Tier.PRIVACY_POLICY, allowance=10**12)  # fmt: skip
    batches = deliveries(site.id, count)
    pool = await create_pool(database_url, max_size=2)
    processor = Processor(pool, NullArchive(), SiteDirectory(), Salts())
    user_agents.warm_up()  # as the app's start-up does
    geo.warm_up()
    heap.settle()  # as a Lambda container (and `topup dev`) does once started
    await processor.handle(read_delivery(batches[0], None))  # warms agents, partitions, salts
    accepted = 0
    async with Meter(conn) as ours_on_postgres:
        started = time.perf_counter()
        for body in batches[1:]:
            accepted += (await processor.handle(read_delivery(body, None))).accepted
        process_s = time.perf_counter() - started
    await pool.close()

    # The baseline: the same final rows, COPYed straight into the same (emptied) tables.
    events = await conn.fetch(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events")
    initials = await conn.fetch(f"SELECT {', '.join(INITIAL_COLUMNS)} FROM initial_events")
    hours = await conn.fetch("SELECT * FROM visit_hours")  # every column, in the table's order
    await conn.execute("TRUNCATE events, initial_events, visit_hours")
    async with Meter(conn) as copy_on_postgres:
        started = time.perf_counter()
        await conn.copy_records_to_table("events", records=events, columns=list(EVENT_COLUMNS))
        await conn.copy_records_to_table(
            "initial_events", records=initials, columns=list(INITIAL_COLUMNS)
        )
        copy_s = time.perf_counter() - started
    # Beside it, for what the session summaries add: their rows COPYed too (not the goal's
    # baseline, which is the event tables').
    started = time.perf_counter()
    await conn.copy_records_to_table("visit_hours", records=hours)
    hours_s = time.perf_counter() - started
    # And the same rows COPYed a delivery at a time, each in its own transaction: what taking
    # them in 2,500-event deliveries costs by itself (not the goal's baseline either); then with
    # each delivery's body decoded first: the least any process must do, so the most it can reach.
    by_delivery = _by_delivery(batches, events, initials)
    await conn.execute("TRUNCATE events, initial_events, visit_hours")
    per_delivery_s = await _copy_per_delivery(conn, by_delivery)
    await conn.execute("TRUNCATE events, initial_events, visit_hours")
    floor_s = await _copy_per_delivery(conn, by_delivery, batches)
    await conn.execute(
        "TRUNCATE events, initial_events, visit_hours, processed_deliveries, usage_daily"
    )
    await conn.close()

    measured = sum(1 for _ in events)  # includes the warm-up delivery's rows
    ours = accepted / process_s
    baseline = measured / copy_s
    return {
        "events": accepted,
        "deliveries": len(batches) - 1,
        "process_events_per_s": round(ours),
        "raw_copy_events_per_s": round(baseline),
        "ratio_to_raw_copy": round(ours / baseline, 3),
        "ratio_to_raw_copy_with_summaries": round(ours / (measured / (copy_s + hours_s)), 3),
        "raw_copy_per_delivery_events_per_s": round(measured / per_delivery_s),
        "ratio_to_raw_copy_per_delivery": round(ours / (measured / per_delivery_s), 3),
        "decode_and_copy_per_delivery_events_per_s": round(measured / floor_s),
        "decode_and_copy_ratio_to_raw_copy": round(measured / floor_s / baseline, 3),
        "sessions_per_event": round(len(initials) / len(events), 3),
        # What the database server spent per stored event (the cost model's Aurora inputs).
        "postgres_cpu_us_per_event": _per_event(ours_on_postgres.usage.cpu_s, accepted, 1e6),
        "raw_copy_postgres_cpu_us_per_event": _per_event(
            copy_on_postgres.usage.cpu_s, measured, 1e6
        ),
        "wal_bytes_per_event": _per_event(ours_on_postgres.usage.wal_bytes, accepted),
        "raw_copy_wal_bytes_per_event": _per_event(copy_on_postgres.usage.wal_bytes, measured),
    }


def _by_delivery(bodies: list[bytes], events: list, initials: list) -> list[tuple[list, list]]:
    """Each delivery's stored rows: its events' and their initial rows."""
    event_of = {row["event_id"]: row for row in events}
    initial_of = {row["event_id"]: row for row in initials}
    out = []
    for body in bodies:
        ids = [e.event_id for e in decode_events(read_delivery(body, None))[0]]
        out.append(
            (
                [event_of[i] for i in ids if i in event_of],
                [initial_of[i] for i in ids if i in initial_of],
            )
        )
    return out


async def _copy_per_delivery(
    conn: Any, by_delivery: list[tuple[list, list]], bodies: list[bytes] | None = None
) -> float:
    """Seconds to COPY each delivery's rows, a transaction each; with `bodies`, each delivery's
    body is read and decoded first (as process reads it)."""
    started = time.perf_counter()
    for i, (events, initials) in enumerate(by_delivery):
        if bodies is not None:
            decode_events(read_delivery(bodies[i], None))
        async with conn.transaction():
            await conn.copy_records_to_table("events", records=events, columns=list(EVENT_COLUMNS))
            await conn.copy_records_to_table(
                "initial_events", records=initials, columns=list(INITIAL_COLUMNS)
            )
    return time.perf_counter() - started


def _per_event(total: float | None, events: int, scale: float = 1.0) -> float | None:
    return None if total is None else round(total * scale / events, 1)
