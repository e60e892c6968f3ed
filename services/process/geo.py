"""Where the visitor is: CloudFront's viewer headers, else a GeoIP lookup of the address.

The GeoIP lookup (geoip2fast, whose country data ships in the wheel, so it works offline) is
only made for tiers that may use the IP address: `banner_free` promises no IP use at all, so
its geo comes from CloudFront's headers alone. The address is looked up in memory and never
kept.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import unquote

import msgspec

from topup.wire import RequestContext

_geoip = None


class Location(msgspec.Struct, frozen=True):
    country: str | None = None
    region: str | None = None
    city: str | None = None
    timezone: str | None = None


NOWHERE = Location()


def warm_up() -> None:
    global _geoip
    if _geoip is None:
        from geoip2fast import GeoIP2Fast

        _geoip = GeoIP2Fast(verbose=False)


@lru_cache(maxsize=8192)
def _country_of(ip: str) -> str | None:
    warm_up()
    assert _geoip is not None
    code = _geoip.lookup(ip).country_code
    # geoip2fast answers "--" (and private ranges) for addresses it cannot place.
    return code if code and len(code) == 2 and code.isalpha() else None


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
        return Location(country=_country_of(context.ip))
    return NOWHERE
