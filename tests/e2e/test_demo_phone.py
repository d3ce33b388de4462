"""The demo's pages fit a phone's screen (issue 24 item 4), in Chromium with mobile emulation.

At 390 px the sessions table overflowed to 485 px. With mobile emulation a page wider than
the screen widens the layout viewport, so ``innerWidth`` grows with it (485 px, not 390):
the test compares the document's width with the screen's (``clientWidth`` of ``<html>``,
the initial containing block), and names the elements that stick out.
"""

from __future__ import annotations

from typing import Any

import pytest

from support.browser import PHONES, phone_options
from support.service_process import DemoProcess

pytestmark = pytest.mark.e2e


_OVERFLOW = """
() => {
  const screen = document.documentElement.clientWidth;
  const out = [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > screen + 0.5)
    .map((el) => el.localName + (el.id ? "#" + el.id : "") + (el.className ? "." + el.className : "")
                 + " " + Math.round(el.getBoundingClientRect().right));
  return { document: document.documentElement.scrollWidth, screen, innerWidth, out: out.slice(0, 8) };
}
"""


async def assert_fits(page: Any, name: str, width: int) -> None:
    figures = await page.evaluate(_OVERFLOW)
    assert figures["screen"] == width, figures
    assert figures["document"] <= figures["screen"], f"{name} overflows at {width} px: {figures}"


async def sign_in(page: Any, service: DemoProcess, user: str) -> None:
    await page.goto(service.url + "/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", "demo")
    await page.click("button[type=submit]")
    await page.wait_for_url(service.url + "/")


@pytest.mark.parametrize("width", PHONES)
async def test_demo_pages_fit_the_screen(
    mobile: tuple[Any, dict[str, Any]], service: DemoProcess, width: int
) -> None:
    browser, devices = mobile
    descriptor = phone_options(devices, width)
    user = f"a-rather-long-user-name-{width}"
    desktop = await browser.new_context()  # a second session: two rows in the table
    context = await browser.new_context(**descriptor)
    try:
        page = await context.new_page()
        await page.goto(service.url + "/login")
        await assert_fits(page, "/login", width)
        await sign_in(await desktop.new_page(), service, user)
        await sign_in(page, service, user)
        await page.wait_for_function(
            "() => document.querySelectorAll('#sessions tr td:not([colspan])').length >= 2",
            timeout=10000,
        )
        await assert_fits(page, "/ (two sessions)", width)
        await page.goto(service.url + "/reauth")
        await assert_fits(page, "/reauth", width)
    finally:
        await context.close()
        await desktop.close()
