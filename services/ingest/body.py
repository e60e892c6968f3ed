"""The event API's request bodies: Plausible's, the tracker's, and batches of either.

Decoding is validation: one reused msgspec decoder turns the bytes into typed events or raises
an error that names the field. Limits follow Plausible's so that a site can switch by changing
the script URL.
"""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import urlsplit

import msgspec

from topup.wire import PropValue, Revenue, UndecodableError, decode_untrusted

MAX_BODY_BYTES = 64 * 1024
MAX_BATCH = 50
MAX_NAME_CHARS = 120
MAX_URL_BYTES = 2000
MAX_PROPS = 30
MAX_PROP_KEY_BYTES = 300
MAX_PROP_VALUE_BYTES = 2000
MAX_ID_CHARS = 64

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_CHARS)]
ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]
ScreenSide = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
Props = dict[str, PropValue]


class EventBody(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One event as sent. Plausible's short keys (`n`, `u`, `d`, `r`, `p`) and long keys (`name`,
    `url`, `domain`, `referrer`, `props`) are both accepted; the tracker adds `s` (site id),
    `sid` (tab session id), `sw`/`sh` (screen size) and, in the full tier, `did` (distinct id).
    Unknown keys are ignored, as Plausible does."""

    n: Name | None = None
    name: Name | None = None
    u: str | None = None
    url: str | None = None
    d: str | None = None
    domain: str | None = None
    r: str | None = None
    referrer: str | None = None
    p: Props | str | None = None
    props: Props | str | None = None
    h: bool | int | None = None
    i: bool | None = None
    interactive: bool | None = None
    revenue: Revenue | None = None
    s: uuid.UUID | None = None
    sid: ClientId | None = None
    sw: ScreenSide | None = None
    sh: ScreenSide | None = None
    did: ClientId | None = None


class Envelope(EventBody, frozen=True):
    """A request body: one event, or `{"events": [...]}` with up to 50."""

    events: Annotated[list[EventBody], msgspec.Meta(min_length=1, max_length=MAX_BATCH)] | None = (
        None
    )


class BadEventError(ValueError):
    """The body cannot be accepted; the message names the field and says why."""


class Event(msgspec.Struct, frozen=True):
    """A validated event, in the long names, before ingest stamps it."""

    name: str
    url: str
    site_id: uuid.UUID | None
    domain: str | None
    referrer: str | None
    props: Props | None
    revenue: Revenue | None
    hash_mode: bool
    interactive: bool
    session_id: str | None
    distinct_id: str | None
    screen_width: int | None
    screen_height: int | None


_decoder = msgspec.json.Decoder(Envelope)
_props_decoder = msgspec.json.Decoder(Props)


def parse_body(body: bytes) -> list[Event]:
    """Decode and check a request body; raise `BadEventError` naming the first bad field."""
    if not body.strip():
        raise BadEventError('empty body: send a JSON event or {"events": [...]}')
    try:
        envelope = decode_untrusted(_decoder, body, "body")
    except UndecodableError as exc:
        raise BadEventError(str(exc)) from None
    if envelope.events is None:
        return [_check(envelope, "body")]
    return [_check(event, f"body.events[{i}]") for i, event in enumerate(envelope.events)]


def _check(body: EventBody, where: str) -> Event:
    name = body.n or body.name
    if name is None:
        raise BadEventError(f"`{where}.n`: missing event name (`n` or `name`)")
    url = body.u or body.url
    if url is None:
        raise BadEventError(f"`{where}.u`: missing page URL (`u` or `url`)")
    _check_url(url, f"{where}.u")
    domain = body.d or body.domain
    if body.s is None and not domain:
        raise BadEventError(f"`{where}`: missing site: give `s` (site id) or `d` (domain)")
    referrer = body.r or body.referrer
    if referrer is not None:
        if len(referrer.encode()) > MAX_URL_BYTES:
            raise BadEventError(f"`{where}.r`: referrer longer than {MAX_URL_BYTES} bytes")
        referrer = referrer or None
    raw_props = body.p if body.p is not None else body.props
    props = _check_props(raw_props, f"{where}.p")
    interactive = body.i if body.i is not None else body.interactive
    return Event(
        name=name,
        url=url,
        site_id=body.s,
        domain=domain,
        referrer=referrer,
        props=props,
        revenue=body.revenue,
        hash_mode=bool(body.h),
        interactive=True if interactive is None else interactive,
        session_id=body.sid,
        distinct_id=body.did,
        screen_width=body.sw,
        screen_height=body.sh,
    )


def _check_url(url: str, where: str) -> None:
    if len(url.encode()) > MAX_URL_BYTES:
        raise BadEventError(f"`{where}`: URL longer than {MAX_URL_BYTES} bytes")
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadEventError(f"`{where}`: not an http(s) URL with a host name")


def _check_props(raw: Props | str | None, where: str) -> Props | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        # Plausible's older trackers send props as a JSON-encoded string.
        try:
            raw = decode_untrusted(_props_decoder, raw.encode(), where)
        except UndecodableError:
            raise BadEventError(f"`{where}`: props must be an object of scalar values") from None
    if len(raw) > MAX_PROPS:
        raise BadEventError(f"`{where}`: {len(raw)} props, at most {MAX_PROPS} are allowed")
    for key, value in raw.items():
        if not key or len(key.encode()) > MAX_PROP_KEY_BYTES:
            raise BadEventError(f"`{where}`: prop keys are 1 to {MAX_PROP_KEY_BYTES} bytes")
        if isinstance(value, str) and len(value.encode()) > MAX_PROP_VALUE_BYTES:
            raise BadEventError(
                f"`{where}.{key}`: prop value longer than {MAX_PROP_VALUE_BYTES} bytes"
            )
    # A null value means "not set"; empty props are no props.
    cleaned: Props = {k: v for k, v in raw.items() if v is not None}
    return cleaned or None
