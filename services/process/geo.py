"""Where the visitor is: CloudFront's viewer headers, else a GeoIP lookup of the address.

The lookup uses the operator's MaxMind database when `TOPUP_GEOIP_DATABASE` names one (a
GeoLite2/GeoIP2 City or Country .mmdb: country, region, city, time zone), else geoip2fast, whose
country data ships in the wheel, so it works offline. It is only made for tiers that may use
the IP address: `banner_free` promises no IP use at all, so its geo comes from CloudFront's
headers alone. The address is looked up in memory and never kept.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import unquote

import msgspec

from topup.wire import RequestContext

_geoip = None
_maxmind: Any = None


class Location(msgspec.Struct, frozen=True):
    country: str | None = None
    region: str | None = None
    city: str | None = None
    timezone: str | None = None


NOWHERE = Location()


def warm_up(maxmind_path: str | None = None) -> None:
    """Load the GeoIP data at start-up; with `maxmind_path`, the operator's MaxMind database."""
    global _geoip, _maxmind
    if maxmind_path is not None and _maxmind is None:
        import maxminddb

        _maxmind = maxminddb.open_database(maxmind_path)
        _lookup.cache_clear()
    if _geoip is None:
        from geoip2fast import GeoIP2Fast

        _geoip = GeoIP2Fast(verbose=False)


def _maxmind_location(ip: str) -> Location:
    found = _maxmind.get(ip) or {}
    country = (found.get("country") or {}).get("iso_code")
    if country is None:
        return NOWHERE
    subdivisions = found.get("subdivisions") or []
    region = subdivisions[0].get("iso_code") if subdivisions else None
    return Location(
        country=country,
        region=f"{country}-{region}" if region else None,
        city=((found.get("city") or {}).get("names") or {}).get("en"),
        timezone=(found.get("location") or {}).get("time_zone"),
    )


@lru_cache(maxsize=8192)
def _lookup(ip: str) -> Location:
    warm_up()
    if _maxmind is not None:
        try:
            return _maxmind_location(ip)
        except ValueError:  # not an address
            return NOWHERE
    assert _geoip is not None
    code = _geoip.lookup(ip).country_code
    # geoip2fast answers "--" (and private ranges) for addresses it cannot place.
    return Location(country=code) if code and len(code) == 2 and code.isalpha() else NOWHERE


@lru_cache(maxsize=8192)
def _from_cloudfront(
    country: str, region: str | None, city: str | None, timezone: str | None
) -> Location:
    return Location(
        country=country.upper(),
        # CloudFront gives the subdivision code alone (BE); store it as ISO 3166-2 (DE-BE).
        region=f"{country.upper()}-{region}" if region else None,
        city=unquote(city) if city else None,
        timezone=timezone,
    )


def locate(context: RequestContext, *, may_use_ip: bool) -> Location:
    if context.country:
        return _from_cloudfront(context.country, context.region, context.city, context.timezone)
    if may_use_ip and context.ip:
        return _lookup(context.ip)
    return NOWHERE
