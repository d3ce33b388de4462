"""``sessionwatch_push_latency_seconds``: every event pushed to a socket is observed,
from its arrival on pub/sub to its frame being written."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from quart import Quart

from sessionwatch.service.ops import register_ops
from support.app_factory import make_app
from support.live import WAIT, Browser, watch_of


@pytest.fixture(name="app")
async def _app(backend_url: str, key_prefix: str) -> AsyncIterator[Quart]:
    app = make_app(backend_url, key_prefix=key_prefix)
    register_ops(app, watch_of(app), metrics=True)
    async with app.test_app():
        yield app


async def _pushes_observed(app: Quart) -> float:
    text = await (await app.test_client().get("/metrics")).get_data(as_text=True)
    found = re.search(r"^sessionwatch_push_latency_seconds_count (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


async def _until(app: Quart, count: float) -> None:
    async def wait() -> None:
        while await _pushes_observed(app) < count:  # noqa: ASYNC110 (polls /metrics)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), WAIT)


async def test_each_push_to_a_socket_is_observed(app: Quart) -> None:
    browser = Browser(app)
    assert await _pushes_observed(app) == 0
    async with browser.tab() as (old, _):
        second = await browser.claim()  # the older tab is told: one push
        assert (await old.receive())["type"] == "superseded"
        await _until(app, 1)
        async with browser.socket() as new:
            assert (await new.hello(second["tab"]))["type"] == "ready"  # not an event
            await browser.claim()  # both tabs are older now: two pushes
            for ws in (old, new):
                assert (await ws.receive())["type"] == "superseded"
            await _until(app, 3)
    assert await _pushes_observed(app) == 3  # nothing else counted (ready, pong)
