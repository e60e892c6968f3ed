"""Why an event was not stored: one enum, counted per site and day in `usage_daily`."""

from __future__ import annotations

import enum


class DropReason(enum.StrEnum):
    INVALID = "invalid"  # a record that does not decode as events
    UNKNOWN_SITE = "unknown_site"
    OVER_ALLOWANCE = "over_allowance"
    HOSTNAME_NOT_ALLOWED = "hostname_not_allowed"
    BOT = "bot"
    RATE_LIMITED = "rate_limited"


ACCEPTED = "accepted"  # the `usage_daily.outcome` of stored events
