"""The Flask upstream through real nginx, in real Chromium: the app has no sessionwatch
code but its login/logout calls, and still gets the banner and 409 for stale tabs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_banner import BANNER, FIREFOX_ANDROID, new_context, transfer_status, wait_state

from sessionwatch.demo.proxy import ProxyDemo
from support.proxy import require_nginx

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", name="site")
def _site(redis_url: str) -> Iterator[str]:
    """The Flask app behind nginx; the demo policy (one tab, one device, evict the
    oldest) is stored before the service starts, so every worker applies it from the
    first request."""
    import redis

    from sessionwatch.backends.keys import app_value_key

    require_nginx()
    prefix = f"e2e-proxy:{uuid.uuid4().hex[:8]}:"
    client = redis.Redis.from_url(redis_url)
    policy = {"one_tab": True, "devices": 1, "on_limit": "evict_oldest"}
    key = app_value_key(prefix, "demo:policy")  # the demo's PolicyStore value
    client.set(key, json.dumps(policy))
    try:
        with ProxyDemo(
            backend=redis_url,
            workers=2,
            express_port=None,
            env={"SESSIONWATCH_KEY_PREFIX": prefix},
        ) as demo:
            yield demo.urls["flask"]
    finally:
        client.delete(key)
        client.close()


async def sign_in(page: Any, site: str, user: str) -> None:
    await page.goto(site + "/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", "demo")
    await page.click("button[type=submit]")
    await page.wait_for_url(site + "/")
    await wait_state(page, "active")


async def test_flask_behind_nginx_gets_the_banner_409_and_evictions(
    browser: Any, site: str, artifacts: Path
) -> None:
    laptop = await new_context(browser)
    older = await laptop.new_page()
    await sign_in(older, site, "proxied")
    assert await older.locator("#user").inner_text() == "proxied"
    assert await transfer_status(older) == 200

    # two tabs: the older one is told and refused by nginx (409, not 403/500)
    newer = await laptop.new_page()
    await newer.goto(site + "/")
    await wait_state(newer, "active")
    await older.locator(BANNER.format("superseded")).wait_for(timeout=5000)
    await wait_state(older, "superseded")
    assert await transfer_status(older) == 409
    assert await transfer_status(newer) == 200
    answer = await older.evaluate(
        """async () => (await fetch('/api/transfer', {method: 'POST',
             headers: {'Content-Type': 'application/json'}, body: '{}'})).json()"""
    )
    assert answer["error"] == "tab_superseded"
    await older.screenshot(path=str(artifacts / "proxy-superseded.png"))

    # "Use here" flips it back
    await older.locator("sessionwatch-banner [data-sw-action='use-here']").click()
    await wait_state(older, "active")
    await newer.locator(BANNER.format("superseded")).wait_for(timeout=5000)
    assert await transfer_status(older) == 200
    assert await transfer_status(newer) == 409
    await older.click("#transfer")
    await older.locator("#result").filter(has_text="200").wait_for(timeout=5000)

    # a second device signs in: the policy (one device, evict the oldest) evicts the laptop
    phone = await new_context(browser, FIREFOX_ANDROID)
    phone_page = await phone.new_page()
    await sign_in(phone_page, site, "proxied")
    banner = older.locator(BANNER.format("evicted"))
    await banner.wait_for(timeout=5000)
    assert "Firefox" in await banner.inner_text()
    assert await transfer_status(older) == 401
    assert await transfer_status(phone_page) == 200
    await older.screenshot(path=str(artifacts / "proxy-evicted.png"))
    await phone.close()
    await laptop.close()
