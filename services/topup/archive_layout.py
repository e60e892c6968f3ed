"""The archive's layout, without the libraries that write it: table names, columns, partitioning.

Kept apart from `archive_tables` (pyiceberg, pyarrow) so the Lambda images, which never open the
local archive, import the column lists without carrying those libraries.
"""

from __future__ import annotations

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
