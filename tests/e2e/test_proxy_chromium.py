"""The Flask upstream through real nginx, in real Chromium: the app has no sessionwatch
code but its login/logout calls, and still gets the banner and 409 for stale tabs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_banner import BANNER, FIREFOX_ANDROID, new_context, transfer_status, wait_state

from sessionwatch.demo.proxy import ProxyDemo
from support.proxy import require_nginx

pytestmark = pytest.mark.e2e

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "any-stack.md"


def documented_console_check() -> str:
    """The expression docs/any-stack.md gives for seeing nginx's 409 from the older tab
    (its Transfer button is disabled there)."""
    (block,) = re.findall(
        r"```js\n(\(await fetch\(\"/api/transfer\".*?)```", GUIDE.read_text(), re.S
    )
    return re.sub(r"//[^\n]*", "", block).strip()


@pytest.fixture(scope="module", name="site")
def _site(redis_url: str) -> Iterator[str]:
    """The Flask app behind nginx; the service's policy (one tab, one device, evict the
    oldest) comes from its environment, as in production."""
    require_nginx()
    policy = {
        "SESSIONWATCH_TABS_PER_SESSION": "1",
        "SESSIONWATCH_SESSIONS_PER_USER": "1",
        "SESSIONWATCH_ON_LIMIT": "evict_oldest",
    }
    with ProxyDemo(
        backend=redis_url,
        workers=2,
        express_port=None,
        env={"SESSIONWATCH_KEY_PREFIX": f"e2e-proxy:{uuid.uuid4().hex[:8]}:", **policy},
    ) as demo:
        yield demo.urls["flask"]


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
    # the guide's walk-through: the button is disabled there; its console check shows 409
    assert await older.locator("#transfer").is_disabled()
    assert await older.evaluate(f"async () => {documented_console_check()}") == 409
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
