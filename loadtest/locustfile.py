"""Locust users for `make loadtest`: browsers running the tracker, servers sending Plausible's
format, and site owners reading the dashboard. Traffic comes from `loadtest/traffic.py`, so the
mixes of browsers, referrers, campaigns and countries are the repository's fixtures.

Settings come from the environment `loadtest/run.py` sets: TOPUP_LOADTEST_SITE, _DOMAIN, _KEY
and _TOTALS (where each worker writes how many events the ingest accepted, for the
reconciliation).
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from locust import FastHttpUser, between, events, task

from loadtest import overview
from loadtest.traffic import Hit, visit

SITE = os.environ.get("TOPUP_LOADTEST_SITE", "")
DOMAIN = os.environ.get("TOPUP_LOADTEST_DOMAIN", "example.com")
KEY = os.environ.get("TOPUP_LOADTEST_KEY", "")
TOTALS = Path(os.environ.get("TOPUP_LOADTEST_TOTALS", "loadtest/results/accepted.json"))

accepted = {"events": 0, "requests": 0}


def headers_for(hit: Hit) -> dict[str, str]:
    # The stack trusts 127.0.0.1 as a proxy, so each visit arrives from its own address.
    return {"Content-Type": "text/plain", "User-Agent": hit.user_agent, "X-Forwarded-For": hit.ip}


class Browser(FastHttpUser):
    """A visitor with the tracker: a session of page views (SPA navigations) and custom events,
    the events of one moment batched into one request, as the tracker batches them."""

    weight = 8
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def one_visit(self) -> None:
        pending: list[dict] = []
        for hit in visit(self.rng, DOMAIN, self.rng.getrandbits(31)):
            body = {
                "n": hit.name,
                "u": hit.url,
                "s": SITE,
                "sid": hit.session,
                "sw": hit.screen[0],
                "sh": hit.screen[1],
            }
            if hit.referrer:
                body["r"] = hit.referrer
            if hit.props:
                body["p"] = hit.props
            pending.append(body)
            if hit.name != "pageview" or len(pending) >= 3 or self.rng.random() < 0.6:
                self._send(hit, pending)
                pending = []
        if pending:
            self._send(hit, pending)

    def _send(self, hit: Hit, batch: list[dict]) -> None:
        body = batch[0] if len(batch) == 1 else {"events": batch}
        with self.client.post(
            "/api/event",
            data=json.dumps(body),
            headers=headers_for(hit),
            name="/api/event (tracker)",
            catch_response=True,
        ) as response:
            if response.status_code == 202:
                accepted["events"] += response.json()["accepted"]
                accepted["requests"] += 1
                response.success()
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")


class PlausibleSender(FastHttpUser):
    """A server (or a site still on Plausible's script) sending Plausible's body by domain."""

    weight = 2
    wait_time = between(0.05, 0.3)

    def on_start(self) -> None:
        self.rng = random.Random()

    @task
    def one_visit(self) -> None:
        for hit in visit(self.rng, DOMAIN, self.rng.getrandbits(31)):
            body = {"n": hit.name, "u": hit.url, "d": DOMAIN, "r": hit.referrer, "p": hit.props}
            with self.client.post(
                "/api/event",
                data=json.dumps(body),
                headers=headers_for(hit),
                name="/api/event (plausible)",
                catch_response=True,
            ) as response:
                if response.status_code == 202:
                    accepted["events"] += 1
                    accepted["requests"] += 1
                    response.success()
                else:
                    response.failure(f"{response.status_code}: {response.text[:200]}")


OVERVIEW = [body for phase in overview.phases("7d") for body in phase.values()]


class DashboardReader(FastHttpUser):
    """A site owner with the dashboard open: the overview's queries (one after the other; a
    Locust user is one connection), now and then."""

    weight = 1
    wait_time = between(1, 3)

    @task
    def overview(self) -> None:
        for index, query in enumerate(OVERVIEW):
            self.client.post(
                "/api/query",
                data=json.dumps({"site_id": SITE} | query),
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
                name=f"/api/query (overview {index})",
            )


@events.quitting.add_listener
def write_totals(environment, **kwargs) -> None:  # type: ignore[no-untyped-def]
    TOTALS.parent.mkdir(parents=True, exist_ok=True)
    TOTALS.write_text(json.dumps(accepted))
