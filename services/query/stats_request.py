"""The Stats API's request: Plausible's v2 query body, decoded and checked into a `StatsQuery`.

Every name a query may use is in the tables below; anything else is refused with a 400 that
says what is wrong, so SQL is only ever built from these names and bind parameters.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import msgspec

from topup.tiers import Tier
from topup.wire import UndecodableError, decode_untrusted

METRICS = (
    "visitors",
    "visits",
    "pageviews",
    "views_per_visit",
    "bounce_rate",
    "visit_duration",
    "events",
    "percentage",
    "conversion_rate",
)
SESSION_METRICS = frozenset({"visits", "views_per_visit", "bounce_rate", "visit_duration"})

# dimension → (column of the joined event rows, the tier field that must be kept)
DIMENSIONS: dict[str, tuple[str, str]] = {
    "event:name": ("name", "name"),
    "event:page": ("pathname", "pathname"),
    "event:hostname": ("hostname", "hostname"),
    "visit:source": ("source", "referrer_source"),
    "visit:channel": ("channel", "channel"),
    "visit:referrer": ("referrer", "referrer"),
    "visit:utm_source": ("utm_source", "utm_source"),
    "visit:utm_medium": ("utm_medium", "utm_medium"),
    "visit:utm_campaign": ("utm_campaign", "utm_campaign"),
    "visit:utm_content": ("utm_content", "utm_content"),
    "visit:utm_term": ("utm_term", "utm_term"),
    "visit:device": ("device", "device"),
    "visit:browser": ("browser", "browser"),
    "visit:browser_version": ("browser_version", "browser_version"),
    "visit:os": ("os", "os"),
    "visit:os_version": ("os_version", "os_version"),
    "visit:screen": ("screen", "screen"),
    "visit:country": ("country", "country"),
    "visit:region": ("region", "region"),
    "visit:city": ("city", "city"),
    "visit:entry_page": ("entry_page", "pathname"),
    "visit:exit_page": ("exit_page", "pathname"),
}
PROPS_PREFIX = "event:props:"
TIME_DIMENSIONS = {
    "time": None,
    "time:hour": "hour",
    "time:day": "day",
    "time:week": "week",
    "time:month": "month",
}
OPERATORS = ("is", "is_not", "contains", "contains_not", "matches", "matches_not")
PRESETS = ("day", "7d", "30d", "month", "6mo", "12mo", "year", "all")
MAX_LIMIT = 10_000


class InvalidQueryError(ValueError):
    """The query cannot be answered; the message says exactly why."""


class Pagination(msgspec.Struct, forbid_unknown_fields=True):
    limit: int = MAX_LIMIT
    offset: int = 0


class Comparisons(msgspec.Struct, forbid_unknown_fields=True):
    mode: Literal["previous_period"] = "previous_period"


class Include(msgspec.Struct, forbid_unknown_fields=True):
    time_labels: bool = False
    total_rows: bool = False
    comparisons: Comparisons | None = None


class QueryBody(msgspec.Struct, forbid_unknown_fields=True):
    """Plausible's Stats API v2 body."""

    site_id: str
    metrics: list[str]
    date_range: str | list[str]
    dimensions: list[str] = []
    filters: list[Any] = []
    order_by: list[list[str]] | None = None
    include: Include = msgspec.field(default_factory=Include)
    pagination: Pagination = msgspec.field(default_factory=Pagination)


class Condition(msgspec.Struct, frozen=True):
    operator: str
    dimension: str
    values: tuple[str, ...]


class Combination(msgspec.Struct, frozen=True):
    operator: Literal["and", "or", "not"]
    children: tuple[Filter, ...]


Filter = Condition | Combination


class StatsQuery(msgspec.Struct, frozen=True):
    """A checked query: names known, the range resolved to UTC instants in the site's zone."""

    metrics: tuple[str, ...]
    dimensions: tuple[str, ...]
    filter: Filter | None
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    first_day: date
    last_day: date
    timezone: str
    interval: str | None  # hour/day/week/month when a time dimension is asked for
    order_by: tuple[tuple[str, str], ...]
    limit: int
    offset: int
    time_labels: bool
    total_rows: bool
    compare: bool
    range_label: str | list[str]

    def shifted(self, start: datetime, end: datetime, first: date, last: date) -> StatsQuery:
        return msgspec.structs.replace(self, start=start, end=end, first_day=first, last_day=last)


_decoder = msgspec.json.Decoder(QueryBody)


def decode_body(raw: bytes) -> QueryBody:
    try:
        return decode_untrusted(_decoder, raw, "query")
    except UndecodableError as exc:
        raise InvalidQueryError(str(exc)) from None


def _check_dimension(name: str, kept: frozenset[str], tier: Tier) -> None:
    if name in TIME_DIMENSIONS:
        return
    if name.startswith(PROPS_PREFIX):
        key = name[len(PROPS_PREFIX) :]
        if not key or len(key.encode()) > 300:
            raise InvalidQueryError(f"invalid property dimension {name!r}")
        field = "props"
    elif name in DIMENSIONS:
        field = DIMENSIONS[name][1]
    else:
        raise InvalidQueryError(f"unknown dimension {name!r}")
    if field not in kept:
        raise InvalidQueryError(
            f"dimension {name!r} is not collected by this site (tier {tier.value}"
            " or its allowed fields)"
        )


def _filter(raw: Any, kept: frozenset[str], tier: Tier, path: str) -> Filter:
    if not isinstance(raw, list) or not raw:
        raise InvalidQueryError(f'{path}: a filter is a list like ["is", "event:page", ["/"]]')
    operator = raw[0]
    if operator in ("and", "or"):
        if len(raw) != 2 or not isinstance(raw[1], list) or not raw[1]:
            raise InvalidQueryError(f"{path}: {operator!r} takes a non-empty list of filters")
        children = tuple(_filter(c, kept, tier, f"{path}[1][{i}]") for i, c in enumerate(raw[1]))
        return Combination(operator, children)
    if operator == "not":
        if len(raw) != 2:
            raise InvalidQueryError(f"{path}: 'not' takes one filter")
        return Combination("not", (_filter(raw[1], kept, tier, f"{path}[1]"),))
    if operator not in OPERATORS:
        raise InvalidQueryError(
            f"{path}: unknown filter operator {operator!r} "
            f"(expected one of: {', '.join(OPERATORS)}, and, or, not)"
        )
    if len(raw) != 3 or not isinstance(raw[1], str) or not isinstance(raw[2], list) or not raw[2]:
        raise InvalidQueryError(f"{path}: expected [{operator!r}, dimension, [values...]]")
    dimension = raw[1]
    if dimension in TIME_DIMENSIONS:
        raise InvalidQueryError(f"{path}: time dimensions cannot be filtered; use date_range")
    _check_dimension(dimension, kept, tier)
    values = []
    for value in raw[2]:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise InvalidQueryError(f"{path}: filter values are strings")
        values.append(str(value))
    if operator in ("matches", "matches_not"):
        for value in values:
            try:
                re.compile(value)
            except re.error as exc:
                raise InvalidQueryError(
                    f"{path}: invalid regular expression {value!r}: {exc}"
                ) from None
    return Condition(operator, dimension, tuple(values))


def _day(value: str, where: str) -> date:
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise InvalidQueryError(f"{where}: not a date or ISO datetime: {value!r}") from None


def resolve_range(
    date_range: str | list[str], zone: str, today: date, created: date
) -> tuple[datetime, datetime, date, date]:
    """(start, end) as UTC instants, and the first and last local day, for a date range."""
    tz = zoneinfo.ZoneInfo(zone)
    if isinstance(date_range, list):
        if len(date_range) != 2 or not all(isinstance(v, str) for v in date_range):
            raise InvalidQueryError("date_range: expected a preset or [from, to]")
        first, last = (_day(v, "date_range") for v in date_range)
        if all("T" in v for v in date_range):  # ISO datetimes: exact instants
            try:
                start, end = (datetime.fromisoformat(v) for v in date_range)
            except ValueError:
                raise InvalidQueryError("date_range: not ISO datetimes") from None
            if start.tzinfo is None or end.tzinfo is None:
                start, end = start.replace(tzinfo=tz), end.replace(tzinfo=tz)
            if end <= start:
                raise InvalidQueryError("date_range: the end must come after the start")
            return start.astimezone(UTC), end.astimezone(UTC), first, last
    elif date_range == "day":
        first = last = today
    elif date_range in ("7d", "30d"):
        first, last = today - timedelta(days=int(date_range[:-1]) - 1), today
    elif date_range == "month":
        first, last = today.replace(day=1), today
    elif date_range in ("6mo", "12mo"):
        months = int(date_range[:-2])
        year, month = divmod(today.year * 12 + today.month - 1 - (months - 1), 12)
        first, last = date(year, month + 1, 1), today
    elif date_range == "year":
        first, last = today.replace(month=1, day=1), today
    elif date_range == "all":
        first, last = created, today
    else:
        raise InvalidQueryError(
            f"date_range: unknown preset {date_range!r} "
            f"(expected one of: {', '.join(PRESETS)}, or [from, to])"
        )
    if last < first:
        raise InvalidQueryError("date_range: the end must not come before the start")
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), time(), tz).astimezone(UTC)
    return start, end, first, last


def check(
    body: QueryBody, *, tier: Tier, kept: frozenset[str], zone: str, today: date, created: date
) -> StatsQuery:
    """Turn a decoded body into a `StatsQuery`, or raise `InvalidQueryError`."""
    if not body.metrics:
        raise InvalidQueryError("metrics: ask for at least one metric")
    for metric in body.metrics:
        if metric not in METRICS:
            raise InvalidQueryError(
                f"unknown metric {metric!r} (expected one of: {', '.join(METRICS)})"
            )
    if len(set(body.metrics)) != len(body.metrics):
        raise InvalidQueryError("metrics: each metric at most once")
    for dimension in body.dimensions:
        _check_dimension(dimension, kept, tier)
    if len(set(body.dimensions)) != len(body.dimensions):
        raise InvalidQueryError("dimensions: each dimension at most once")
    times = [d for d in body.dimensions if d in TIME_DIMENSIONS]
    if len(times) > 1:
        raise InvalidQueryError("dimensions: at most one time dimension")
    if "percentage" in body.metrics and not body.dimensions:
        raise InvalidQueryError("metric 'percentage' needs a dimension to be a share of")
    filters = [_filter(f, kept, tier, f"filters[{i}]") for i, f in enumerate(body.filters)]
    combined: Filter | None = None
    if len(filters) == 1:
        combined = filters[0]
    elif filters:
        combined = Combination("and", tuple(filters))
    if (
        "conversion_rate" in body.metrics
        and not _names_event(combined)
        and "event:name" not in body.dimensions
    ):
        raise InvalidQueryError(
            "metric 'conversion_rate' needs an event:name filter (at the top level) or dimension"
        )
    order = []
    for item in body.order_by or []:
        if len(item) != 2 or item[1] not in ("asc", "desc"):
            raise InvalidQueryError(
                'order_by: expected [[metric or dimension, "asc" | "desc"], ...]'
            )
        if item[0] not in body.metrics and item[0] not in body.dimensions:
            raise InvalidQueryError(
                f"order_by: {item[0]!r} is neither a queried metric nor dimension"
            )
        order.append((item[0], item[1]))
    if not 1 <= body.pagination.limit <= MAX_LIMIT or body.pagination.offset < 0:
        raise InvalidQueryError(f"pagination: limit is 1 to {MAX_LIMIT}, offset at least 0")
    start, end, first, last = resolve_range(body.date_range, zone, today, created)
    interval = None
    if times:
        interval = TIME_DIMENSIONS[times[0]] or ("hour" if first == last else "day")
    if body.include.time_labels and not times:
        raise InvalidQueryError("include.time_labels needs a time dimension")
    return StatsQuery(
        metrics=tuple(body.metrics),
        dimensions=tuple(body.dimensions),
        filter=combined,
        start=start,
        end=end,
        first_day=first,
        last_day=last,
        timezone=zone,
        interval=interval,
        order_by=tuple(order),
        limit=body.pagination.limit,
        offset=body.pagination.offset,
        time_labels=body.include.time_labels,
        total_rows=body.include.total_rows,
        compare=body.include.comparisons is not None,
        range_label=body.date_range,
    )


def _names_event(node: Filter | None) -> bool:
    """Is there an event:name (or event:props) condition at the top level of the filters?"""
    if isinstance(node, Condition):
        return node.dimension == "event:name" or node.dimension.startswith(PROPS_PREFIX)
    if isinstance(node, Combination) and node.operator == "and":
        return any(_names_event(c) for c in node.children)
    return False
