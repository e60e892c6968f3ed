"""The privacy tiers: one place that knows what each tier may keep."""

from __future__ import annotations

import enum


class Tier(enum.StrEnum):
    """A site's privacy tier, from least to most collected (DESIGN.md, "Privacy tiers")."""

    BANNER_FREE = "banner_free"
    PRIVACY_POLICY = "privacy_policy"
    FULL = "full"


DEFAULT_TIER = Tier.BANNER_FREE

# Fields every tier keeps. Session-level fields are stored once per session in `initial_events`.
_BASICS = frozenset(
    {
        "name",
        "pathname",
        "hostname",
        "country",
        "region",
        "device",
        "browser",
        "os",
        "referrer",
        "referrer_source",
        "channel",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "utm_content",
        "utm_term",
    }
)
_PRIVACY_POLICY = _BASICS | {
    "visitor_id",
    "props",
    "city",
    "timezone",
    "browser_version",
    "os_version",
    "screen",
}
# `full_referrer` keeps the whole referrer URL instead of origin + path; `full_versions` keeps
# browser and OS versions whole instead of the major version.
_FULL = _PRIVACY_POLICY | {
    "distinct_id",
    "full_referrer",
    "full_versions",
    "device_model",
    "device_manufacturer",
}

TIER_FIELDS: dict[Tier, frozenset[str]] = {
    Tier.BANNER_FREE: _BASICS,
    Tier.PRIVACY_POLICY: frozenset(_PRIVACY_POLICY),
    Tier.FULL: frozenset(_FULL),
}

# Every field any tier may keep; `allowed_fields` must be a subset of the site's tier.
ALL_FIELDS: frozenset[str] = TIER_FIELDS[Tier.FULL]


class UnknownTierError(ValueError):
    """A tier name that is not one of `Tier`."""


def parse_tier(value: str) -> Tier:
    """Turn a user-supplied tier name into a `Tier`, with a message that lists the valid ones."""
    try:
        return Tier(value)
    except ValueError:
        valid = ", ".join(t.value for t in Tier)
        raise UnknownTierError(f"unknown tier {value!r} (expected one of: {valid})") from None


# What an event is at all: kept whatever `allowed_fields` says.
CORE_FIELDS = frozenset({"name", "pathname", "hostname"})


def kept_fields(tier: Tier, allowed_fields: list[str] | None) -> frozenset[str]:
    """The fields a site keeps: its tier's fields, narrowed by `allowed_fields` when set."""
    fields = TIER_FIELDS[tier]
    return fields if allowed_fields is None else (fields & frozenset(allowed_fields)) | CORE_FIELDS


def check_allowed_fields(tier: Tier, allowed_fields: list[str]) -> None:
    """Reject fields the tier does not collect, so a site cannot widen its tier by narrowing."""
    extra = sorted(set(allowed_fields) - TIER_FIELDS[tier])
    if extra:
        raise ValueError(f"fields not collected by tier {tier.value}: {', '.join(extra)}")


# Plain-language explanations for site owners (the dashboard's settings show them).
TIER_GUIDE: dict[Tier, dict[str, str]] = {
    Tier.BANNER_FREE: {
        "title": "Banner-free",
        "collects": (
            "Page views, custom event names, referrer (site and path), UTM tags, country and "
            "region, device class, browser and OS family. A random id that lives in one tab for "
            "one visit; no IP address is used and nothing is stored on the visitor's device "
            "beyond that tab."
        ),
        "tell_visitors": (
            "No consent banner is needed. Your privacy policy can say: we count visits "
            "anonymously, without cookies, without storing IP addresses or identifiers."
        ),
    },
    Tier.PRIVACY_POLICY: {
        "title": "Privacy policy",
        "collects": (
            "Everything in Banner-free, plus custom properties, city, time zone, screen size and "
            "browser/OS major versions, and a daily visitor id: a keyed hash of IP address and "
            "browser with a random salt that is deleted after 48 hours, so returning visitors "
            "are counted once a day but never recognised across days."
        ),
        "tell_visitors": (
            "Mention it in your privacy policy and offer an opt-out link (any page with "
            "?notrack). No consent banner is needed in most jurisdictions, like Plausible."
        ),
    },
    Tier.FULL: {
        "title": "Full (with consent)",
        "collects": (
            "Everything in Privacy policy, plus the full referrer URL, device model and maker, "
            "full version numbers, and a persistent id in the visitor's browser, created only "
            "after they consent (topup('consent', true))."
        ),
        "tell_visitors": (
            "You need a consent banner: call topup('consent', true) when the visitor agrees. "
            "List the data above in your privacy policy."
        ),
    },
}
