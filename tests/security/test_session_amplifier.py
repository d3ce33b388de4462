"""Issue 22, item 6 (unlimited sessions per user as an amplifier), on a real
``sessionwatch serve`` on a private Redis: the review signed one user in 3,041 times
through cookieless session-API logins, then four clients looping the sessions listing
(648 KB answers, 45.7 ms in Redis each) slowed a bystander's claims 100-fold.

Each test asserts the bound, not a time: a listing answers one bounded page with a
cursor, a user never holds more than ``max_sessions_per_user`` live sessions (the
oldest are evicted), and sign-ins beyond the per-user and per-address rates are
answered 429 ``rate_limited`` with ``Retry-After``. (The figures before and after are
measured by ``tests/bench/amplifier.py``.)"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest

from sessionwatch.client import SessionAPI
from support.attacks import Answer, raw_request
from support.redis_server import RedisServer
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess

API_KEY = "amplifier-test-key-0123456789abcdef"
API = "/_sessionwatch/api/v1"
CEILING = 20


def service(redis: RedisServer, **settings: str) -> ServiceProcess:
    env = {"SESSIONWATCH_API_KEYS": API_KEY, **settings}
    return ServiceProcess(redis.url, key_prefix=f"amp:{uuid.uuid4().hex[:8]}:", env=env)


async def api(process: ServiceProcess, method: str, path: str, body: Any = None) -> Answer:
    headers = [("Authorization", f"Bearer {API_KEY}")]
    data = b""
    if body is not None:
        headers.append(("Content-Type", "application/json"))
        data = json.dumps(body).encode()
    return await raw_request(process.port, method, API + path, headers, data)


async def sign_in(process: ServiceProcess, user: str, client_ip: str = "198.51.100.7") -> Answer:
    """A cookieless sign-in through the session API, as the review's were."""
    return await api(process, "POST", "/login", {"user": user, "client_ip": client_ip})


async def test_listings_are_paged_and_a_user_holds_at_most_the_ceiling(
    redis_server: RedisServer,
) -> None:
    settings = {
        "SESSIONWATCH_MAX_SESSIONS_PER_USER": str(CEILING),
        "SESSIONWATCH_MAX_LOGINS_PER_USER_PER_SECOND": "100000",
        "SESSIONWATCH_MAX_LOGINS_PER_ADDRESS_PER_SECOND": "100000",
    }
    with service(redis_server, **settings) as process:
        answers = [await sign_in(process, "mallory") for _ in range(CEILING + 10)]
        assert [a.status for a in answers] == [200] * (CEILING + 10)
        # The ceiling: the 10 sign-ins beyond it each evicted the oldest session.
        evicted = {sid for a in answers for sid in a.json()["evicted"]}
        assert len(evicted) == 10
        signed = [a.json()["session"] for a in answers]

        # The session API's listing: pages of at most `limit`, oldest first, a cursor.
        listed: list[tuple[int, str]] = []
        cursor = None
        for _ in range(10):  # bounded: 20 sessions in pages of 7
            query = "/sessions?user=mallory&limit=7" + (f"&cursor={cursor}" if cursor else "")
            page = await api(process, "GET", query)
            assert page.status == 200, page.body
            body = page.json()
            assert len(body["sessions"]) <= 7
            listed += [(s["created"], s["id"]) for s in body["sessions"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert listed == sorted(listed)  # oldest first, each exactly once
        assert {sid for _, sid in listed} == set(signed) - evicted
        assert len(listed) == CEILING

        # The Python client's sessions() follows the pages: the same sessions.
        every = await asyncio.to_thread(SessionAPI(process.url, API_KEY).sessions, "mallory")
        assert [(s["created"], s["id"]) for s in every] == listed

        # A larger limit is clamped to the page bound; a forged cursor is a 400.
        whole = await api(process, "GET", "/sessions?user=mallory&limit=100000")
        assert whole.status == 200 and whole.json()["next_cursor"] is None
        assert len(whole.json()["sessions"]) == CEILING
        for bad in ("cursor=%7B%7D", "cursor=" + "A" * 500, "limit=0", "limit=x"):
            refused = await api(process, "GET", f"/sessions?user=mallory&{bad}")
            assert (refused.status, refused.json()["error"]) == (400, "bad_page"), bad

        # The browser's listing (GET /_sessionwatch/sessions), signed in by the API.
        cookie = answers[-1].json()["cookie"]
        mine = await raw_request(
            process.port,
            "GET",
            "/_sessionwatch/sessions?limit=5",
            [("Cookie", f"{cookie['name']}={cookie['value']}")],
        )
        assert mine.status == 200, mine.body
        assert len(mine.json()["sessions"]) == 5 and mine.json()["next_cursor"]


async def test_sign_ins_beyond_the_rate_are_refused_with_retry_after(
    redis_server: RedisServer,
) -> None:
    settings = {
        "SESSIONWATCH_MAX_LOGINS_PER_USER_PER_SECOND": "0.01",  # 5 s worth: one sign-in
        "SESSIONWATCH_MAX_LOGINS_PER_ADDRESS_PER_SECOND": "0.4",  # 5 s worth: two
    }
    with service(redis_server, **settings) as process:
        # Per user: one sign-in of eve, then 429 whatever the address.
        assert (await sign_in(process, "eve", "203.0.113.1")).status == 200
        again = await sign_in(process, "eve", "203.0.113.2")
        assert (again.status, again.json()["error"]) == (429, "rate_limited")
        assert int(again.header("Retry-After") or "0") >= 1
        # Per address: two sign-ins of different users from one address, then 429.
        assert (await sign_in(process, "u1", "192.0.2.9")).status == 200
        assert (await sign_in(process, "u2", "192.0.2.9")).status == 200
        third = await sign_in(process, "u3", "192.0.2.9")
        assert (third.status, third.json()["error"]) == (429, "rate_limited")
        assert int(third.header("Retry-After") or "0") >= 1
        # Another address and another user are not held up by either.
        assert (await sign_in(process, "u3", "192.0.2.10")).status == 200
