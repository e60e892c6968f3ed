from datetime import UTC, datetime

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


def test_new_ids_are_time_ordered_uuid7():
    ids = [new_id() for _ in range(100)]
    assert all(i.version == 7 for i in ids)
    assert ids == sorted(ids)
