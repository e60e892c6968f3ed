"""The archive's layout, without the libraries that write it: table names, columns, partitioning.

Kept apart from `archive_tables` (pyiceberg, pyarrow) so the Lambda images, which never open the
local archive, import the column lists without carrying those libraries.
"""

from __future__ import annotations

import urllib.parse
import urllib.request

NAMESPACE = "topup"
BUCKETS = 16

EVENT_COLUMNS = (
    "event_id", "site_id", "ts", "session_id", "visitor_id", "name", "hostname", "pathname",
    "props",
)  # fmt: skip
INITIAL_COLUMNS = (
    "event_id", "site_id", "ts", "session_id", "visitor_id", "distinct_id", "hostname",
    "entry_page", "referrer", "referrer_source", "channel", "utm_source", "utm_medium",
    "utm_campaign", "utm_content", "utm_term", "country", "region", "city", "timezone", "device",
    "browser", "browser_version", "os", "os_version", "screen", "device_model",
    "device_manufacturer",
)  # fmt: skip

# Iceberg types: identifiers are strings, the two hashes are longs, `ts` is a UTC timestamp.
_LONGS = frozenset({"session_id", "visitor_id"})
_REQUIRED = frozenset({"event_id", "site_id", "ts", "session_id", "hostname"})
COLUMNS = {"events": EVENT_COLUMNS, "initial_events": INITIAL_COLUMNS}
# (partition field name, source column, Iceberg transform)
PARTITION_FIELDS = (("site_bucket", "site_id", f"bucket[{BUCKETS}]"), ("ts_day", "ts", "day"))


def iceberg_fields(table: str) -> list[tuple[int, str, str, bool]]:
    """(field id, name, Iceberg type, required) of a table's columns, in order."""
    return [
        (
            position,
            name,
            "timestamptz" if name == "ts" else "long" if name in _LONGS else "string",
            name in _REQUIRED,
        )
        for position, name in enumerate(COLUMNS[table], start=1)
    ]


def local_path(location: str) -> str | None:
    """Where a file the archive's metadata names (a `file://` URI or a plain path) lies on this
    machine; None when it lies elsewhere (`s3://`)."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file":
        return urllib.request.url2pathname(parsed.path)
    return location if not parsed.scheme else None
