"""Answering a Stats API query: run it, compute the derived metrics, order, page, compare.

The response has Plausible's v2 shape: `{results: [{metrics, dimensions}], meta, query}`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from query import local_days_sql, visit_days_sql, visit_sql
from query.archive_reader import ArchiveReader
from query.stats_request import (
    TIME_DIMENSIONS,
    Combination,
    Condition,
    Filter,
    StatsQuery,
)
from query.stats_sql import POSTGRES, TRINO, build
from topup.tiers import Tier

# Metrics where a change is a difference in points, not a percentage of the old value.
POINT_CHANGES = frozenset({"bounce_rate", "percentage", "conversion_rate"})


class Comparison(msgspec.Struct):
    dimensions: list[Any]
    metrics: list[Any]
    change: list[Any]


class Row(msgspec.Struct, omit_defaults=True):
    metrics: list[Any]
    dimensions: list[Any]
    comparison: Comparison | None = None


class StatsResponse(msgspec.Struct):
    results: list[Row]
    meta: dict[str, Any]
    query: dict[str, Any]


def _visit_only(node: Filter | None) -> Filter | None:
    """The filters without their top-level event:name/props conditions (conversion baseline)."""
    if isinstance(node, Condition):
        event = node.dimension == "event:name" or node.dimension.startswith("event:props:")
        return None if event else node
    if isinstance(node, Combination) and node.operator == "and":
        kept = [c for c in (_visit_only(c) for c in node.children) if c is not None]
        return None if not kept else kept[0] if len(kept) == 1 else Combination("and", tuple(kept))
    return node


def _round(value: Any, digits: int | None = None) -> Any:
    """An average rounded for the answer. Postgres averages in exact decimals, the archive
    (DuckDB, Athena) in doubles, where a tie such as 12.5 can come out as 12.500000000000002:
    cut the float noise first, so both stores round a tie alike."""
    return round(round(float(value), 9), digits)


def _metric(name: str, row: Mapping[str, Any]) -> Any:
    if name == "visitors":
        return row["visitors"]
    if name == "pageviews":
        return row["pageviews"]
    if name == "events":
        return row["events"]
    if name == "visits":
        return row["visits"]
    if name == "visit_duration":
        return 0 if row["visit_duration"] is None else _round(row["visit_duration"])
    if name == "bounce_rate":
        return 0 if row["bounce_rate"] is None else _round(row["bounce_rate"])
    if name == "views_per_visit":
        return 0.0 if row["views_per_visit"] is None else _round(row["views_per_visit"], 2)
    if name == "percentage":
        total = row["total_visitors"]
        return round(100 * row["visitors"] / total, 1) if total else 0.0
    if name == "conversion_rate":
        base = row["base_visitors"]
        return round(100 * row["visitors"] / base, 2) if base else 0.0
    raise AssertionError(name)


def _dimension(value: Any, query: StatsQuery, name: str) -> Any:
    if name in TIME_DIMENSIONS and isinstance(value, datetime):
        return (
            value.strftime("%Y-%m-%d %H:%M:%S")
            if query.interval == "hour"
            else value.date().isoformat()
        )
    return value


def time_labels(query: StatsQuery) -> list[str]:
    """Every bucket of the range, so a graph can show the empty ones."""
    labels = []
    if query.interval == "hour":
        day = query.first_day
        while day <= query.last_day:
            labels += [f"{day.isoformat()} {hour:02d}:00:00" for hour in range(24)]
            day += timedelta(days=1)
        return labels
    current = _truncate(query.first_day, query.interval or "day")
    while current <= query.last_day:
        labels.append(current.isoformat())
        current = _next(current, query.interval or "day")
    return labels


def _truncate(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def _next(day: date, interval: str) -> date:
    if interval == "week":
        return day + timedelta(days=7)
    if interval == "month":
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return day + timedelta(days=1)


class Stores:
    """Where a range is answered: Postgres when it lies inside the recent window (it holds every
    day of it), the archive otherwise. In Postgres, the top stats and cards add up the closed
    days' totals (`visit_days_sql`), the daily graph, page views per page and custom events read
    the closed local days (`local_days_sql`), other visit-level queries read the sessions' hourly
    summaries (`visit_sql`), the rest the events."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        archive: ArchiveReader | None,
        recent_window_days: int,
        pool: asyncpg.Pool | None = None,
    ) -> None:
        self.conn = conn
        self.archive = archive
        self.recent_window_days = recent_window_days
        self.pool = pool  # where `beside` finds a second connection

    @asynccontextmanager
    async def beside(self) -> AsyncIterator[Stores | None]:
        """The same stores on a second connection, to run a query beside one on this; None
        when the pool has no free connection now. Waiting for one could deadlock: requests
        that each hold a connection and wait for a second."""
        pool = self.pool
        if pool is None or pool.get_max_size() - pool.get_size() + pool.get_idle_size() < 1:
            yield None
            return
        async with pool.acquire() as conn:
            yield Stores(conn, self.archive, self.recent_window_days)

    def uses_archive(self, query: StatsQuery) -> bool:
        oldest_recent = datetime.now(UTC) - timedelta(days=self.recent_window_days)
        return self.archive is not None and query.start < oldest_recent

    async def fetch(self, query: StatsQuery, site_id: Any, tier: Tier) -> list[Mapping[str, Any]]:
        if self.uses_archive(query):
            assert self.archive is not None
            sql, params = build(query, site_id, tier, _visit_only(query.filter), TRINO)
            return list(await self.archive.fetch(sql, params, site_id, query.start, query.end))
        if visit_days_sql.answers(query, tier):
            totals = await visit_days_sql.fetch(self.conn, query, site_id, tier)
            if totals is not None:
                return totals
        if local_days_sql.answers(query, tier):

            async def rest(part: StatsQuery) -> list[Mapping[str, Any]]:
                return await self._scan(part, site_id, tier)

            days = await local_days_sql.fetch(self.conn, query, site_id, tier, rest)
            if days is not None:
                return days
        return await self._scan(query, site_id, tier)

    async def _scan(self, query: StatsQuery, site_id: Any, tier: Tier) -> list[Mapping[str, Any]]:
        """The range's rows from the sessions' hourly summaries, else from the events."""
        visit_filter = _visit_only(query.filter)
        if visit_sql.answers(query, visit_filter):
            sql, params = visit_sql.build(query, site_id, tier, visit_filter)
        else:
            sql, params = build(query, site_id, tier, visit_filter, POSTGRES)
        return list(await self.conn.fetch(sql, *params))


async def _rows(stores: Stores, query: StatsQuery, site_id: Any, tier: Tier) -> list[Row]:
    records = await stores.fetch(query, site_id, tier)
    rows = []
    for record in records:
        dims = [_dimension(record[f"d{i}"], query, d) for i, d in enumerate(query.dimensions)]
        rows.append(Row(metrics=[_metric(m, record) for m in query.metrics], dimensions=dims))
    return rows


def _sort(rows: list[Row], query: StatsQuery) -> list[Row]:
    order = list(query.order_by)
    if not order:
        time_dim = next((d for d in query.dimensions if d in TIME_DIMENSIONS), None)
        order = [(time_dim, "asc")] if time_dim else [(query.metrics[0], "desc")]
    # Ties are broken by the dimensions, so every store gives the same order.
    ordered = {name for name, _ in order}
    order += [(d, "asc") for d in query.dimensions if d not in ordered]
    for name, direction in reversed(order):  # stable sorts, least significant key first
        descending = direction == "desc"
        if name in query.metrics:
            index = query.metrics.index(name)
            rows.sort(key=lambda r: r.metrics[index], reverse=descending)
        else:
            index = query.dimensions.index(name)
            rows.sort(
                key=lambda r: (r.dimensions[index] is None, str(r.dimensions[index])),
                reverse=descending,
            )
    return rows


def previous_period(query: StatsQuery) -> StatsQuery:
    length = query.end - query.start
    days = (query.last_day - query.first_day).days + 1
    return query.shifted(
        query.start - length,
        query.start,
        query.first_day - timedelta(days=days),
        query.first_day - timedelta(days=1),
    )


def _change(metric: str, now: Any, before: Any) -> Any:
    if metric in POINT_CHANGES:
        return round(now - before, 2)
    if not before:
        return None if not now else 100
    return math.floor(100 * (now - before) / before + 0.5)


async def _both_periods(
    stores: Stores, query: StatsQuery, before_query: StatsQuery, site_id: Any, tier: Tier
) -> tuple[list[Row], list[Row]]:
    """The rows of the range and of the previous period: on two connections at the same time
    when the pool has one free, so a comparison takes as long as one period, not two."""
    async with stores.beside() as other:
        if other is None:
            return (
                await _rows(stores, query, site_id, tier),
                await _rows(stores, before_query, site_id, tier),
            )
        try:
            # A task group, not gather: when one period fails the other is cancelled before
            # its connection goes back to the pool.
            async with asyncio.TaskGroup() as group:
                now = group.create_task(_rows(stores, query, site_id, tier))
                before = group.create_task(_rows(other, before_query, site_id, tier))
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None  # as the sequential path raises it
        return now.result(), before.result()


async def answer(
    stores: Stores, query: StatsQuery, site_id: Any, tier: Tier, echo: dict[str, Any]
) -> StatsResponse:
    before_query = previous_period(query) if query.compare else None
    before: list[Row] = []
    if before_query is None:
        now = await _rows(stores, query, site_id, tier)
    else:
        now, before = await _both_periods(stores, query, before_query, site_id, tier)
    rows = _sort(now, query)
    meta: dict[str, Any] = {}
    if query.total_rows:
        meta["total_rows"] = len(rows)
    if query.time_labels:
        meta["time_labels"] = time_labels(query)
    page = rows[query.offset : query.offset + query.limit]
    if before_query is not None:
        time_index = next((i for i, d in enumerate(query.dimensions) if d in TIME_DIMENSIONS), None)
        if time_index is None:
            by_key = {tuple(r.dimensions): r for r in before}
            matched = [by_key.get(tuple(r.dimensions)) for r in page]
        else:
            # Buckets match by position: the previous period's first day with this one's.
            labels_now, labels_before = time_labels(query), time_labels(before_query)
            shifted = {}
            for r in before:
                key = list(r.dimensions)
                if key[time_index] in labels_before:
                    key[time_index] = labels_now[labels_before.index(key[time_index])]
                shifted[tuple(key)] = r
            matched = [shifted.get(tuple(r.dimensions)) for r in page]
        for row, old in zip(page, matched, strict=True):
            old_metrics = old.metrics if old else [0 for _ in query.metrics]
            row.comparison = Comparison(
                dimensions=old.dimensions if old else row.dimensions,
                metrics=old_metrics,
                change=[
                    _change(m, n, b)
                    for m, n, b in zip(query.metrics, row.metrics, old_metrics, strict=True)
                ],
            )
        meta["comparison_date_range"] = [
            before_query.start.isoformat(),
            before_query.end.isoformat(),
        ]
    echo = echo | {"date_range": [query.start.isoformat(), query.end.isoformat()]}
    return StatsResponse(results=page, meta=meta, query=echo)
