"""Wire formats between the stages: what ingest puts on the buffer and process reads from it.

The three services never import each other; they agree on these Structs. Each record on the
buffer is one ingest request: newline-delimited JSON, one `IngestedEvent` per line.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TypeVar

import msgspec

# Custom property values are scalars, as in Plausible; null means "not set".
PropValue = str | int | float | bool | None


class Revenue(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Plausible's revenue field: an amount in a currency (ISO 4217)."""

    currency: str
    amount: float | str


class RequestContext(msgspec.Struct, frozen=True, omit_defaults=True):
    """What the request itself says about the visitor, copied by ingest for process.

    The IP address and User-Agent travel only this far: process derives what the site's tier
    allows from them and stores neither (DESIGN.md, "Privacy tiers").
    """

    ip: str | None = None
    user_agent: str | None = None
    country: str | None = None  # CloudFront-Viewer-Country
    region: str | None = None  # CloudFront-Viewer-Country-Region
    city: str | None = None  # CloudFront-Viewer-City
    timezone: str | None = None  # CloudFront-Viewer-Time-Zone
    origin: str | None = None
    referer: str | None = None


class IngestedEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One accepted event as it travels from ingest to process."""

    event_id: uuid.UUID
    received_at: datetime
    name: str
    url: str
    context: RequestContext
    site_id: uuid.UUID | None = None
    domain: str | None = None
    referrer: str | None = None
    props: dict[str, PropValue] | None = None
    revenue: Revenue | None = None
    hash_mode: bool = False
    interactive: bool = True
    session_id: str | None = None
    distinct_id: str | None = None
    screen_width: int | None = None
    screen_height: int | None = None


T = TypeVar("T")

record_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(IngestedEvent)


def encode_record(events: list[IngestedEvent]) -> bytes:
    """One buffer record: the request's events as newline-delimited JSON."""
    return b"\n".join(record_encoder.encode(e) for e in events) + b"\n"


class UndecodableError(ValueError):
    """Untrusted JSON that is not the expected shape; the message says what is wrong."""


def decode_untrusted(decoder: msgspec.json.Decoder[T], data: bytes, root: str) -> T:
    """Decode a body from outside, turning everything decoding can raise into one error whose
    message names the field as `root.field`. Besides msgspec's own errors that includes invalid
    UTF-8 (msgspec builds each str as it goes) and arrays nested thousands deep (it recurses
    into them even in fields it ignores)."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise UndecodableError(str(exc).replace("`$", f"`{root}")) from None
    except msgspec.DecodeError as exc:
        raise UndecodableError(f"malformed JSON: {exc}") from None
    except UnicodeDecodeError:
        raise UndecodableError("malformed JSON: a string is not valid UTF-8") from None
    except RecursionError:
        raise UndecodableError("malformed JSON: nested too deeply") from None


def decode_event(line: bytes) -> IngestedEvent:
    """One line of a buffer record; raises `UndecodableError` if it is malformed."""
    return decode_untrusted(_record_decoder, line, "event")


def read_record(data: bytes) -> tuple[list[IngestedEvent], list[UndecodableError]]:
    """The well-formed events of one buffer record, and what is wrong with each malformed line."""
    try:  # all lines at once, the usual case (on process's hot path)
        return _record_decoder.decode_lines(data), []
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        pass  # line by line, to tell the malformed lines from the rest
    events: list[IngestedEvent] = []
    errors: list[UndecodableError] = []
    for line in data.splitlines():
        if line.strip():
            try:
                events.append(decode_event(line))
            except UndecodableError as exc:
                errors.append(exc)
    return events, errors


def decode_record(data: bytes) -> list[IngestedEvent]:
    """The events of one buffer record; raises `UndecodableError` on a malformed line."""
    events, errors = read_record(data)
    if errors:
        raise errors[0]
    return events


# -- Firehose's HTTP endpoint delivery protocol (what the ingest stream POSTs to process)


class DeliveryRecord(msgspec.Struct, frozen=True):
    data: bytes  # one buffer record; base64 on the wire (msgspec encodes and checks it)


class DeliveryRequest(msgspec.Struct, frozen=True, rename="camel"):
    """The body Firehose POSTs to an HTTP endpoint destination."""

    request_id: str
    timestamp: int  # milliseconds since the epoch
    records: list[DeliveryRecord]


class DeliveryResponse(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """The endpoint's answer: a 200 echoing `requestId` is success, anything else a retry."""

    request_id: str
    timestamp: int
    error_message: str | None = None
