"""The data generator writes the same events into Postgres and the archive, with the session
summaries, and its ground truth is what the Stats API answers from either store."""

from datetime import UTC, datetime, timedelta

from loadtest.generate import generate
from query import stats
from query.archive_reader import LocalArchiveReader
from tests.stats_data import stats_query
from topup.archive_tables import open_tables
from topup.tiers import Tier


async def test_generated_events_are_in_both_stores_and_match_the_truth(database_url, db, tmp_path):
    archive = tmp_path / "archive"
    site_id, truth = await generate(database_url, 3_000, days=5, seed=2, archive=archive)
    assert truth.events == 3_000 and 0 < truth.visitors <= truth.visits < truth.events

    assert await db.fetchval("SELECT count(*) FROM events WHERE site_id = $1", site_id) == 3_000
    assert await db.fetchval("SELECT count(*) FROM initial_events") == truth.visits
    summed = await db.fetchrow("SELECT sum(events) AS e, sum(pageviews) AS p FROM visit_hours")
    assert (summed["e"], summed["p"]) == (truth.events, truth.pageviews)
    tables = open_tables(archive)
    archived = tables["events"].scan().to_arrow().column("event_id").to_pylist()
    stored = [str(r[0]) for r in await db.fetch("SELECT event_id FROM events")]
    assert sorted(archived) == sorted(stored)
    assert tables["initial_events"].scan().to_arrow().num_rows == truth.visits

    today = datetime.now(UTC).date()
    body = {
        "metrics": ["visitors", "visits", "pageviews", "events"],
        "date_range": [(today - timedelta(days=7)).isoformat(), today.isoformat()],
    }
    query = stats_query(site_id, body, tier=Tier.PRIVACY_POLICY, created=today - timedelta(days=30))
    expected = [truth.visitors, truth.visits, truth.pageviews, truth.events]
    recent = stats.Stores(db, None, 30)
    from_archive = stats.Stores(db, LocalArchiveReader(archive), 0)
    assert from_archive.uses_archive(query) and not recent.uses_archive(query)
    for stores in (recent, from_archive):
        answer = await stats.answer(stores, query, site_id, Tier.PRIVACY_POLICY, {})
        assert answer.results[0].metrics == expected
