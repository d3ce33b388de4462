"""Issue 27 in real Chromium against the demo on Redis: the chooser at the session limit
(limit 2, a third device signs in and chooses one of the two others, which is told live
and closes), and step-up on a large transfer (the client's "confirm it's you" toast, the
re-auth page, the transfer passing afterwards)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from test_banner import (
    BANNER,
    FIREFOX_ANDROID,
    new_context,
    set_policy,
    signed_in,
    wait_state,
)

from sessionwatch.demo.app import STEP_UP_AMOUNT
from support.service_process import DemoProcess

pytestmark = pytest.mark.e2e

SAFARI = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15"
)


async def test_the_third_device_chooses_which_one_to_sign_out(
    browser: Any, service: DemoProcess
) -> None:
    laptop, laptop_page = await signed_in(browser, service, "chooser")
    await set_policy(laptop_page, tabs="one", devices="2", on_limit="ask")
    try:
        phone, phone_page = await signed_in(browser, service, "chooser", FIREFOX_ANDROID)
        tablet = await new_context(browser, SAFARI)
        page = await tablet.new_page()
        await page.goto(service.url + "/login")
        await page.fill("input[name=username]", "chooser")
        await page.fill("input[name=password]", "demo")
        await page.click("button[type=submit]")
        chooser = page.locator("#chooser")
        await chooser.wait_for(timeout=5000)
        buttons = chooser.locator("button[name=evict]")
        assert await buttons.count() == 2
        assert "Chrome" in await buttons.nth(0).inner_text()
        assert "Firefox" in await buttons.nth(1).inner_text()
        await buttons.nth(1).click()  # the phone: not the oldest
        await page.wait_for_url(service.url + "/")
        await wait_state(page, "active")
        assert "Signed in as chooser" in await page.locator("header.top").inner_text()
        banner = phone_page.locator(BANNER.format("evicted"))
        await banner.wait_for(timeout=5000)  # told live, by the push
        assert "Safari" in await banner.inner_text()
        await wait_state(phone_page, "evicted")  # its socket closed (4005)
        assert await phone_page.locator("#transfer button").is_disabled()
        assert await laptop_page.evaluate("document.documentElement.dataset.sessionwatchState") == (
            "active"
        )
        await tablet.close()
        await phone.close()
    finally:
        await set_policy(laptop_page, tabs="one", devices="", on_limit="evict_oldest")
    await laptop.close()


async def test_a_large_transfer_asks_to_confirm_it_is_you(
    browser: Any, service: DemoProcess
) -> None:
    context, page = await signed_in(browser, service, "stepper")
    amount = str(STEP_UP_AMOUNT + 500)
    await page.fill("#transfer input[name=amount]", amount)
    await page.click("#transfer button[type=submit]")
    await page.locator("#transfer-result.ok").wait_for(timeout=5000)  # a fresh sign-in
    # The sign-in was long ago: its time, as the server keeps it, is moved back.
    state = await page.evaluate("async () => (await fetch('/_sessionwatch/state')).json()")
    client = redis.Redis.from_url(service.env["REDIS_URL"])
    try:
        key = service.env["SESSIONWATCH_KEY_PREFIX"] + "s:" + state["session"]
        assert client.hset(key, "auth", "1") == 0  # the field existed: only its value changed
    finally:
        client.close()
    await page.click("#transfer button[type=submit]")
    await page.locator("#transfer-result.bad").wait_for(timeout=5000)
    assert "401" in await page.locator("#transfer-result").inner_text()
    toast = page.locator(BANNER.format("reauth_required"))
    await toast.wait_for(timeout=5000)
    assert "Confirm it's you" in await toast.inner_text()
    await wait_state(page, "active")  # the session lives on: no banner
    await page.locator("sessionwatch-banner [data-sw-action='confirm']").click()
    await page.wait_for_url("**/reauth?next=*")
    await page.fill("input[name=password]", "demo")
    await page.click("form[action='/reauth'] button[type=submit]")  # not the header's Sign out
    await page.wait_for_url(service.url + "/")
    await wait_state(page, "active")
    await page.fill("#transfer input[name=amount]", amount)
    await page.click("#transfer button[type=submit]")
    await page.locator("#transfer-result.ok").wait_for(timeout=5000)
    assert amount in await page.locator("#transfer-result").inner_text()
    await context.close()


async def test_the_session_survives_a_reload_after_confirming(
    browser: Any, service: DemoProcess
) -> None:
    """The step-up form records the proof without rotating: the tab's session id and its
    other devices stay as they were."""
    laptop, page = await signed_in(browser, service, "keeper")
    phone, phone_page = await signed_in(browser, service, "keeper", FIREFOX_ANDROID)
    before = await page.evaluate("async () => (await fetch('/_sessionwatch/state')).json()")
    await page.goto(service.url + "/reauth?next=/")
    await page.fill("input[name=password]", "demo")
    await page.click("form[action='/reauth'] button[type=submit]")  # not the header's Sign out
    await page.wait_for_url(service.url + "/")
    await wait_state(page, "active")
    after = await page.evaluate("async () => (await fetch('/_sessionwatch/state')).json()")
    assert after["session"] == before["session"]
    assert await phone_page.evaluate("document.documentElement.dataset.sessionwatchState") == (
        "active"
    )
    await phone.close()
    await laptop.close()
