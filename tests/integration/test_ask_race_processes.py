"""``on_limit="ask"`` under a race: twenty browsers of one user, each holding its own
pending sign-in, complete their choice at once through two server processes (uvicorn
and hypercorn) with ``sessions_per_user=2``, on one Redis and on the 6-node Redis
Cluster (where each completion is the cross-slot kind: the anonymous session's slot,
then the user's, which holds the pending sign-in and the re-check). Each chooses one of
the two sessions there were. At most two sessions may survive, whatever the
interleaving: exactly two completions succeed. (On memory:// the same race runs over
tasks: tests/backends/test_ask_contract.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from integration.test_live_push_processes import serving
from support.push_processes import HttpBrowser

pytestmark = pytest.mark.multiprocess

BROWSERS = 20
USER = "ask-race"


@pytest.mark.parametrize("store", ["redis", "cluster"])
async def test_twenty_simultaneous_choices_leave_at_most_the_limit(
    store: str, key_prefix: str, request: pytest.FixtureRequest
) -> None:
    url = (
        request.getfixturevalue("redis_cluster").url
        if store == "cluster"
        else request.getfixturevalue("redis_url")
    )
    policy = {"sessions_per_user": 2, "on_limit": "ask"}
    with serving(url, key_prefix, policy=policy) as processes:
        holders = [HttpBrowser(), HttpBrowser()]
        for i, holder in enumerate(holders):
            status, _ = await holder.request("POST", processes[i].url + "/login", {"user": USER})
            assert status == 200
        ids = []
        for i, holder in enumerate(holders):
            _, state = await holder.request("GET", processes[i].url + "/_sessionwatch/state")
            ids.append(state["session"])
        browsers = [HttpBrowser() for _ in range(BROWSERS)]
        pendings = []
        for i, browser in enumerate(browsers):
            await browser.claim(processes[i % 2])  # an anonymous session first
            status, body = await browser.request(
                "POST", processes[i % 2].url + "/login", {"user": USER}
            )
            assert status == 409 and body["error"] == "session_choice_required", body
            pendings.append(body["pending"])

        async def choose(i: int) -> tuple[int, Any]:
            choice = {"pending": pendings[i], "evict": [ids[i % 2]]}
            return await browsers[i].request(
                "POST", processes[(i + 1) % 2].url + "/complete-login", choice
            )

        answers = await asyncio.wait_for(asyncio.gather(*(choose(i) for i in range(BROWSERS))), 60)
        statuses = sorted(status for status, _ in answers)
        assert statuses == [200] * 2 + [409] * (BROWSERS - 2), answers
        assert {b["error"] for s, b in answers if s == 409} == {"session_choice_required"}
        live = []
        for i, browser in enumerate([*holders, *browsers]):
            status, body = await browser.request(
                "GET", processes[i % 2].url + "/_sessionwatch/state"
            )
            if status == 200 and body.get("user") == USER:
                live.append(i)
        assert len(live) == 2, live
        assert not set(live) & {0, 1}  # both holders were chosen, one by each winner
