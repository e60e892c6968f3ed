"""Generated bodies against the running ingest app: bad input never causes a 5xx, and what is
accepted reaches the buffer exactly as sent."""

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.app import create_app
from tests.conftest import MemorySink, ThreadedServer
from topup.settings import load_settings
from topup.wire import decode_record

SITE = "0191f2c4-8a5e-7b7c-9f00-0a1b2c3d4e5f"
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def ingest():
    sink = MemorySink()
    server = ThreadedServer(create_app(load_settings({}, sink="firehose"), sink=sink))
    with server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, sink


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)
event_keys = st.sampled_from(
    [
        "n",
        "name",
        "u",
        "url",
        "d",
        "domain",
        "r",
        "p",
        "props",
        "h",
        "i",
        "s",
        "sid",
        "sw",
        "did",
        "events",
        "revenue",
    ]
)
almost_events = st.dictionaries(event_keys, json_values, max_size=8)


@FUZZ
@given(body=st.binary(max_size=3000))
def test_arbitrary_bytes_never_cause_a_5xx(ingest, body):
    client, _ = ingest
    answer = client.post("/api/event", content=body, headers={"Content-Type": "text/plain"})
    assert answer.status_code < 500, answer.text
    if answer.status_code == 400:
        assert answer.json()["error"]


@FUZZ
@given(body=almost_events | st.fixed_dictionaries({"events": st.lists(almost_events, max_size=4)}))
def test_event_shaped_json_never_causes_a_5xx(ingest, body):
    client, sink = ingest
    before = len(sink.records)
    answer = client.post("/api/event", content=json.dumps(body))
    assert answer.status_code in (202, 400), answer.text
    assert len(sink.records) == before + (answer.status_code == 202)


prop_values = st.text(max_size=40) | st.integers(-(2**53), 2**53) | st.booleans()
valid_events = st.fixed_dictionaries(
    {
        "n": st.text(min_size=1, max_size=120),
        "u": st.builds(lambda path: f"https://example.com/{path}", st.text(max_size=200)),
        "s": st.just(SITE),
    },
    optional={
        "r": st.builds(lambda q: f"https://ref.example/?q={q}", st.text(max_size=100)),
        "p": st.dictionaries(
            st.text(min_size=1, max_size=20), prop_values, min_size=1, max_size=30
        ),
        "sid": st.text(min_size=1, max_size=64),
        "sw": st.integers(0, 10_000),
    },
)


@FUZZ
@given(events=st.lists(valid_events, min_size=1, max_size=50))
def test_accepted_events_reach_the_buffer_exactly_as_sent(ingest, events):
    client, sink = ingest
    before = len(sink.records)
    answer = client.post("/api/event", content=json.dumps({"events": events}))
    assert answer.status_code == 202, answer.text
    assert len(sink.records) == before + 1
    stored = decode_record(sink.records[-1])
    assert len(stored) == len(events)
    for sent, got in zip(events, stored, strict=True):
        assert got.name == sent["n"]
        assert got.url == sent["u"]
        assert str(got.site_id) == SITE
        assert got.referrer == sent.get("r")
        assert got.props == sent.get("p")
        assert got.session_id == sent.get("sid")
        assert got.screen_width == sent.get("sw")
