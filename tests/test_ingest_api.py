"""The event API over real HTTP: what is accepted, what is refused, what reaches the buffer."""

import gzip
import hashlib
import json
from pathlib import Path

import httpx
import msgspec
import pytest

from ingest.app import create_app
from tests.conftest import LiveServer, MemorySink
from topup.settings import load_settings
from topup.wire import decode_record

SITE = "0191f2c4-8a5e-7b7c-9f00-0a1b2c3d4e5f"
TRACKER_DIR = Path(__file__).parent.parent / "services" / "ingest" / "tracker"


def ingest_settings(**overrides):
    return load_settings({}, sink="firehose", **overrides)


@pytest.fixture
async def ingest():
    sink = MemorySink()
    server = LiveServer(create_app(ingest_settings(), sink=sink))
    async with server, server.client() as client:
        yield client, sink


def events_in(sink):
    return [event for record in sink.records for event in decode_record(record)]


async def test_plausible_body_is_accepted_unchanged(ingest):
    client, sink = ingest
    body = {
        "n": "Signup",
        "u": "https://example.com/pricing?utm_source=news",
        "d": "example.com",
        "r": "https://news.ycombinator.com/",
        "p": {"plan": "pro", "seats": 3, "trial": True},
        "revenue": {"currency": "EUR", "amount": "29.00"},
    }
    answer = await client.post(
        "/api/event",
        content=json.dumps(body),
        headers={"Content-Type": "text/plain", "User-Agent": "Mozilla/5.0 Test"},
    )
    assert answer.status_code == 202
    assert answer.json() == {"accepted": 1}
    [event] = events_in(sink)
    assert (event.name, event.url, event.domain, event.referrer) == (
        "Signup",
        body["u"],
        "example.com",
        body["r"],
    )
    assert event.props == {"plan": "pro", "seats": 3, "trial": True}
    assert event.revenue is not None and event.revenue.currency == "EUR"
    assert event.event_id.version == 7
    assert event.context.user_agent == "Mozilla/5.0 Test"
    assert event.context.ip == "127.0.0.1"


async def test_long_keys_and_props_as_a_json_string_are_accepted(ingest):
    client, sink = ingest
    body = {
        "name": "pageview",
        "url": "https://example.com/",
        "domain": "example.com",
        "props": json.dumps({"author": "ada"}),
        "h": 1,
    }
    answer = await client.post("/api/event", json=body)
    assert answer.status_code == 202
    [event] = events_in(sink)
    assert event.props == {"author": "ada"}
    assert event.hash_mode is True


async def test_tracker_batch_is_one_record_with_every_event(ingest):
    client, sink = ingest
    events = [
        {
            "n": "pageview",
            "u": f"https://example.com/{i}",
            "s": SITE,
            "sid": "k3j4h5",
            "sw": 390,
            "sh": 844,
        }
        for i in range(3)
    ]
    events[2] |= {"n": "Download", "p": {"file": "a.pdf"}, "did": "d-123"}
    answer = await client.post("/api/event", content=json.dumps({"events": events}))
    assert answer.status_code == 202 and answer.json() == {"accepted": 3}
    assert len(sink.records) == 1
    decoded = events_in(sink)
    assert [e.url for e in decoded] == [e["u"] for e in events]
    assert {str(e.site_id) for e in decoded} == {SITE}
    assert decoded[0].session_id == "k3j4h5" and decoded[0].screen_width == 390
    assert decoded[2].distinct_id == "d-123" and decoded[2].props == {"file": "a.pdf"}
    assert len({e.event_id for e in decoded}) == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty body"),
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "Expected `object`, got `array`"),
        (
            b'{"n": 5, "u": "https://a.com/", "d": "a.com"}',
            "Expected `str | null`, got `int` - at `body.n`",
        ),
        (b'{"u": "https://a.com/", "d": "a.com"}', "`body.n`: missing event name"),
        (b'{"n": "pageview", "d": "a.com"}', "`body.u`: missing page URL"),
        (
            b'{"n": "pageview", "u": "javascript:alert(1)", "d": "a.com"}',
            "`body.u`: not an http(s) URL",
        ),
        (
            b'{"n": "pageview", "u": "https://a.com/"}',
            "missing site: give `s` (site id) or `d` (domain)",
        ),
        (
            b'{"n": "pageview", "u": "https://a.com/", "s": "not-a-uuid"}',
            "Invalid UUID - at `body.s`",
        ),
        (
            json.dumps({"n": "x" * 121, "u": "https://a.com/", "d": "a.com"}).encode(),
            "Expected `str` of length <= 120",
        ),
        (
            json.dumps({"n": "p", "u": "https://a.com/" + "x" * 2000, "d": "a.com"}).encode(),
            "`body.u`: URL longer than 2000 bytes",
        ),
        (
            json.dumps(
                {
                    "n": "p",
                    "u": "https://a.com/",
                    "d": "a.com",
                    "p": {f"k{i}": i for i in range(31)},
                }
            ).encode(),
            "31 props, at most 30",
        ),
        (
            json.dumps(
                {"n": "p", "u": "https://a.com/", "d": "a.com", "p": {"k": "v" * 2001}}
            ).encode(),
            "`body.p.k`: prop value longer than 2000 bytes",
        ),
        (
            json.dumps(
                {"n": "p", "u": "https://a.com/", "d": "a.com", "p": {"k": {"nested": 1}}}
            ).encode(),
            "at `body.p",
        ),
        (
            json.dumps({"events": [{"n": "p", "u": "https://a.com/", "d": "a.com"}] * 51}).encode(),
            "length <= 50 - at `body.events`",
        ),
        (
            json.dumps(
                {
                    "events": [
                        {"n": "p", "u": "https://a.com/", "d": "a.com"},
                        {"n": "p", "d": "a.com"},
                    ]
                }
            ).encode(),
            "`body.events[1].u`: missing page URL",
        ),
        (
            b'{"n": "p", "u": "https://a.com/", "d": "a.com", "sw": -1}',
            "Expected `int` >= 0 - at `body.sw`",
        ),
        (
            b'{"n": "p\xff", "u": "https://a.com/", "d": "a.com"}',
            "malformed JSON: a string is not valid UTF-8",
        ),
        (
            b'{"n": "p", "u": "https://a.com/", "d": "a.com", "x": '
            + b"[" * 20_000
            + b"]" * 20_000
            + b"}",
            "malformed JSON: nested too deeply",
        ),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_nothing_is_forwarded(ingest, body, message):
    client, sink = ingest
    answer = await client.post("/api/event", content=body, headers={"Content-Type": "text/plain"})
    assert answer.status_code == 400
    assert message in answer.json()["error"], answer.json()
    assert sink.records == []


async def test_body_over_64_kib_is_refused(ingest):
    client, sink = ingest
    padding = "x" * (65 * 1024)
    answer = await client.post(
        "/api/event",
        content=json.dumps({"n": "p", "u": "https://a.com/", "d": "a.com", "z": padding}),
    )
    assert answer.status_code == 413
    assert sink.records == []


async def test_huge_header_is_refused_before_the_app(ingest):
    client, sink = ingest
    body = b'{"n": "p", "u": "https://a.com/", "d": "a.com"}'
    try:  # the HTTP server refuses it (here uvicorn closes the connection; in AWS, CloudFront)
        answer = await client.post(
            "/api/event", content=body, headers={"User-Agent": "x" * 200_000}
        )
        assert 400 <= answer.status_code < 500
    except httpx.ReadError:
        pass
    assert sink.records == []
    assert (await client.post("/api/event", content=body)).status_code == 202  # still serving


async def test_cors_preflight_is_answered_for_any_origin(ingest):
    client, _ = ingest
    answer = await client.options(
        "/api/event",
        headers={
            "Origin": "https://shop.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert answer.status_code in (200, 204)
    assert answer.headers["access-control-allow-origin"] in ("*", "https://shop.example.org")
    assert "POST" in answer.headers["access-control-allow-methods"]
    posted = await client.post(
        "/api/event",
        json={"n": "p", "u": "https://a.com/", "d": "a.com"},
        headers={"Origin": "https://shop.example.org"},
    )
    assert posted.headers["access-control-allow-origin"] in ("*", "https://shop.example.org")


async def test_buffer_failure_is_503_so_the_sender_retries(ingest):
    client, sink = ingest
    sink.available = False
    answer = await client.post("/api/event", json={"n": "p", "u": "https://a.com/", "d": "a.com"})
    assert answer.status_code == 503
    assert "retry" in answer.json()["error"]


async def _context_for(headers, **settings):
    sink = MemorySink()
    server = LiveServer(create_app(ingest_settings(**settings), sink=sink))
    async with server, server.client() as client:
        answer = await client.post(
            "/api/event", json={"n": "p", "u": "https://a.com/", "d": "a.com"}, headers=headers
        )
        assert answer.status_code == 202
    return events_in(sink)[0].context


CLOUDFRONT = {
    "CloudFront-Viewer-Address": "203.0.113.9:46512",
    "CloudFront-Viewer-Country": "DE",
    "CloudFront-Viewer-Country-Region": "BE",
    "CloudFront-Viewer-City": "Berlin",
    "CloudFront-Viewer-Time-Zone": "Europe/Berlin",
    "Origin": "https://example.com",
    "Referer": "https://example.com/pricing",
}


async def test_cloudfront_viewer_headers_are_used_only_when_trusted():
    trusted = await _context_for(CLOUDFRONT, trust_cloudfront_headers=True)
    assert (trusted.ip, trusted.country, trusted.region, trusted.city, trusted.timezone) == (
        "203.0.113.9",
        "DE",
        "BE",
        "Berlin",
        "Europe/Berlin",
    )
    assert (trusted.origin, trusted.referer) == (
        "https://example.com",
        "https://example.com/pricing",
    )
    spoofed = await _context_for(CLOUDFRONT)
    assert (spoofed.ip, spoofed.country, spoofed.city) == ("127.0.0.1", None, None)


async def test_ipv6_viewer_address():
    context = await _context_for(
        {"CloudFront-Viewer-Address": "2001:db8::8a2e:370:7334:46512"},
        trust_cloudfront_headers=True,
    )
    assert context.ip == "2001:db8::8a2e:370:7334"


async def test_forwarded_for_is_believed_only_from_a_trusted_proxy():
    # The client wrote 192.0.2.66 itself; 10.0.0.2 is a trusted load balancer that appended
    # the address it saw (198.51.100.7) before our trusted local proxy (127.0.0.1) forwarded.
    headers = {"X-Forwarded-For": "192.0.2.66, 198.51.100.7, 10.0.0.2"}
    both = ["127.0.0.0/8", "10.0.0.0/8"]
    assert (await _context_for(headers, trusted_proxies=both)).ip == "198.51.100.7"
    assert (await _context_for(headers, trusted_proxies=["127.0.0.0/8"])).ip == "10.0.0.2"
    assert (await _context_for(headers, trusted_proxies=["10.0.0.0/8"])).ip == "127.0.0.1"
    assert (await _context_for(headers)).ip == "127.0.0.1"


async def test_tracker_is_served_with_caching_headers(ingest):
    client, _ = ingest
    answer = await client.get("/js/script.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/javascript")
    assert "max-age=86400" in answer.headers["cache-control"]
    etag = answer.headers["etag"]
    assert answer.content == (TRACKER_DIR / "dist" / "script.js").read_bytes()
    again = await client.get("/js/script.js", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    links = await client.get("/js/script.links.js")
    assert links.status_code == 200 and links.headers["etag"] != etag
    assert (await client.get("/js/other.js")).status_code == 404


def test_tracker_is_at_most_1000_bytes_gzipped():
    script = (TRACKER_DIR / "dist" / "script.js").read_bytes()
    assert len(gzip.compress(script, compresslevel=9)) <= 1000


def test_committed_tracker_build_matches_its_source():
    source = (TRACKER_DIR / "script.src.js").read_bytes()
    recorded = (TRACKER_DIR / "dist" / "source-sha256").read_text().strip()
    assert hashlib.sha256(source).hexdigest() == recorded, (
        "services/ingest/tracker/dist is stale: run `make tracker` and commit dist/"
    )


def test_buffer_record_is_newline_delimited_json():
    from topup.wire import IngestedEvent, RequestContext, encode_record

    event = msgspec.convert(
        {
            "event_id": "0191f2c4-8a5e-7b7c-9f00-0a1b2c3d4e5f",
            "received_at": "2026-11-26T10:00:00Z",
            "name": "pageview",
            "url": "https://a.com/",
            "context": {},
        },
        IngestedEvent,
    )
    record = encode_record([event, event])
    assert record.count(b"\n") == 2
    assert decode_record(record) == [event, event]
    assert event.context == RequestContext()


async def test_cloudfront_headers_need_the_origin_secret_when_one_is_set():
    headers = dict(CLOUDFRONT)
    forged = await _context_for(headers, trust_cloudfront_headers=True, origin_secret="s3cret")
    assert (forged.ip, forged.country) == ("127.0.0.1", None)
    through_cloudfront = await _context_for(
        headers | {"X-Topup-Origin": "s3cret"},
        trust_cloudfront_headers=True,
        origin_secret="s3cret",
    )
    assert (through_cloudfront.ip, through_cloudfront.country) == ("203.0.113.9", "DE")
