"""The queries the dashboard loads for a date range (services/query/dashboard/app.js), in its two
phases: the top stats with their previous-period comparison and the graph, together; then the
first tab of each card, together. The query benchmark and the Locust dashboard readers send these.
"""

from __future__ import annotations

from typing import Any

TOP_STATS_METRICS = [
    "visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration",
]  # fmt: skip


def phases(date_range: str | list[str] = "30d") -> list[dict[str, dict[str, Any]]]:
    card = {"date_range": date_range, "pagination": {"limit": 9}}
    first = {
        "top stats": {"metrics": TOP_STATS_METRICS, "date_range": date_range,
                      "include": {"comparisons": {"mode": "previous_period"}}},
        "graph": {"metrics": ["visitors", "pageviews"], "date_range": date_range,
                  "dimensions": ["time:day"], "include": {"time_labels": True}},
    }  # fmt: skip
    cards = {
        "channels": {"metrics": ["visitors"], "dimensions": ["visit:channel"]} | card,
        "top pages": {"metrics": ["visitors"], "dimensions": ["event:page"]} | card,
        "countries": {"metrics": ["visitors"], "dimensions": ["visit:country"]} | card,
        "devices": {"metrics": ["visitors"], "dimensions": ["visit:device"]} | card,
        "custom events": {"metrics": ["events"], "dimensions": ["event:name"],
                          "filters": [["is_not", "event:name", ["pageview"]]]} | card,
    }  # fmt: skip
    return [first, cards]
