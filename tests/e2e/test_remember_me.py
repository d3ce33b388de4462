"""Remember-me as a person meets it, in real Chromium against the demo (Redis): it
survives a browser restart (a new context holding nothing but the remember cookie)
and dies with "Sign out all other sessions" on another device (docs/policies.md,
"Remember-me")."""

from __future__ import annotations

from typing import Any

import pytest
from test_banner import FIREFOX_ANDROID, new_context, signed_in, wait_state

from support.service_process import ServiceProcess

pytestmark = pytest.mark.e2e

REMEMBER = "sw_remember"


async def remember_cookie(context: Any) -> dict[str, Any]:
    (cookie,) = [c for c in await context.cookies() if c["name"] == REMEMBER]
    return dict(cookie)


async def restarted(browser: Any, cookie: dict[str, Any]) -> tuple[Any, Any]:
    """The browser after a restart: a new context whose jar holds only ``cookie``."""
    context = await new_context(browser)
    await context.add_cookies([cookie])
    return context, await context.new_page()


async def test_remember_me_survives_a_restart_and_dies_with_sign_out_others(
    browser: Any, service: ServiceProcess
) -> None:
    first = await new_context(browser)
    page = await first.new_page()
    await page.goto(service.url + "/login")
    await page.fill("input[name=username]", "remy")
    await page.fill("input[name=password]", "demo")
    await page.check("input[name=remember]")
    await page.click("button[type=submit]")
    await page.wait_for_url(service.url + "/")
    cookie = await remember_cookie(first)
    assert cookie["httpOnly"] and cookie["expires"] > 0  # kept across restarts
    await first.close()  # the browser quits: its session cookie is gone

    context, page = await restarted(browser, cookie)
    await page.goto(service.url + "/")
    assert page.url == service.url + "/", "signed in again without the login page"
    await wait_state(page, "active")
    assert "remy" in await page.locator("header").inner_text()
    rotated = await remember_cookie(context)
    assert rotated["value"] != cookie["value"]

    phone, phone_page = await signed_in(browser, service, "remy", FIREFOX_ANDROID)
    await phone_page.click("#revoke-others")
    await wait_state(page, "revoked")  # told live
    await context.close()
    await phone.close()

    again, page = await restarted(browser, rotated)  # the next restart
    await page.goto(service.url + "/")
    await page.wait_for_url(service.url + "/login")
    assert [c for c in await again.cookies() if c["name"] == REMEMBER] == []
    await again.close()
