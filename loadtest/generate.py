"""Generate N realistic events for one site straight into Postgres (COPY, batched) and the
archive (Iceberg appends, batched), with the attributes process would have derived, and the
ground truth of what was written.

    python -m loadtest.generate --events 1000000 --days 30 [--site SITE_ID] [--no-archive]

The archive is the local one under `TOPUP_DATA_DIR` (`.topup/archive`, what `topup dev` reads).

Visits come from `loadtest/traffic.py` (browsers, referrers, campaigns, countries, pages); a
fifth of the visits are returning visitors (seen earlier the same UTC day: a visitor id is a
daily hash). The closed days' visit totals and the open days' counts so far are built at the
end, as `topup maintain` would.
The truth (events, page views, visits, visitors, page views per day and per page) is computed
while the rows are made, not read back with SQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from loadtest.traffic import visit
from process import user_agents
from process.archive import LocalArchive
from process.referrers import acquisition, utm_tags
from process.rows import EventRow, InitialRow
from topup import open_days, rollups
from topup.archive_layout import EVENT_COLUMNS, INITIAL_COLUMNS
from topup.database import connect, migrate
from topup.ids import new_id

BATCH = 50_000


class Truth(msgspec.Struct):
    events: int = 0
    pageviews: int = 0
    visits: int = 0
    visitors: int = 0
    pageviews_by_day: dict[str, int] = msgspec.field(default_factory=dict)
    pageviews_by_page: dict[str, int] = msgspec.field(default_factory=dict)


def rows(site_id: uuid.UUID, events: int, days: int, seed: int, now: datetime):  # type: ignore[no-untyped-def]
    """Yield (event row, initial row or None) tuples, and fill in the truth as it goes."""
    rng = random.Random(seed)
    truth = Truth()
    by_day: Counter[str] = Counter()
    by_page: Counter[str] = Counter()
    visitors: dict[date, list[int]] = {}  # by the UTC day their hash belongs to
    made = number = 0
    start = now - timedelta(days=days)
    span = (now - start).total_seconds()
    while made < events:
        number += 1
        session = rng.getrandbits(62)
        at = start + timedelta(seconds=rng.random() * span * 0.999)
        # As process hashes them: a visitor id lasts one UTC day (the salt's), so a returning
        # visitor is one seen earlier that day.
        seen = visitors.setdefault(at.date(), [])
        returning = seen and rng.random() < 0.2
        visitor = rng.choice(seen) if returning else rng.getrandbits(62)
        if not returning:
            seen.append(visitor)
        first = True
        for hit in visit(rng, "example.com", number):
            if made >= events or at >= now:
                break
            path = hit.url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]
            pathname = "/" + path
            event = (new_id(), site_id, at, session, visitor, hit.name, "example.com", pathname,
                     hit.props)  # fmt: skip
            initial = None
            if first:
                agent = user_agents.classify(hit.user_agent)
                acq = acquisition("example.com", hit.referrer, utm_tags(hit.url), ["example.com"])
                utm = utm_tags(hit.url)
                country, region, city, timezone = hit.geo
                initial = (event[0], site_id, at, session, visitor, None, "example.com", pathname,
                           acq.referrer, acq.source, acq.channel, utm.source, utm.medium,
                           utm.campaign, utm.content, utm.term, country, f"{country}-{region}",
                           city.replace("%20", " "), timezone, agent.device, agent.browser,
                           (agent.browser_version or "").split(".")[0] or None, agent.os,
                           (agent.os_version or "").split(".")[0] or None,
                           f"{hit.screen[0]}x{hit.screen[1]}", None, None)  # fmt: skip
                truth.visits += 1
                first = False
            made += 1
            if hit.name == "pageview":
                truth.pageviews += 1
                by_day[at.date().isoformat()] += 1
                by_page[pathname] += 1
            yield event, initial
            at += timedelta(seconds=rng.randint(5, 300))
    truth.events = made
    truth.visitors = sum(len(seen) for seen in visitors.values())
    truth.pageviews_by_day = dict(by_day)
    truth.pageviews_by_page = dict(by_page)
    yield truth, None


async def generate(database_url: str, events: int, days: int, seed: int = 1,
                   site_id: uuid.UUID | None = None,
                   archive: Path | None = None) -> tuple[uuid.UUID, Truth]:  # fmt: skip
    """Write the events for a site (a new one unless given), and into the local archive under
    `archive` when given; return the truth."""
    conn = await connect(database_url)
    archived = LocalArchive(archive) if archive is not None else None
    if archived is not None:
        await archived.start()
    try:
        await migrate(conn)
        now = datetime.now(UTC)
        first_day = (now - timedelta(days=days + 1)).date()
        await conn.execute("SELECT topup_create_partitions($1, $2)", first_day, now.date())
        if site_id is None:
            account = await conn.fetchval(
                "INSERT INTO accounts (id, name) VALUES ($1, 'generated') RETURNING id", new_id()
            )
            site_id = await conn.fetchval(
                """INSERT INTO sites (id, account_id, name, domains, tier, allowance_remaining)
                   VALUES ($1, $2, 'generated', ARRAY['example.com'], 'privacy_policy', 0)
                   RETURNING id""",
                new_id(), account,
            )  # fmt: skip
        assert site_id is not None
        event_batch: list[tuple[Any, ...]] = []
        initial_batch: list[tuple[Any, ...]] = []
        truth = Truth()
        for event, initial in rows(site_id, events, days, seed, now):
            if isinstance(event, Truth):
                truth = event
                break
            event_batch.append(event)
            if initial is not None:
                initial_batch.append(initial)
            if len(event_batch) >= BATCH:
                await _copy(conn, event_batch, initial_batch, archived)
                event_batch, initial_batch = [], []
        await _copy(conn, event_batch, initial_batch, archived)
        # Process keeps the sessions' hourly summaries as it writes; rows loaded around it
        # need them computed.
        await conn.execute(
            "SELECT topup_rebuild_visit_hours($1, $2, $3)", first_day, now.date(), site_id
        )
        for table in ("events", "initial_events", "visit_hours"):
            await conn.execute(f"ANALYZE {table}")
        # As `topup maintain` would now: a long load may have closed another day meanwhile.
        await rollups.build_closed_days(conn, first_day, datetime.now(UTC))
        await open_days.build_open_days(conn, datetime.now(UTC))
        return site_id, truth
    finally:
        await conn.close()
        if archived is not None:
            await archived.close()


async def _copy(conn: Any, events: list[tuple[Any, ...]], initials: list[tuple[Any, ...]],
                archive: LocalArchive | None) -> None:  # fmt: skip
    if events:
        await conn.copy_records_to_table("events", records=events, columns=list(EVENT_COLUMNS))
    if initials:
        await conn.copy_records_to_table(
            "initial_events", records=initials, columns=list(INITIAL_COLUMNS)
        )
    if archive is not None and events:
        await archive.write([EventRow(*e) for e in events], [InitialRow(*i) for i in initials])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--site", type=uuid.UUID)
    parser.add_argument("--truth", help="write the ground truth here as JSON")
    parser.add_argument("--no-archive", action="store_true", help="write Postgres only")
    args = parser.parse_args()
    from topup.settings import load_settings

    settings = load_settings()
    if settings.database_url is None:
        raise SystemExit("set TOPUP_DATABASE_URL (or run inside topup dev's database)")
    archive = None if args.no_archive else Path(settings.data_dir) / "archive"
    site_id, truth = asyncio.run(
        generate(settings.database_url, args.events, args.days, args.seed, args.site, archive)
    )
    report = {"site_id": str(site_id), **msgspec.to_builtins(truth)}
    if args.truth:
        with open(args.truth, "w") as f:
            json.dump(report, f, indent=2)
    print(json.dumps({k: v for k, v in report.items() if not isinstance(v, dict)}))


if __name__ == "__main__":
    main()
