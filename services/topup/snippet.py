"""The tracker snippet a site owner pastes into their pages."""

from __future__ import annotations

from html import escape

from topup.sites import Site
from topup.tiers import Tier


def tracker_snippet(base_url: str, site: Site) -> str:
    """`<script defer data-site=… src=…/js/script.js>`; the tier is in the tag so the tracker
    knows, before any request, which identifiers it may create."""
    base = base_url.rstrip("/")
    tier = "" if site.tier is Tier.BANNER_FREE else f' data-tier="{escape(site.tier.value)}"'
    return f'<script defer data-site="{site.id}"{tier} src="{escape(base)}/js/script.js"></script>'
