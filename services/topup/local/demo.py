"""A small demo site that `topup dev` serves at `/demo/`: a few linked pages, a button that
fires a custom event and an outbound link, all tracked by the real tracker for the demo site,
so a newcomer clicks around and sees their own visit in the dashboard within seconds."""

from __future__ import annotations

import uuid
from html import escape

from litestar import Litestar, Response, get
from litestar.params import FromPath

PAGES = {
    "": (
        "Welcome",
        "This is a demo site tracked by TopUp Analytics. Click around, then open the dashboard.",
    ),
    "pricing": (
        "Pricing",
        "Ten dollars per million events. Press the button to send a custom event.",
    ),
    "blog": ("Blog", "A post about privacy-first analytics. The link below leaves the site."),
}
SCRIPT = """document.getElementById('signup').addEventListener('click', function () {
  topup('Signup', { props: { plan: 'pro' } });
  document.getElementById('thanks').hidden = false;
});
"""


def page(slug: str, site_id: uuid.UUID, base_url: str) -> str:
    title, text = PAGES[slug]
    links = " · ".join(f'<a href="/demo/{s}">{escape(PAGES[s][0])}</a>' for s in PAGES)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<title>{escape(title)} · Demo</title>
<script defer data-site="{site_id}" data-local data-outbound data-downloads
        src="{escape(base_url)}/js/script.links.js"></script>
<script defer src="/demo/demo.js"></script>
</head><body style="font-family: system-ui; max-width: 640px; margin: 40px auto; padding: 0 16px">
<nav>{links}</nav><h1>{escape(title)}</h1><p>{escape(text)}</p>
<p><button id="signup" type="button">Sign up (sends a custom event)</button>
<span id="thanks" hidden>Thanks! The event is on its way.</span></p>
<p><a href="https://example.org/">An outbound link</a> ·
   <a href="/demo/files/brochure.pdf">A download</a></p>
<p><a href="{escape(base_url)}/">Open the dashboard</a></p>
</body></html>"""


def create_demo_app(site_id: uuid.UUID, base_url: str) -> Litestar:
    @get(["/demo", "/demo/", "/demo/{slug:str}"], media_type="text/html")
    async def demo_page(slug: FromPath[str] = "") -> Response[str]:
        if slug not in PAGES:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(page(slug, site_id, base_url), media_type="text/html")

    @get("/demo/demo.js", media_type="application/javascript")
    async def demo_script() -> str:
        return SCRIPT

    @get("/demo/files/{name:str}", media_type="application/pdf")
    async def download(name: FromPath[str]) -> bytes:
        return b"%PDF-1.4\n% TopUp demo download\n"

    return Litestar([demo_script, download, demo_page], logging_config=None)
