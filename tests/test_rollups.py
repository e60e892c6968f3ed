"""What a delivery forgets of the rollups (`rollups.forget`, in process's transaction): exactly
the days its events can change, so the days it leaves stay built while traffic flows.

The rollup rows here are placeholders written straight into the tables; the delivery goes
through the real process pipeline.
"""

from datetime import UTC, date, datetime, timedelta

from tests.fixtures import event
from tests.stats_data import store
from topup import accounts, sites
from topup.tiers import Tier

DAY = date(2026, 11, 20)
DAYS = [DAY + timedelta(days=n) for n in range(-1, 3)]
KOLKATA = "Asia/Kolkata"  # UTC+5:30: a local midnight falls on a half hour in UTC


async def placeholder_rollups(db, site_id, zone: str) -> None:
    for day in DAYS:
        await db.execute(
            """INSERT INTO visit_days (site_id, day, exact, visitors, visits, pageviews, events,
                                       bounces, duration) VALUES ($1, $2, true, 1, 1, 1, 1, 0, 0)""",
            site_id, day,
        )  # fmt: skip
        await db.execute(
            """INSERT INTO visit_day_values (site_id, day, dimension, value, visitors, visits,
                                             pageviews, events)
               VALUES ($1, $2, 'visit:country', 'DE', 1, 1, 1, 1)""",
            site_id, day,
        )  # fmt: skip
        await db.execute(
            """INSERT INTO local_days (site_id, zone, day, sessions, visitors, pageviews, events)
               VALUES ($1, $2, $3, 1, 1, 1, 1)""",
            site_id, zone, day,
        )  # fmt: skip
        await db.execute(
            """INSERT INTO local_day_values (site_id, zone, day, dimension, value, pageviews,
                                             events)
               VALUES ($1, $2, $3, 'event:page', '/', 1, 1)""",
            site_id, zone, day,
        )  # fmt: skip


async def kept(db, site_id) -> dict[str, list[date]]:
    return {
        table: [
            r["day"]
            for r in await db.fetch(
                f"SELECT day FROM {table} WHERE site_id = $1 ORDER BY day", site_id
            )
        ]
        for table in ("visit_days", "visit_day_values", "local_days", "local_day_values")
    }


async def test_a_delivery_forgets_the_days_its_events_can_change_and_no_other(database_url, db):
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.PRIVACY_POLICY, timezone=KOLKATA, allowance=100)  # fmt: skip
    await placeholder_rollups(db, site.id, KOLKATA)
    # 18:40 UTC is 00:10 the next day in Kolkata; its visit_hours row (18:00 UTC) is 23:30 the
    # day before: the graph's local day DAY and the pages' local day DAY + 1 both change.
    at = datetime.combine(DAY, datetime.min.time(), UTC) + timedelta(hours=18, minutes=40)
    await store(database_url, [event(site.id, "https://example.com/a", session="new", at=at)])
    after = await kept(db, site.id)
    assert after["visit_days"] == after["visit_day_values"] == [DAYS[0], DAYS[2], DAYS[3]]
    assert after["local_days"] == after["local_day_values"] == [DAYS[0], DAYS[3]]


async def test_an_event_continuing_yesterdays_session_forgets_the_day_it_began(database_url, db):
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.BANNER_FREE, allowance=100)  # fmt: skip
    midnight = datetime.combine(DAY, datetime.min.time(), UTC)
    await store(database_url, [event(site.id, session="tab", at=midnight - timedelta(minutes=5))])
    await placeholder_rollups(db, site.id, "UTC")
    await store(database_url, [event(site.id, session="tab", at=midnight + timedelta(minutes=5))])
    after = await kept(db, site.id)
    # The session began the day before DAY: that visit day changes, DAY's does not.
    assert after["visit_days"] == [DAYS[1], DAYS[2], DAYS[3]]
    assert after["local_days"] == [DAYS[0], DAYS[2], DAYS[3]]  # the event's own local day


async def test_a_session_begun_by_its_first_stored_event_forgets_that_events_day(database_url, db):
    """A new tab session whose first event is rate limited begins with its next one, after
    midnight: its initial row, and so its visit day, is the next day's (not the day its key
    names)."""
    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.PRIVACY_POLICY, allowance=100)  # fmt: skip
    await db.execute("UPDATE sites SET visitor_hourly_limit = 2 WHERE id = $1", site.id)
    await placeholder_rollups(db, site.id, "UTC")
    midnight = datetime.combine(DAY, datetime.min.time(), UTC)
    at = [midnight - timedelta(minutes=m) for m in (10, 9, 8)] + [midnight + timedelta(minutes=1)]
    sessions = ["a", "a", "b", "b"]  # one device: b's first event is over the hour's limit
    await store(
        database_url, [event(site.id, session=s, at=t) for s, t in zip(sessions, at, strict=True)]
    )
    assert (
        await db.fetchval(
            "SELECT ts FROM initial_events WHERE site_id = $1 ORDER BY ts DESC LIMIT 1", site.id
        )
        == at[3]
    )
    assert (await kept(db, site.id))["visit_days"] == [DAYS[2], DAYS[3]]


async def test_yesterday_is_built_at_two_and_stays_built_while_today_goes_on(database_url, db):
    from topup.maintenance import maintain

    account = await accounts.create_account(db, "Acme")
    site = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.PRIVACY_POLICY, allowance=100)  # fmt: skip
    midnight = datetime.combine(DAY + timedelta(days=1), datetime.min.time(), UTC)
    await store(database_url, [event(site.id, session="evening", at=midnight - timedelta(hours=2))])

    async def built() -> list[date]:
        rows = await db.fetch("SELECT day FROM visit_days WHERE site_id = $1", site.id)
        return sorted(r["day"] for r in rows)

    await maintain(db, retention_days=35, now=midnight + timedelta(hours=1))
    assert DAY not in await built()  # late deliveries may still come
    await maintain(db, retention_days=35, now=midnight + timedelta(hours=2, minutes=5))
    assert DAY in await built()
    await store(database_url, [event(site.id, session="morning", at=midnight + timedelta(hours=3))])
    assert DAY in await built()  # today's new sessions leave it be
