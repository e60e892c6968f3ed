"""Generated traffic stored through the real process pipeline, and the ground truth of the
Stats API computed in plain Python from the stored rows (never from the Stats SQL)."""

from __future__ import annotations

import random
import re
import statistics
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import msgspec

from loadtest.traffic import visit
from process.archive import LocalArchive
from process.deliveries import Processor
from process.site_directory import SiteDirectory
from process.visitors import Salts
from query import stats_request
from topup.database import create_pool
from topup.ids import new_id
from topup.tiers import Tier, kept_fields
from topup.wire import DeliveryRecord, DeliveryRequest, IngestedEvent, RequestContext, encode_record


class NullArchive:
    async def start(self) -> None: ...

    async def write(self, events: list, initials: list) -> None: ...

    async def close(self) -> None: ...


def generate(
    site_id: uuid.UUID, *, days: int, visits_per_day: int, seed: int, now: datetime
) -> list[IngestedEvent]:
    rng = random.Random(seed)
    # A quarter of the last day's visits begin in the two minutes before `now`, so that "today"
    # holds visits in every zone whatever the hour (tests run just after midnight too). Their own
    # generator leaves every other draw as it was.
    just_now = random.Random(seed + 1)
    out = []
    number = 0
    for day in range(days, -1, -1):
        devices: list[tuple[str, str]] = []  # (IP, User-Agent) of the day's visits so far
        for _ in range(visits_per_day):
            number += 1
            at = now - timedelta(days=day, seconds=rng.randint(0, 86_399))
            if day == 0 and just_now.random() < 0.25:
                at = now - timedelta(seconds=just_now.randint(30, 120))
            if at > now:
                continue
            hits = list(visit(rng, "example.com", number))
            # A quarter of the visits are returning visitors: a new session from a device seen
            # earlier that day, so visitors and visits differ in the tiers that hash devices.
            device = (hits[0].ip, hits[0].user_agent)
            if devices and rng.random() < 0.25:
                device = rng.choice(devices)
            devices.append(device)
            for hit in hits:
                if at > now:
                    break
                country, region, city, tz = hit.geo
                out.append(
                    IngestedEvent(
                        event_id=new_id(),
                        received_at=at,
                        name=hit.name,
                        url=hit.url,
                        context=RequestContext(
                            ip=device[0],
                            user_agent=device[1],
                            country=country,
                            region=region,
                            city=city,
                            timezone=tz,
                        ),
                        site_id=site_id,
                        referrer=hit.referrer,
                        props=hit.props,
                        session_id=hit.session,
                        screen_width=hit.screen[0],
                        screen_height=hit.screen[1],
                    )
                )
                at += timedelta(seconds=rng.randint(5, 400))
    return out


async def store(
    database_url: str, events: list[IngestedEvent], archive_root: Path | None = None
) -> None:
    """Store events through the real process pipeline: Postgres, and the local archive."""
    pool = await create_pool(database_url, max_size=2)
    archive = NullArchive() if archive_root is None else LocalArchive(archive_root)
    await archive.start()
    processor = Processor(pool, archive, SiteDirectory(), Salts())
    try:
        for start in range(0, len(events), 400):
            chunk = events[start : start + 400]
            records = [
                DeliveryRecord(encode_record(chunk[i : i + 8])) for i in range(0, len(chunk), 8)
            ]
            await processor.handle(DeliveryRequest(str(new_id()), 0, records))
    finally:
        await archive.close()
        await pool.close()


@dataclass
class Truth:
    """The stored rows, joined as a person would read them."""

    rows: list[dict[str, Any]]  # one per event, with its session's attributes
    tier: str

    @classmethod
    async def load(cls, conn: Any, site_id: uuid.UUID, tier: str) -> Truth:
        initials = {
            r["session_id"]: dict(r)
            for r in await conn.fetch("SELECT * FROM initial_events WHERE site_id = $1", site_id)
        }
        rows = []
        for event in await conn.fetch("SELECT * FROM events WHERE site_id = $1", site_id):
            session = initials[event["session_id"]]
            row = {
                k: v
                for k, v in session.items()
                if k not in ("event_id", "ts", "visitor_id", "hostname")
            }
            row.update(dict(event))
            row["source"] = session["referrer_source"]
            rows.append(row)
        return cls(rows, tier)

    def visitor(self, row: dict[str, Any]) -> str:
        if self.tier == "banner_free":
            return str(row["session_id"])
        if self.tier == "full" and row["distinct_id"]:
            return "d" + row["distinct_id"]
        return (
            str(row["visitor_id"])
            if row["visitor_id"] is not None
            else "s" + str(row["session_id"])
        )

    def in_range(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        rows = [r for r in self.rows if start <= r["ts"] < end]
        last_page: dict[int, tuple[datetime, str]] = {}
        for r in rows:
            if r["name"] == "pageview" and (
                r["session_id"] not in last_page or r["ts"] >= last_page[r["session_id"]][0]
            ):
                last_page[r["session_id"]] = (r["ts"], r["pathname"])
        for r in rows:
            r["exit_page"] = last_page.get(r["session_id"], (None, None))[1]
        return rows

    def visitors_and_pageviews(
        self, rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
    ) -> dict[Any, list[int]]:
        """Per key of the rows: [distinct visitors, page views]."""
        visitors: dict[Any, set[str]] = defaultdict(set)
        pageviews: dict[Any, int] = defaultdict(int)
        for r in rows:
            visitors[key(r)].add(self.visitor(r))
            pageviews[key(r)] += r["name"] == "pageview"
        return {k: [len(who), pageviews[k]] for k, who in visitors.items()}

    def aggregate(
        self, rows: list[dict[str, Any]], all_rows: list[dict[str, Any]]
    ) -> dict[str, Any]:
        sessions = {r["session_id"] for r in rows}
        per_session: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in all_rows:
            if r["session_id"] in sessions:
                per_session[r["session_id"]].append(r)
        pageviews = [sum(1 for e in evs if e["name"] == "pageview") for evs in per_session.values()]
        durations = [
            (max(e["ts"] for e in evs) - min(e["ts"] for e in evs)).total_seconds()
            for evs in per_session.values()
        ]
        return {
            "visitors": len({self.visitor(r) for r in rows}),
            "pageviews": sum(1 for r in rows if r["name"] == "pageview"),
            "events": len(rows),
            "visits": len(sessions),
            "bounce_rate": round(100 * sum(1 for p in pageviews if p <= 1) / len(pageviews))
            if pageviews
            else 0,
            "visit_duration": round(statistics.fmean(durations)) if durations else 0,
            "views_per_visit": round(statistics.fmean(pageviews), 2) if pageviews else 0.0,
        }


def matcher(operator: str, values: list[str]) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if operator == "is":
            return value in values
        if operator == "is_not":
            return value is None or value not in values
        if operator == "contains":
            return value is not None and any(v.lower() in value.lower() for v in values)
        if operator == "contains_not":
            return value is None or not any(v.lower() in value.lower() for v in values)
        if operator == "matches":
            return value is not None and any(re.search(v, value) for v in values)
        if operator == "matches_not":
            return value is None or not any(re.search(v, value) for v in values)
        raise AssertionError(operator)

    return test


def local_day(ts: datetime, zone: str) -> str:
    return ts.astimezone(ZoneInfo(zone)).date().isoformat()


__all__ = ["UTC", "Truth", "generate", "local_day", "matcher", "store"]


def stats_query(
    site_id: uuid.UUID,
    body: dict[str, Any],
    *,
    tier: Tier,
    zone: str = "UTC",
    created: date = date(2026, 1, 1),
) -> stats_request.StatsQuery:
    """A Stats API body checked as the API checks it, for calling the query code directly:
    today is today in `zone`, and the tier collects everything it may."""
    parsed = msgspec.convert({"site_id": str(site_id)} | body, stats_request.QueryBody)
    return stats_request.check(
        parsed,
        tier=tier,
        kept=kept_fields(tier, None),
        zone=zone,
        today=datetime.now(UTC).astimezone(ZoneInfo(zone)).date(),
        created=created,
    )
