"""Remember-me reuse detection across two server processes (uvicorn and hypercorn) on
one Redis, or on the 6-node Redis Cluster (docs/policies.md, "Remember-me").

A thief copied the remember cookie. The owner's browser restarts and restores through
process A (the token rotates); the thief presents the copy through process B: the
whole family ends, the owner's restored session with it, and the owner's tab, connected
to B, is told ``revoked{reason: "token_reuse"}`` live.
"""

from __future__ import annotations

import asyncio

import pytest

from integration.test_live_push_processes import WAIT, close_code, hello, serving, socket
from sessionwatch import CloseCode
from support.push_processes import HttpBrowser

pytestmark = pytest.mark.multiprocess

REMEMBER = "sw_remember"
GRACE = 0.2  # seconds: the owner's two tabs may restore at once within it


def restarted(remember: str) -> HttpBrowser:
    """A browser with nothing but the remember cookie (a restart, or a thief's copy)."""
    browser = HttpBrowser()
    browser.cookies[REMEMBER] = remember
    return browser


@pytest.mark.parametrize(
    "topology", ["redis", pytest.param("cluster", marks=pytest.mark.cluster_extended)]
)
async def test_a_reused_token_on_another_process_ends_the_family_live(
    topology: str, key_prefix: str, request: pytest.FixtureRequest
) -> None:
    fixture = "redis_cluster" if topology == "cluster" else "redis_url"
    found = request.getfixturevalue(fixture)
    url = found.url if topology == "cluster" else found
    with serving(url, key_prefix, remember_grace=GRACE) as (a, b):
        first = HttpBrowser()
        status, _ = await first.request(
            "POST", a.url + "/login", {"user": "rita", "remember": True}
        )
        assert status == 200
        stolen = first.cookies[REMEMBER]
        owner, twin = restarted(stolen), restarted(stolen)
        # The owner's two tabs restore at once after the restart, one on each process:
        # the same successor, the same session (not a reuse).
        answers = await asyncio.gather(
            owner.request("GET", a.url + "/data"), twin.request("GET", b.url + "/data")
        )
        assert [status for status, _ in answers] == [200, 200]
        assert owner.cookies == twin.cookies and owner.cookies[REMEMBER] != stolen
        tab = await owner.claim(b)
        assert tab["user"] == "rita"
        async with socket(owner, b) as ws:
            assert (await hello(ws, tab["tab"]))["type"] == "ready"
            await asyncio.sleep(GRACE * 2)  # the grace window is over (a minimum, not a race)
            thief = restarted(stolen)
            status, _ = await thief.request("GET", a.url + "/data")
            assert status == 200 and REMEMBER not in thief.cookies  # cleared, no session
            code, seen = await asyncio.wait_for(close_code(ws), WAIT)
            assert code == CloseCode.REVOKED
            assert seen == [{"type": "revoked", "reason": "token_reuse"}]
        # The owner's successor died with the family: nothing restores any more.
        status, body = await owner.request("GET", b.url + "/data")
        assert status == 200 and body == {} and REMEMBER not in owner.cookies
