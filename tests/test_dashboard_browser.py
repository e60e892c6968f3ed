"""The dashboard in real headless Chromium against `topup dev` with seeded data: what a site
owner sees must equal what the API answers. Screenshots go to test-artifacts/ (not committed)."""

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, run_in_thread
from tests.stats_data import generate, store
from tests.test_dev import DevProcess, postgres_processes

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def dev(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("dash") / "data"
    process = DevProcess(data_dir, free_port())
    info = json.loads((data_dir / "dev.json").read_text())
    site_id = uuid.UUID(info["site_id"])
    # The generated traffic is on example.com; the demo site also owns it for this test.
    answer = httpx.patch(
        f"{info['url']}/api/sites/{site_id}",
        headers={"Authorization": f"Bearer {info['api_key']}"},
        json={"domains": ["localhost", "127.0.0.1", "example.com"]},
    )
    assert answer.status_code == 200, answer.text
    run_in_thread(
        store(
            info["database_url"],
            generate(site_id, days=40, visits_per_day=15, seed=5, now=datetime.now(UTC)),
            data_dir / "archive",
        )
    )
    yield info
    process.stop()
    assert postgres_processes(data_dir) == []


def api_query(info, **body):
    answer = httpx.post(
        f"{info['url']}/api/query",
        headers={"Authorization": f"Bearer {info['api_key']}"},
        json={"site_id": info["site_id"]} | body,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["results"]


@pytest.fixture
def page(chromium, dev, request):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.request.method} {r.url}") if r.status >= 400 else None
        ),
    )
    page.goto(dev["url"] + "/")
    page.fill("#api-key", dev["api_key"])
    page.click("#sign-in-form button")
    page.wait_for_selector(".stat")
    page.wait_for_selector("#top-stats[aria-busy=false]")
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()
    assert problems == []


def wait_until(page, expression, timeout_s=10.0):
    """Poll a JavaScript expression (the dashboard's CSP forbids the eval wait_for_function uses)."""
    import time

    deadline = time.monotonic() + timeout_s
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"timed out waiting for {expression}"
        page.wait_for_timeout(50)


def stat(page, metric):
    return page.inner_text(f"[data-metric={metric}] .stat-value")


def test_top_stats_equal_the_api(page, dev):
    expected = api_query(
        dev, metrics=["visitors", "visits", "pageviews", "bounce_rate"], date_range="30d"
    )[0]["metrics"]
    shown = [
        int(stat(page, m).replace(",", "").rstrip("%"))
        for m in ("visitors", "visits", "pageviews", "bounce_rate")
    ]
    assert shown == expected and expected[0] > 0
    assert page.get_attribute("#graph", "data-points") == "30"


def test_the_top_pages_and_countries_cards_show_visitors_as_the_api_counts_them(page, dev):
    for card, dimension in (("Pages", "event:page"), ("Locations", "visit:country")):
        page.click(f"[data-card={card}] .tabs button[data-dimension='{dimension}']")
        page.wait_for_selector(f"[data-card={card}] .rows[data-dimension='{dimension}'] .row")
        rows = page.locator(f"[data-card={card}] .row").all()
        shown = [(r.get_attribute("data-value"), r.inner_text().split("\n")[-1]) for r in rows]
        expected = api_query(dev, metrics=["visitors"], dimensions=[dimension], date_range="30d",
                             pagination={"limit": 9})  # fmt: skip
        assert shown == [(r["dimensions"][0], f"{r['metrics'][0]:,}") for r in expected]
        assert len(shown) > 1


def test_clicking_a_row_filters_the_whole_dashboard(page, dev):
    page.click("[data-card=Locations] .tabs button[data-dimension='visit:country']")
    row = page.locator("[data-card=Locations] .row").first
    country = row.get_attribute("data-value")
    row.click()
    page.wait_for_selector(".chip[data-filter='visit:country']")
    page.wait_for_selector("#top-stats[aria-busy=false]")
    expected = api_query(
        dev,
        metrics=["visitors", "pageviews"],
        date_range="30d",
        filters=[["is", "visit:country", [country]]],
    )[0]["metrics"]
    assert [int(stat(page, m).replace(",", "")) for m in ("visitors", "pageviews")] == expected
    assert "filters=" in page.url and country in page.url  # the view is in the URL
    page.reload()
    page.wait_for_selector(".chip[data-filter='visit:country']")  # and survives a reload
    page.click(".chip button")
    wait_until(page, "document.querySelectorAll('.chip').length === 0")


def test_date_range_changes_the_graph(page, dev):
    page.click("[data-range='7d']")
    wait_until(page, "document.getElementById('graph').dataset.points === '7'")
    page.click("[data-range=day]")
    wait_until(page, "document.getElementById('graph').dataset.points === '24'")
    assert re.search(r"range=day", page.url)
    expected = api_query(dev, metrics=["pageviews"], date_range="day")[0]["metrics"][0]
    page.wait_for_selector("#top-stats[aria-busy=false]")
    assert int(stat(page, "pageviews").replace(",", "")) == expected


def test_settings_save_survive_a_reload_and_the_tier_hides_fields(page, dev):
    assert page.locator("[data-dimension='visit:city']").count() == 0  # banner_free: no cities
    page.click("#settings-link")
    page.wait_for_selector("#settings-form")
    page.fill("#settings-form input[name=timezone]", "Europe/Berlin")
    page.check("input[name=tier][value=privacy_policy]")
    page.click("#settings-form button[type=submit]")
    page.wait_for_selector("#settings-saved:not([hidden])")
    page.reload()
    page.wait_for_selector("#settings-form")
    wait_until(
        page,
        "document.querySelector('#settings-form input[name=timezone]').value === 'Europe/Berlin'",
    )
    assert page.is_checked("input[name=tier][value=privacy_policy]")
    page.goto(page.url.replace("page=settings&", "").replace("page=settings", ""))
    page.wait_for_selector("[data-card=Locations] .tabs button[data-dimension='visit:city']")
    # Narrow the fields: the cities tab goes away again.
    page.click("#settings-link")
    page.wait_for_selector("#field-choices input[value=city]")
    page.uncheck("#field-choices input[value=city]")
    page.click("#settings-form button[type=submit]")
    page.wait_for_selector("#settings-saved:not([hidden])")
    page.goto(page.url.replace("page=settings&", "").replace("page=settings", ""))
    page.wait_for_selector("[data-card=Locations] .tabs button")
    assert page.locator("[data-dimension='visit:city']").count() == 0
    site = httpx.get(
        f"{dev['url']}/api/sites/{dev['site_id']}",
        headers={"Authorization": f"Bearer {dev['api_key']}"},
    ).json()
    assert site["tier"] == "privacy_policy" and "city" not in site["allowed_fields"]
    page.goto("about:blank")  # leave before the tier changes back, or in-flight queries get 400s
    httpx.patch(
        f"{dev['url']}/api/sites/{dev['site_id']}",
        headers={"Authorization": f"Bearer {dev['api_key']}"},
        json={"tier": "banner_free", "allowed_fields": None, "timezone": "UTC"},
    )


def test_phone_width_and_add_site_flow(chromium, dev):
    context = chromium.new_context(viewport={"width": 375, "height": 812})
    page = context.new_page()
    page.goto(dev["url"] + "/")
    page.fill("#api-key", dev["api_key"])
    page.click("#sign-in-form button")
    page.wait_for_selector(".stat")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.click("#add-site")
    page.fill("#new-site-form input[name=name]", "Shop")
    page.fill("#new-site-form input[name=domain]", "shop.example.com")
    page.click("#new-site-form button[type=submit]")
    page.wait_for_selector("#new-site-done:not([hidden])")
    assert 'data-site="' in page.inner_text("#new-site-snippet")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "add_site_phone.png"), full_page=True)
    context.close()


def test_demo_site_visit_shows_up(chromium, dev):
    context = chromium.new_context(
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36"
    )
    page = context.new_page()
    before = api_query(dev, metrics=["pageviews"], date_range="day")[0]["metrics"][0]
    page.goto(dev["url"] + "/demo/")
    page.click("text=Pricing")
    page.click("#signup")
    for _ in range(100):
        now = api_query(dev, metrics=["pageviews"], date_range="day")[0]["metrics"][0]
        if now >= before + 2:
            break
        page.wait_for_timeout(100)
    assert now == before + 2
    events = api_query(
        dev, metrics=["events"], date_range="day", filters=[["is", "event:name", ["Signup"]]]
    )
    assert events[0]["metrics"][0] >= 1
    context.close()


def test_sign_in_with_the_hosted_login(chromium, tmp_path):
    """Authorization code with PKCE against a stand-in for Cognito's hosted UI on loopback."""
    import base64
    import hashlib
    import time

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa
    from litestar import Litestar, Request, Response, get, post
    from litestar.response import Redirect

    from tests.conftest import ThreadedServer

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = key.public_key().public_numbers()

    def b64(n: int) -> str:
        return (
            base64.urlsafe_b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big"))
            .rstrip(b"=")
            .decode()
        )

    issuer, client = "https://cognito-idp.local/pool", "dashboard-client"
    codes: dict[str, str] = {}

    @get("/.well-known/jwks.json")
    async def jwks() -> dict:
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": "k1",
                    "alg": "RS256",
                    "n": b64(numbers.n),
                    "e": b64(numbers.e),
                }
            ]
        }

    @get("/oauth2/authorize")
    async def authorize(request: Request) -> Redirect:
        q = request.query_params
        assert q["client_id"] == client and q["code_challenge_method"] == "S256"
        codes["code-1"] = q["code_challenge"]
        return Redirect(f"{q['redirect_uri']}?code=code-1&state={q['state']}")

    @post("/oauth2/token", status_code=200)
    async def token(request: Request) -> Response:
        form = await request.form()
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(form["code_verifier"].encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if codes.get(form["code"]) != challenge or form["client_id"] != client:
            return Response(
                {"error": "invalid_grant"},
                status_code=400,
                headers={"Access-Control-Allow-Origin": "*"},
            )
        claims = {
            "iss": issuer,
            "aud": client,
            "sub": "cognito-user-1",
            "email": "owner@example.com",
            "exp": int(time.time()) + 600,
            "token_use": "id",
        }
        id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        return Response(
            {"id_token": id_token, "access_token": id_token, "token_type": "Bearer"},
            headers={"Access-Control-Allow-Origin": "*"},
        )

    with ThreadedServer(Litestar([jwks, authorize, token], logging_config=None)) as provider:
        data_dir = tmp_path / "data"
        dev = DevProcess(
            data_dir,
            free_port(),
            env={
                "TOPUP_OIDC_ISSUER": issuer,
                "TOPUP_OIDC_AUDIENCE": client,
                "TOPUP_OIDC_JWKS_URL": f"{provider.url}/.well-known/jwks.json",
                "TOPUP_OIDC_LOGIN_URL": provider.url,
            },
        )
        try:
            context = chromium.new_context()
            page = context.new_page()
            page.goto(dev.url + "/")
            page.click("#oidc-sign-in")
            page.wait_for_selector("#new-site-form")  # a new account has no sites yet: add one
            assert page.url.rstrip("/") == dev.url or "page=new" in page.url
            token_in_tab = page.evaluate("sessionStorage.getItem('topup_api_key')")
            me = httpx.get(
                f"{dev.url}/api/me", headers={"Authorization": f"Bearer {token_in_tab}"}
            ).json()
            assert me["name"] == "owner@example.com" and me["external_id"] == "cognito-user-1"
            csp = httpx.get(dev.url + "/").headers["content-security-policy"]
            assert f"connect-src 'self' {provider.url}" in csp
            context.close()
        finally:
            dev.stop()


def test_event_properties_and_csv_export(page, dev):
    # The seeded site is banner_free: custom properties are not collected, so no tab for them.
    assert page.locator("[data-card=Events] button[data-dimension=props]").count() == 0
    httpx.patch(
        f"{dev['url']}/api/sites/{dev['site_id']}",
        headers={"Authorization": f"Bearer {dev['api_key']}"},
        json={"tier": "privacy_policy"},
    )
    run_in_thread(
        store(
            dev["database_url"],
            generate(
                uuid.UUID(dev["site_id"]), days=2, visits_per_day=60, seed=9, now=datetime.now(UTC)
            ),
        )
    )
    page.reload()
    page.click("[data-card=Events] button[data-dimension=props]")
    page.wait_for_selector("[data-card=Events] .row[data-value^='plan=']")
    expected = api_query(dev, metrics=["events"], date_range="30d", dimensions=["event:props:plan"])
    shown = {
        row.get_attribute("data-value") for row in page.locator("[data-card=Events] .row").all()
    }
    assert {f"plan={r['dimensions'][0]}" for r in expected if r["dimensions"][0]} <= shown
    page.locator("[data-card=Events] .row[data-value^='plan=']").first.click()
    page.wait_for_selector(".chip[data-filter='event:props:plan']")
    with page.expect_download() as download:
        page.click("#export")
    text = Path(download.value.path()).read_text()
    assert text.splitlines()[0] == "event:page,visitors,pageviews,bounce_rate,visit_duration"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "event_properties.png"), full_page=True)
    page.goto("about:blank")  # leave before the tier changes back, or in-flight queries get 400s
    httpx.patch(
        f"{dev['url']}/api/sites/{dev['site_id']}",
        headers={"Authorization": f"Bearer {dev['api_key']}"},
        json={"tier": "banner_free", "allowed_fields": None},
    )
