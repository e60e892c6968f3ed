import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from topup.database import Migration, MigrationChangedError, bundled_migrations, connect, migrate
from topup.maintenance import maintain
from topup.tiers import Tier


async def test_fresh_database_gets_every_migration_then_nothing(postgres_server_url, db):
    # `db` is cloned from a migrated template: a second run has nothing to do.
    assert await migrate(db) == []
    versions = [
        r["version"] for r in await db.fetch("SELECT version FROM schema_migrations ORDER BY 1")
    ]
    assert versions == [m.version for m in bundled_migrations()]


async def test_migrate_twice_and_concurrently_applies_each_migration_once(postgres_server_url):
    from tests.conftest import database_url_for

    admin = await connect(postgres_server_url)
    await admin.execute("DROP DATABASE IF EXISTS migrate_race WITH (FORCE)")
    await admin.execute("CREATE DATABASE migrate_race")
    url = database_url_for(postgres_server_url, "migrate_race")
    try:
        conns = [await connect(url) for _ in range(3)]
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(len(r) for r in results)
        assert applied == [0, 0, len(bundled_migrations())]
        assert await migrate(conns[0]) == []
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(bundled_migrations())
        for c in conns:
            await c.close()
    finally:
        await admin.execute("DROP DATABASE IF EXISTS migrate_race WITH (FORCE)")
        await admin.close()


async def test_an_edited_migration_is_refused(db):
    first = bundled_migrations()[0]
    edited = Migration(first.version, first.name, first.sql + "\n-- edited")
    with pytest.raises(MigrationChangedError, match="add a new numbered migration"):
        await migrate(db, [edited])


async def test_a_failing_migration_leaves_nothing_half_applied(db):
    broken = Migration(9999, "broken", "CREATE TABLE half_done (x int); SELECT 1/0;")
    with pytest.raises(Exception, match="division by zero"):
        await migrate(db, [*bundled_migrations(), broken])
    assert await db.fetchval("SELECT to_regclass('half_done')") is None
    assert await db.fetchval("SELECT count(*) FROM schema_migrations WHERE version = 9999") == 0


async def test_maintain_creates_upcoming_partitions_and_drops_expired_ones(db):
    today = date(2026, 11, 26)
    await db.execute("SELECT topup_create_partitions($1, $2)", today - timedelta(days=40), today)
    report = await maintain(db, retention_days=35, today=today)
    names = {
        r["relname"]
        for r in await db.fetch(
            """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'events'"""
        )
    }
    assert "events_p20261203" in names  # a week ahead
    assert "events_p20261022" in names  # the oldest day kept: today - 35
    assert "events_p20261021" not in names
    assert "events_p20261017" not in names
    assert "events_p20261017" in report.partitions_dropped
    assert "initial_events_p20261017" in report.partitions_dropped
    assert "visit_hours_p20261017" in report.partitions_dropped
    assert len(report.partitions_dropped) == 3 * 5
    again = await maintain(db, retention_days=35, today=today)
    assert again.partitions_created == 0
    assert again.partitions_dropped == []


async def test_events_land_in_their_day_partition(db):
    await db.execute("SELECT topup_create_partitions('2026-11-26', '2026-11-26')")
    await db.execute(
        """INSERT INTO events (event_id, site_id, ts, session_id, name, hostname, pathname)
           VALUES (gen_random_uuid(), gen_random_uuid(), '2026-11-26 23:59:59+00', 1,
                   'pageview', 'example.com', '/')"""
    )
    assert await db.fetchval("SELECT count(*) FROM events_p20261126") == 1
    with pytest.raises(Exception, match="no partition"):
        await db.execute(
            """INSERT INTO events (event_id, site_id, ts, session_id, name, hostname, pathname)
               VALUES (gen_random_uuid(), gen_random_uuid(), '2027-06-01 00:00:00+00', 1,
                       'pageview', 'example.com', '/')"""
        )


async def test_salts_rotate_and_none_outlives_two_days(db):
    today = date(2026, 11, 26)
    await db.execute(
        "INSERT INTO salts (day, salt) VALUES ($1, $2), ($3, $2), ($4, $2)",
        today - timedelta(days=3),
        b"x" * 32,
        today - timedelta(days=2),
        today - timedelta(days=1),
    )
    report = await maintain(db, retention_days=35, today=today)
    days = [r["day"] for r in await db.fetch("SELECT day FROM salts ORDER BY day")]
    assert days == [today - timedelta(days=1), today, today + timedelta(days=1)]
    assert report.salts_created == 2 and report.salts_deleted == 2
    salts = [r["salt"] for r in await db.fetch("SELECT salt FROM salts WHERE day >= $1", today)]
    assert len(set(salts)) == 2 and all(len(s) == 32 for s in salts)


async def test_maintain_forgets_rate_limit_counters_of_past_hours(db):
    await db.execute(
        """INSERT INTO visitor_counters (site_id, visitor, hour, events) VALUES
           (gen_random_uuid(), 1, date_trunc('hour', now()) - interval '3 hours', 9),
           (gen_random_uuid(), 2, date_trunc('hour', now()), 4)"""
    )
    report = await maintain(db, retention_days=35)
    assert report.counters_deleted == 1
    assert await db.fetchval("SELECT visitor FROM visitor_counters") == 2


async def test_upgrading_to_visit_hours_summarises_the_events_already_stored(postgres_server_url):
    from tests.conftest import database_url_for

    admin = await connect(postgres_server_url)
    await admin.execute("DROP DATABASE IF EXISTS upgrade_0004 WITH (FORCE)")
    await admin.execute("CREATE DATABASE upgrade_0004")
    conn = await connect(database_url_for(postgres_server_url, "upgrade_0004"))
    try:
        before = [m for m in bundled_migrations() if m.version < 4]
        await migrate(conn, before)
        await conn.execute("SELECT topup_create_partitions('2026-11-20', '2026-11-23')")
        await conn.execute(
            """INSERT INTO events (event_id, site_id, ts, session_id, visitor_id, name, hostname,
                                   pathname)
               SELECT gen_random_uuid(), '00000000-0000-0000-0000-0000000000aa', t, s, v, n,
                      'example.com', p
               FROM (VALUES ('2026-11-21 09:58:00+00'::timestamptz, 1, 7, 'pageview', '/'),
                            ('2026-11-21 10:01:00+00', 1, 7, 'pageview', '/pricing'),
                            ('2026-11-21 10:02:00+00', 1, 7, 'Signup', '/pricing'),
                            ('2026-11-22 23:59:00+00', 2, NULL, 'pageview', '/blog')
                    ) AS x(t, s, v, n, p)"""
        )
        assert [m.version for m in await migrate(conn)] == [
            m.version for m in bundled_migrations() if m.version >= 4
        ]
        rows = await conn.fetch(
            """SELECT hour, session_id, visitor, pageviews, events, exit_page FROM visit_hours
               ORDER BY hour"""
        )
        assert [(r["hour"].isoformat(), *list(r)[1:]) for r in rows] == [
            ("2026-11-21T09:00:00+00:00", 1, 7, 1, 1, "/"),
            ("2026-11-21T10:00:00+00:00", 1, 7, 1, 2, "/pricing"),
            ("2026-11-22T23:00:00+00:00", 2, 2, 1, 1, "/blog"),
        ]
        # every existing day has its visit_hours partition, also a day without events
        for day in ("20", "23"):  # the first and last day: no events
            assert await conn.fetchval(f"SELECT to_regclass('visit_hours_p202611{day}')")
    finally:
        await conn.close()
        await admin.execute("DROP DATABASE IF EXISTS upgrade_0004 WITH (FORCE)")
        await admin.close()


async def test_upgrading_to_page_values_deletes_the_days_built_before_and_maintain_rebuilds(
    postgres_server_url,
):
    """Days built before 0008 have no page or event-name values: left in place, the top pages
    would add up the built days without them. The upgrade deletes them; maintain builds them."""
    from tests.conftest import database_url_for
    from topup import visit_days

    admin = await connect(postgres_server_url)
    await admin.execute("DROP DATABASE IF EXISTS upgrade_0008 WITH (FORCE)")
    await admin.execute("CREATE DATABASE upgrade_0008")
    conn = await connect(database_url_for(postgres_server_url, "upgrade_0008"))
    site = "00000000-0000-0000-0000-0000000000aa"
    try:
        await migrate(conn, [m for m in bundled_migrations() if m.version < 8])
        await conn.execute(
            """INSERT INTO visit_days (site_id, day, exact, visitors, visits, pageviews, events,
                                       bounces, duration)
               VALUES ($1, '2026-11-20', true, 3, 3, 5, 6, 1, 60)""",
            uuid.UUID(site),
        )
        await conn.execute(
            """INSERT INTO visit_day_values (site_id, day, dimension, value, visitors, visits)
               VALUES ($1, '2026-11-20', 'visit:country', 'DE', 3, 3)""",
            uuid.UUID(site),
        )
        assert [m.version for m in await migrate(conn)] == [
            m.version for m in bundled_migrations() if m.version >= 8
        ]
        assert await conn.fetchval("SELECT count(*) FROM visit_days") == 0
        assert await conn.fetchval("SELECT count(*) FROM visit_day_values") == 0
        # The days are built again, now with pages: one session, two pages, two events on one.
        await conn.execute("SELECT topup_create_partitions('2026-11-20', '2026-11-22')")
        await conn.execute(
            """INSERT INTO initial_events (event_id, site_id, ts, session_id, visitor_id,
                                           hostname, entry_page)
               VALUES (gen_random_uuid(), $1, '2026-11-20 10:00+00', 1, 7, 'example.com', '/')""",
            uuid.UUID(site),
        )
        await conn.execute(
            """INSERT INTO events (event_id, site_id, ts, session_id, visitor_id, name, hostname,
                                   pathname)
               SELECT gen_random_uuid(), $1, t, 1, 7, n, 'example.com', p
               FROM (VALUES ('2026-11-20 10:00+00'::timestamptz, 'pageview', '/'),
                            ('2026-11-20 10:01+00', 'pageview', '/pricing'),
                            ('2026-11-20 10:02+00', 'Signup', '/pricing')) AS x(t, n, p)""",
            uuid.UUID(site),
        )
        await conn.execute("SELECT topup_rebuild_visit_hours('2026-11-20', '2026-11-22')")
        assert await visit_days.build_day(conn, uuid.UUID(site), date(2026, 11, 20))
        rows = await conn.fetch(
            """SELECT dimension, value, visitors, visits, pageviews, events FROM visit_day_values
               WHERE dimension IN ('event:page', 'event:name', 'visit:entry_page')
               ORDER BY dimension, value"""
        )
        assert [tuple(r) for r in rows] == [
            ("event:name", "Signup", 1, 1, 0, 1),
            ("event:name", "pageview", 1, 1, 2, 2),
            ("event:page", "/", 1, 1, 1, 1),
            ("event:page", "/pricing", 1, 1, 1, 2),
            ("visit:entry_page", "/", 1, 1, 2, 3),
        ]
    finally:
        await conn.close()
        await admin.execute("DROP DATABASE IF EXISTS upgrade_0008 WITH (FORCE)")
        await admin.close()


async def test_upgrading_to_continued_flags_the_rows_of_sessions_carried_over(postgres_server_url):
    """0009 marks the visit_hours rows whose session began on an earlier UTC day, from the
    sessions' initial rows, as process marks them from then on."""
    from tests.conftest import database_url_for

    admin = await connect(postgres_server_url)
    await admin.execute("DROP DATABASE IF EXISTS upgrade_0009 WITH (FORCE)")
    await admin.execute("CREATE DATABASE upgrade_0009")
    conn = await connect(database_url_for(postgres_server_url, "upgrade_0009"))
    site = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
    try:
        await migrate(conn, [m for m in bundled_migrations() if m.version < 9])
        await conn.execute("SELECT topup_create_partitions('2026-11-20', '2026-11-22')")
        await conn.execute(
            """INSERT INTO initial_events (event_id, site_id, ts, session_id, visitor_id,
                                           hostname, entry_page)
               VALUES (gen_random_uuid(), $1, '2026-11-20 23:50+00', 1, 7, 'example.com', '/'),
                      (gen_random_uuid(), $1, '2026-11-21 00:05+00', 2, 8, 'example.com', '/')""",
            site,
        )
        await conn.execute(
            """INSERT INTO events (event_id, site_id, ts, session_id, visitor_id, name, hostname,
                                   pathname)
               SELECT gen_random_uuid(), $1, t, s, v, 'pageview', 'example.com', '/'
               FROM (VALUES ('2026-11-20 23:50+00'::timestamptz, 1, 7),
                            ('2026-11-21 00:10+00', 1, 7),
                            ('2026-11-21 00:05+00', 2, 8),
                            ('2026-11-21 00:20+00', 3, 9)  -- no initial row
                    ) AS x(t, s, v)""",
            site,
        )
        await conn.execute("SELECT topup_rebuild_visit_hours('2026-11-20', '2026-11-22')")
        assert [m.version for m in await migrate(conn, _up_to(9))] == [9]
        flags = """SELECT session_id, (hour AT TIME ZONE 'UTC')::date, continued FROM visit_hours
                   ORDER BY session_id, hour"""
        expected = [(1, date(2026, 11, 20), False), (1, date(2026, 11, 21), True),
                    (2, date(2026, 11, 21), False), (3, date(2026, 11, 21), False)]  # fmt: skip
        assert [tuple(r) for r in await conn.fetch(flags)] == expected
        # and the rebuild, now 0009's, sets the flag alike
        await conn.execute("SELECT topup_rebuild_visit_hours('2026-11-20', '2026-11-22')")
        assert [tuple(r) for r in await conn.fetch(flags)] == expected
    finally:
        await conn.close()
        await admin.execute("DROP DATABASE IF EXISTS upgrade_0009 WITH (FORCE)")
        await admin.close()


def _up_to(version):
    return [m for m in bundled_migrations() if m.version <= version]


async def test_days_built_before_their_cut_totals_are_built_again(db):
    """0010 adds the closed days' totals cut at midnight; a day built before has none, and the
    next `topup maintain` builds it again."""
    from topup import accounts, sites, visit_days

    account = await accounts.create_account(db, "Acme")
    made = await sites.create_site(db, account.id, name="x", domains=["example.com"],
                                   tier=Tier.PRIVACY_POLICY, allowance=0)  # fmt: skip
    site = made.id
    day = date(2026, 11, 20)
    await db.execute(
        """INSERT INTO visit_days (site_id, day, exact, visitors, visits, pageviews, events,
                                   bounces, duration)
           VALUES ($1, $2, true, 0, 0, 0, 0, 0, 0)""",
        site, day,
    )  # fmt: skip
    now = datetime(2026, 11, 22, 3, tzinfo=UTC)
    assert await visit_days.build_closed_days(db, day, now) == 2  # that day, and the next
    assert (
        await db.fetchval(
            "SELECT cut_events FROM visit_days WHERE site_id = $1 AND day = $2", site, day
        )
        == 0
    )
    assert await visit_days.build_closed_days(db, day, now) == 0
