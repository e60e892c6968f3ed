from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import asyncpg
import pytest

from topup.ids import new_id


async def test_props_round_trip_as_json_through_copy_and_queries(db):
    await db.execute("SELECT topup_create_partitions(current_date, current_date)")
    props = {"plan": "pro", "seats": 3, "trial": False, "note": "ünïcode ✓"}
    event_id, site_id = new_id(), new_id()
    await db.copy_records_to_table(
        "events",
        records=[(event_id, site_id, datetime.now(UTC), 7, "signup", "example.com", "/", props)],
        columns=[
            "event_id",
            "site_id",
            "ts",
            "session_id",
            "name",
            "hostname",
            "pathname",
            "props",
        ],
    )
    assert await db.fetchval("SELECT props FROM events WHERE event_id = $1", event_id) == props
    assert (
        await db.fetchval("SELECT props->>'plan' FROM events WHERE site_id = $1", site_id) == "pro"
    )


async def test_instants_round_trip_exactly_and_come_back_in_utc(db):
    """timestamptz travels as microseconds (topup.database's codec): exact to the microsecond,
    before and after Postgres's epoch, from any zone, through queries, arrays and COPY."""
    india = timezone(timedelta(hours=5, minutes=30))
    instants = [
        datetime(2026, 11, 27, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 11, 28, 5, 29, 59, 999_999, tzinfo=india),  # the same instant
        datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2000, 1, 1, tzinfo=UTC),
    ]
    back = await db.fetchval("SELECT $1::timestamptz[]", instants)
    assert back == instants and all(t.tzinfo is UTC for t in back)
    assert back[0] == back[1]
    assert await db.fetchval("SELECT $1::timestamptz = $2::timestamptz", *instants[:2])
    # The server reads the same instants as the text form would give it.
    assert await db.fetchval(
        "SELECT $1::timestamptz = '2026-11-27 23:59:59.999999+00'::timestamptz", instants[1]
    )
    epoch = await db.fetchval("SELECT extract(epoch FROM $1::timestamptz)", instants[2])
    assert epoch == Decimal("946684799.000001")
    await db.execute("CREATE TEMP TABLE instants (t timestamptz)")
    await db.copy_records_to_table("instants", records=[(t,) for t in instants])
    assert [r["t"] for r in await db.fetch("SELECT t FROM instants")] == instants


async def test_a_naive_datetime_is_refused_not_read_as_local_time(db):
    with pytest.raises(asyncpg.DataError, match="offset-naive"):
        await db.fetchval("SELECT $1::timestamptz", datetime(2026, 11, 27, 12, 0))
    assert await db.fetchval("SELECT 1") == 1


def test_new_ids_are_time_ordered_uuid7():
    ids = [new_id() for _ in range(100)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
