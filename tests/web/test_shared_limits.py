"""Issue 23, in one test process: two apps on one Redis and key prefix stand for two
workers (or hosts). New sessions and sign-ins of one address share one count
(``shared_rate_limits``, on by default); switched off, each app counts its own.
The black-box version on ``sessionwatch serve --workers 2`` is
``security/test_shared_limits_service.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from quart import Quart

from support.app_factory import make_app

JSON = {"Content-Type": "application/json"}
ADDRESS = {"X-Forwarded-For": "203.0.113.61"}

Workers = Callable[..., Awaitable[list[Quart]]]


@pytest.fixture(name="workers")
async def _workers(redis_url: str, key_prefix: str) -> AsyncIterator[Workers]:
    started: list[Quart] = []

    async def workers(**options: Any) -> list[Quart]:
        apps = [
            make_app(redis_url, key_prefix=key_prefix, trust_forwarded_for=True, **options)
            for _ in range(2)
        ]
        for app in apps:
            await app.startup()
            started.append(app)
        return apps

    yield workers
    for app in started:
        await app.shutdown()


async def new_sessions(app: Quart, count: int) -> list[int]:
    statuses = []
    for _ in range(count):  # a fresh client each time: no cookie, a new session
        answer = await app.test_client().post(
            "/_sessionwatch/claim", json={}, headers={**JSON, **ADDRESS}
        )
        statuses.append(answer.status_code)
    return statuses


async def sign_ins(app: Quart, users: list[str]) -> list[int]:
    statuses = []
    for user in users:
        answer = await app.test_client().post("/login", json={"user": user}, headers=ADDRESS)
        statuses.append(answer.status_code)
    return statuses


# A rate of one every 100 s: the burst is the whole budget during the test.
SLOW = 0.01


async def test_new_sessions_of_one_address_share_one_count(workers: Workers) -> None:
    first, second = await workers(max_new_sessions_per_second=SLOW)  # a burst of one
    assert await new_sessions(first, 2) == [200, 429]
    assert await new_sessions(second, 1) == [429]  # the other worker: spent already
    answer = await second.test_client().post(
        "/_sessionwatch/claim", json={}, headers={**JSON, "X-Forwarded-For": "203.0.113.62"}
    )
    assert answer.status_code == 200  # another address has its own


async def test_sign_ins_of_one_address_and_one_user_share_one_count(workers: Workers) -> None:
    # Bursts of five seconds' worth: 2 sign-ins per address, 1 per user.
    first, second = await workers(
        max_logins_per_address_per_second=0.4, max_logins_per_user_per_second=0.2
    )
    assert await sign_ins(first, ["ana"]) == [200]
    assert await sign_ins(second, ["ana"]) == [429]  # the user's one sign-in is spent
    assert await sign_ins(second, ["bo"]) == [200]  # the address's second
    assert await sign_ins(first, ["cy"]) == [429]  # the address is spent on both


async def test_switched_off_each_worker_counts_its_own(workers: Workers) -> None:
    first, second = await workers(max_new_sessions_per_second=SLOW, shared_rate_limits=False)
    assert await new_sessions(first, 2) == [200, 429]
    assert await new_sessions(second, 2) == [200, 429]  # per process: twice the rate
