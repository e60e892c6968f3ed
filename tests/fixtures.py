"""Realistic events and Firehose deliveries for the process tests, built with the same wire
code ingest uses."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from topup.ids import new_id
from topup.wire import IngestedEvent, RequestContext, encode_record

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.6723.92 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0"
SAMSUNG_TABLET = (
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0.6723.86 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/130.0.0.0 Safari/537.36"
)
IP_DE = "81.169.145.105"
IP_US = "8.8.8.8"

CLOUDFRONT_BERLIN = {"country": "DE", "region": "BE", "city": "Berlin", "timezone": "Europe/Berlin"}


def event(
    site_id: uuid.UUID | None,
    url: str = "https://example.com/",
    *,
    name: str = "pageview",
    ua: str = CHROME_MAC,
    ip: str = IP_DE,
    referrer: str | None = None,
    session: str | None = "tab-1",
    props: dict[str, Any] | None = None,
    distinct_id: str | None = None,
    domain: str | None = None,
    at: datetime | None = None,
    screen: tuple[int, int] | None = (1440, 900),
    geo: dict[str, str] | None = None,
) -> IngestedEvent:
    return IngestedEvent(
        event_id=new_id(),
        received_at=at or datetime.now(UTC),
        name=name,
        url=url,
        context=RequestContext(ip=ip, user_agent=ua, **(geo or {})),
        site_id=site_id,
        domain=domain,
        referrer=referrer,
        props=props,
        session_id=session,
        distinct_id=distinct_id,
        screen_width=screen[0] if screen else None,
        screen_height=screen[1] if screen else None,
    )


def delivery_body(
    records: list[list[IngestedEvent]] | list[bytes], request_id: str | None = None
) -> dict:
    data = [r if isinstance(r, bytes) else encode_record(r) for r in records]
    return {
        "requestId": request_id or str(new_id()),
        "timestamp": int(datetime.now(UTC).timestamp() * 1000),
        "records": [{"data": base64.b64encode(d).decode()} for d in data],
    }


def headers(
    access_key: str = "test-access-key", request_id: str = "", gzip_body: bool = False
) -> dict:
    out = {
        "Content-Type": "application/json",
        "X-Amz-Firehose-Protocol-Version": "1.0",
        "X-Amz-Firehose-Request-Id": request_id,
        "X-Amz-Firehose-Access-Key": access_key,
    }
    if gzip_body:
        out["Content-Encoding"] = "gzip"
    return out


async def deliver(
    client, body: dict, *, access_key: str = "test-access-key", gzip_body: bool = False
):
    raw = json.dumps(body).encode()
    if gzip_body:
        raw = gzip.compress(raw)
    return await client.post(
        "/firehose", content=raw, headers=headers(access_key, body["requestId"], gzip_body)
    )
