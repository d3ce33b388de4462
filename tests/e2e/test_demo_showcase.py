"""The demo as a newcomer judges it (issue 24 item 7), in real Chromium: no failed request
on any page (the favicon), a stale tab cannot press "Apply", a tab signed out elsewhere
stops claiming that someone is signed in, "Live tabs" follows the tabs as they open
(pushed, not polled), and a desktop screen has no empty third."""

from __future__ import annotations

from typing import Any

import pytest
from test_banner import BANNER, new_context, sign_in, signed_in, wait_state

from support.service_process import DemoProcess

pytestmark = pytest.mark.e2e


async def test_no_request_of_the_demo_pages_fails(browser: Any, service: DemoProcess) -> None:
    context = await new_context(browser)
    page = await context.new_page()
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    await sign_in(page, service, "favicon")  # the login page, then the home page
    await page.reload()
    await wait_state(page, "active")
    icon = await page.evaluate("() => document.querySelector('link[rel~=icon]')?.href")
    assert icon, "a page without an icon link makes the browser ask /favicon.ico (404)"
    assert failed == []
    await context.close()


async def another_tab(context: Any, service: DemoProcess) -> Any:
    """A new tab of the signed-in browser ``context`` on the demo's page, active."""
    page = await context.new_page()
    await page.goto(service.url + "/")
    await wait_state(page, "active")
    return page


async def test_a_stale_tab_cannot_press_apply(browser: Any, service: DemoProcess) -> None:
    context = await new_context(browser)
    older = await context.new_page()
    await sign_in(older, service, "stale-apply")
    apply = older.locator("#policy button[type=submit]")
    assert await apply.is_enabled()
    newer = await another_tab(context, service)
    await wait_state(older, "superseded")
    assert await apply.is_disabled()  # the server would refuse it (409) anyway
    assert await newer.locator("#policy button[type=submit]").is_enabled()
    await context.close()


async def test_a_tab_signed_out_elsewhere_says_so_in_its_header(
    browser: Any, service: DemoProcess
) -> None:
    laptop = await new_context(browser)
    page = await laptop.new_page()
    await sign_in(page, service, "header-user")
    header = page.locator("header.top")
    assert "Signed in as header-user" in await header.inner_text()

    phone = await new_context(browser)
    other = await phone.new_page()
    await sign_in(other, service, "header-user")
    revoked = await other.evaluate(
        "async () => (await fetch('/_sessionwatch/sessions/revoke-others', {method: 'POST'})).status"
    )
    assert revoked == 200
    await page.locator(BANNER.format("revoked")).wait_for(timeout=5000)
    text = await header.inner_text()
    assert "Signed in as" not in text and "Sign out" not in text, text
    assert "Signed out" in text
    assert await header.locator("a[href='/login']").count() == 1
    # the device that stayed signed in keeps its header
    assert "Signed in as header-user" in await other.locator("header.top").inner_text()
    await phone.close()
    await laptop.close()


# The "Live tabs" cell of the sessions table's first row (one session: this device's).
_LIVE_TABS = "() => document.querySelector('#sessions tr td:nth-child(5)')?.textContent"


async def test_live_tabs_follow_the_tabs_without_a_request(
    browser: Any, service: DemoProcess
) -> None:
    context, first = await signed_in(browser, service, "live-tabs")
    await another_tab(context, service)
    await first.wait_for_function(f"() => ({_LIVE_TABS})() === '2'", timeout=10000)
    listings: list[str] = []
    first.on("request", lambda r: listings.append(r.url) if "/sessions" in r.url else None)
    third = await another_tab(context, service)
    # was: "2" until the page polled the list again (every 15 s)
    await first.wait_for_function(f"() => ({_LIVE_TABS})() === '3'", timeout=10000)
    await third.close()
    await first.wait_for_function(f"() => ({_LIVE_TABS})() === '2'", timeout=10000)
    assert listings == [], "the count came with the push, not with a request"
    await context.close()


# How much of each third of the window's width the cards cover, over the top screenful
# (from the first card's top down): lines 10 px apart, covered width over the third's;
# and how many cards overlap another (a wide card under the right column).
_THIRDS = """
() => {
  const cards = [...document.querySelectorAll("main .card")].map((c) => c.getBoundingClientRect());
  const width = document.documentElement.clientWidth, third = width / 3;
  const covered = [0, 0, 0];
  let lines = 0;
  for (let y = Math.min(...cards.map((r) => r.top)); y < innerHeight; y += 10, lines++) {
    for (const r of cards.filter((r) => r.top <= y && y < r.bottom)) {
      for (const i of [0, 1, 2]) {
        covered[i] += Math.max(0, Math.min(r.right, (i + 1) * third) - Math.max(r.left, i * third));
      }
    }
  }
  const overlaps = cards.filter((a, i) => cards.slice(i + 1).some((b) =>
    a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)).length;
  return { width, overlaps, covered: covered.map((c) => Math.round((100 * c) / (third * lines))) };
}
"""


async def test_a_desktop_screen_has_no_empty_third(browser: Any, service: DemoProcess) -> None:
    context = await browser.new_context(viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    await sign_in(page, service, "desktop-layout")
    figures = await page.evaluate(_THIRDS)
    assert figures["width"] == 1440 and figures["overlaps"] == 0, figures
    # was [59, 83, 12] (%): the right third held only the end of the sessions table
    assert min(figures["covered"]) >= 50, f"a third of the screen is mostly empty: {figures}"
    await context.close()
