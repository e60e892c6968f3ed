"""What ingest copies from the request for process: client IP, User-Agent, viewer geo, origin."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache

from topup.wire import RequestContext

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    if peer is None or not trusted:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in network for network in trusted)


def _viewer_address(value: str) -> str | None:
    """CloudFront-Viewer-Address is `ip:port`, with IPv6 as `[ip]:port` or bare `a:b::c:port`."""
    host = value.strip()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    elif host.count(":") > 1:
        host = host.rsplit(":", 1)[0]
    return _valid_ip(host)


@lru_cache(maxsize=4096)
def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(
    headers: Mapping[str, str],
    peer: str | None,
    *,
    trust_cloudfront: bool,
    trusted_proxies: Sequence[Network],
) -> str | None:
    """CloudFront's viewer address when behind CloudFront; else, when the socket peer is a
    trusted proxy, the first `X-Forwarded-For` hop in front of the trusted proxies; else the
    socket peer.

    `X-Forwarded-For` is read from the right: each proxy appends the address it saw, so the
    entries left of the last untrusted one were written by the client and prove nothing.
    """
    if trust_cloudfront and (viewer := headers.get("cloudfront-viewer-address")):
        return _viewer_address(viewer)
    address = None if peer is None else _valid_ip(peer)
    if not _is_trusted(address, trusted_proxies):
        return address
    for hop in reversed(headers.get("x-forwarded-for", "").split(",")):
        address = _valid_ip(hop)
        if address is None or not _is_trusted(address, trusted_proxies):
            return address
    return address


def request_context(
    headers: Mapping[str, str],
    peer: str | None,
    *,
    trust_cloudfront: bool,
    trusted_proxies: Sequence[Network],
    origin_secret: str | None = None,
) -> RequestContext:
    if trust_cloudfront and origin_secret is not None:
        # Only requests that came through CloudFront carry the secret it adds.
        given = headers.get("x-topup-origin", "")
        trust_cloudfront = hmac.compare_digest(given.encode(), origin_secret.encode())
    geo = headers if trust_cloudfront else {}
    return RequestContext(
        ip=client_ip(
            headers, peer, trust_cloudfront=trust_cloudfront, trusted_proxies=trusted_proxies
        ),
        user_agent=headers.get("user-agent"),
        country=geo.get("cloudfront-viewer-country"),
        region=geo.get("cloudfront-viewer-country-region"),
        city=geo.get("cloudfront-viewer-city"),
        timezone=geo.get("cloudfront-viewer-time-zone"),
        origin=headers.get("origin"),
        referer=headers.get("referer"),
    )
