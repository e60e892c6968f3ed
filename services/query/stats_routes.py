"""The Stats API: `POST /api/query` (and `/api/v2/query`), realtime visitors, CSV export."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromQuery

from query import stats, stats_request
from query.deps import Caller, Conn
from topup import sites
from topup.accounts import NotFoundError
from topup.tiers import kept_fields


async def _site_for(conn: Conn, account: Caller, site_id: str) -> sites.Site:
    try:
        parsed = uuid.UUID(site_id)
    except ValueError:
        raise NotFoundError(f"no site {site_id}") from None
    return await sites.get_site(conn, parsed, account_id=account.id)


async def run_query(
    request: Request[Any, Any, Any], conn: Conn, account: Caller, raw: bytes
) -> stats.StatsResponse:
    body = stats_request.decode_body(raw)
    site = await _site_for(conn, account, body.site_id)
    today = datetime.now(UTC).astimezone(_zone(site.timezone)).date()
    query = stats_request.check(
        body,
        tier=site.tier,
        kept=kept_fields(site.tier, site.allowed_fields),
        zone=site.timezone,
        today=today,
        created=site.created_at.astimezone(_zone(site.timezone)).date(),
    )
    echo = msgspec.to_builtins(body)
    settings = request.app.state.settings
    stores = stats.Stores(
        conn, request.app.state.archive, settings.recent_window_days, request.app.state.pool
    )
    return await stats.answer(stores, query, site.id, site.tier, echo)


def _zone(name: str) -> Any:
    import zoneinfo

    return zoneinfo.ZoneInfo(name)


@post(["/api/query", "/api/v2/query"], status_code=200, tags=["stats"])
async def query_stats(
    request: Request[Any, Any, Any], account: Caller, conn: Conn
) -> stats.StatsResponse:
    """Plausible's Stats API v2: `{site_id, metrics, date_range, dimensions, filters,
    order_by, include, pagination}` → `{results, meta, query}`."""
    return await run_query(request, conn, account, await request.body())


class Realtime(msgspec.Struct):
    visitors: int
    since: datetime


@get("/api/realtime", tags=["stats"])
async def realtime(account: Caller, conn: Conn, site_id: FromQuery[str]) -> Realtime:
    """Visitors with an event in the last five minutes."""
    site = await _site_for(conn, account, site_id)
    since = datetime.now(UTC) - timedelta(minutes=5)
    from query.stats_sql import VISITOR

    visitors = await conn.fetchval(
        f"""SELECT count(DISTINCT {VISITOR[site.tier]}) FROM events e
            JOIN initial_events i ON i.site_id = e.site_id AND i.session_id = e.session_id
            WHERE e.site_id = $1 AND e.ts >= $2 AND i.ts >= $2::timestamptz - interval '2 days'""",
        site.id,
        since,
    )
    return Realtime(visitors=visitors, since=since)


@post("/api/export", status_code=200, tags=["stats"], media_type="text/csv")
async def export_csv(request: Request[Any, Any, Any], account: Caller, conn: Conn) -> Response[str]:
    """The same query as `/api/query`, as CSV: one column per dimension, then per metric."""
    raw = await request.body()
    answer = await run_query(request, conn, account, raw)
    body = stats_request.decode_body(raw)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*body.dimensions, *body.metrics])
    for row in answer.results:
        writer.writerow([*("" if d is None else d for d in row.dimensions), *row.metrics])
    filename = f"topup-{body.site_id}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


class PropKeys(msgspec.Struct):
    keys: list[str]


@get("/api/props", tags=["stats"])
async def prop_keys(
    account: Caller,
    conn: Conn,
    site_id: FromQuery[str],
    date_range: FromQuery[str] = "30d",
    event: FromQuery[str | None] = None,
) -> PropKeys:
    """The custom property keys seen in a preset range (of one event name, if given), from the
    recent store: what `event:props:<key>` can break down by."""
    site = await _site_for(conn, account, site_id)
    zone = _zone(site.timezone)
    today = datetime.now(UTC).astimezone(zone).date()
    start, end, _, _ = stats_request.resolve_range(
        date_range, site.timezone, today, site.created_at.astimezone(zone).date()
    )
    rows = await conn.fetch(
        """SELECT DISTINCT jsonb_object_keys(props) AS key FROM events
           WHERE site_id = $1 AND ts >= $2 AND ts < $3 AND props IS NOT NULL
             AND ($4::text IS NULL OR name = $4)
           ORDER BY key LIMIT 100""",
        site.id,
        start,
        end,
        event,
    )
    return PropKeys([r["key"] for r in rows])
