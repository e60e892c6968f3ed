"""The tracker in real headless Chromium, sending to the ingest app across origins."""

import time
from collections.abc import Callable
from typing import NamedTuple

import pytest
from litestar import Litestar, Request, get
from litestar.response import Response

from ingest.app import create_app
from tests.conftest import MemorySink, ThreadedServer
from topup.settings import load_settings
from topup.wire import IngestedEvent, decode_record

pytestmark = pytest.mark.browser
SITE = "0191f2c4-8a5e-7b7c-9f00-0a1b2c3d4e5f"


def page_html(ingest_url: str, extra_attributes: str = "", script: str = "script.js") -> str:
    return f"""<!doctype html><html><head><title>Demo</title>
<script>
window.topup = window.topup || function () {{ (topup.q = topup.q || []).push(arguments) }}
</script>
<script defer data-site="{SITE}" data-local {extra_attributes}
        src="{ingest_url}/js/{script}"></script>
</head><body>
<a id="spa" href="/app/settings"
   onclick="history.pushState({{}}, '', '/app/settings'); return false">SPA</a>
<button id="signup" onclick="topup('Signup', {{props: {{plan: 'pro', seats: 3}}}})">Sign up</button>
<a id="outbound" href="https://other.example.org/page">Elsewhere</a>
<a id="download" href="/files/report.pdf">Report</a>
</body></html>"""


def site_app(ingest_url: str) -> Litestar:
    """The site being tracked, on another origin than ingest."""

    @get(["/", "/{path:path}"], media_type="text/html")
    async def page(request: Request) -> Response[str]:
        query = request.query_params
        extra = f'data-tier="{query["tier"]}" ' if "tier" in query else ""
        script = query.get("script", "script.js")
        return Response(page_html(ingest_url, extra + query.get("attrs", ""), script))

    return Litestar([page], logging_config=None)


class Stack(NamedTuple):
    site_url: str
    ingest_url: str
    sink: MemorySink


@pytest.fixture(scope="module")
def stack():
    sink = MemorySink()
    ingest = ThreadedServer(create_app(load_settings({}, sink="firehose"), sink=sink))
    with ingest:
        site = ThreadedServer(site_app(ingest.url))
        with site:
            yield Stack(site.url, ingest.url, sink)


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == []


def wait_for(
    sink: MemorySink, start: int, predicate: Callable[[list[IngestedEvent]], bool]
) -> list[IngestedEvent]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = [e for r in sink.records[start:] for e in decode_record(r)]
        if predicate(events):
            return events
        time.sleep(0.05)
    raise AssertionError(
        f"events did not arrive: {[e.name for r in sink.records[start:] for e in decode_record(r)]}"
    )


def names(events: list[IngestedEvent]) -> list[str]:
    return [e.name for e in events]


def test_pageview_spa_navigation_and_custom_event(stack, browser_page):
    site_url, _, sink = stack
    start = len(sink.records)
    browser_page.goto(f"{site_url}/blog/hello?utm_source=news", referer="https://www.google.com/")
    first = wait_for(sink, start, lambda ev: names(ev) == ["pageview"])[0]
    assert first.url == f"{site_url}/blog/hello?utm_source=news"
    assert str(first.site_id) == SITE
    assert first.referrer == "https://www.google.com/"
    assert first.screen_width and first.screen_height
    assert first.session_id and first.distinct_id is None
    assert "HeadlessChrome" in (first.context.user_agent or "")

    browser_page.click("#spa")
    events = wait_for(sink, start, lambda ev: len(ev) >= 2)
    assert events[1].name == "pageview" and events[1].url == f"{site_url}/app/settings"

    browser_page.click("#signup")
    events = wait_for(sink, start, lambda ev: len(ev) >= 3)
    assert events[2].name == "Signup" and events[2].props == {"plan": "pro", "seats": 3}
    # One tab, one session.
    assert {e.session_id for e in events} == {first.session_id}


def test_hash_routing_counts_hash_changes(stack, browser_page):
    site_url, _, sink = stack
    start = len(sink.records)
    browser_page.goto(f"{site_url}/docs?attrs=data-hash")
    wait_for(sink, start, lambda ev: len(ev) == 1)
    browser_page.evaluate("location.hash = '#/install'")
    events = wait_for(sink, start, lambda ev: len(ev) == 2)
    assert events[1].url.endswith("/docs?attrs=data-hash#/install") and events[1].hash_mode


def test_opt_out_and_global_privacy_control_send_nothing(stack, chromium):
    site_url, _, sink = stack
    context = chromium.new_context()
    page = context.new_page()
    start = len(sink.records)
    page.goto(f"{site_url}/?notrack")  # sets the opt-out flag, then the pageview is skipped
    page.goto(f"{site_url}/pricing")
    page.click("#signup")
    page.evaluate("topup('optout', false)")  # the documented way back in
    page.click("#signup")
    wait_for(sink, start, lambda ev: len(ev) >= 1)
    time.sleep(0.3)
    got = [e for r in sink.records[start:] for e in decode_record(r)]
    assert names(got) == ["Signup"], [(e.name, e.url) for e in got]
    context.close()

    gpc = chromium.new_context()
    gpc.add_init_script("Object.defineProperty(navigator, 'globalPrivacyControl', {value: true})")
    page = gpc.new_page()
    start = len(sink.records)
    page.goto(f"{site_url}/gpc")
    page.click("#signup")
    page.evaluate("topup('optout')")  # an explicit JS opt-out also holds
    time.sleep(0.5)
    gpc.close()
    assert sink.records[start:] == []


def test_identity_by_tier(stack, chromium):
    site_url, _, sink = stack
    context = chromium.new_context()
    page = context.new_page()
    start = len(sink.records)
    page.goto(f"{site_url}/?tier=full")
    first = wait_for(sink, start, lambda ev: len(ev) == 1)[0]
    assert first.distinct_id is None  # no consent yet: no persistent id
    page.evaluate("topup('consent', true)")
    page.click("#signup")
    consented = wait_for(sink, start, lambda ev: len(ev) == 2)[1]
    assert consented.distinct_id
    assert page.evaluate("localStorage.getItem('topup_distinct')") == consented.distinct_id
    page.evaluate("topup('consent', false)")
    assert page.evaluate("localStorage.getItem('topup_distinct')") is None
    context.close()

    context = chromium.new_context()
    page = context.new_page()
    start = len(sink.records)
    page.goto(f"{site_url}/?tier=privacy_policy")
    page.evaluate("topup('consent', true)")  # only the full tier keeps a distinct id
    page.click("#signup")
    events = wait_for(sink, start, lambda ev: len(ev) == 2)
    assert all(e.distinct_id is None for e in events)
    assert page.evaluate("Object.keys(localStorage)") == []
    context.close()


def test_new_tab_is_a_new_session(stack, chromium):
    site_url, _, sink = stack
    context = chromium.new_context()
    start = len(sink.records)
    for _ in range(2):
        context.new_page().goto(f"{site_url}/")
    events = wait_for(sink, start, lambda ev: len(ev) == 2)
    assert events[0].session_id != events[1].session_id
    context.close()


def test_outbound_links_and_downloads_in_the_links_build(stack, browser_page):
    site_url, _, sink = stack
    start = len(sink.records)
    browser_page.route(
        "https://other.example.org/**", lambda route: route.fulfill(body="elsewhere")
    )
    browser_page.goto(f"{site_url}/?script=script.links.js&attrs=data-outbound%20data-downloads")
    wait_for(sink, start, lambda ev: len(ev) == 1)
    browser_page.click("#download", modifiers=["Alt"])  # Alt-click: download without leaving
    events = wait_for(sink, start, lambda ev: len(ev) == 2)
    assert events[1].name == "File Download" and events[1].props == {
        "url": f"{site_url}/files/report.pdf"
    }
    browser_page.click("#outbound")
    events = wait_for(sink, start, lambda ev: len(ev) == 3)
    assert events[2].name == "Outbound Link: Click"
    assert events[2].props == {"url": "https://other.example.org/page"}


def test_automated_and_local_browsers_are_ignored_without_data_local(stack, chromium):
    site_url, ingest_url, sink = stack
    context = chromium.new_context()
    page = context.new_page()
    plain = page_html(ingest_url).replace(" data-local ", " ")
    page.route(
        f"{site_url}/plain", lambda route: route.fulfill(content_type="text/html", body=plain)
    )
    start = len(sink.records)
    page.goto(f"{site_url}/plain")  # 127.0.0.1, and Playwright sets navigator.webdriver
    page.click("#signup")
    time.sleep(0.5)
    context.close()
    assert sink.records[start:] == []
