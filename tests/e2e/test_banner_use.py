"""Issue 16 as a person meets it, in real Chromium against the demo (``sessionwatch demo``,
Redis): a page script that loads late (defect 1), signing out of a stale tab (defect 2),
typing through a supersede and a revoke (defect 3; the expiry: test_banner.py), and the texts a tab shows
(defect 5). Each test failed before its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_banner import (
    BANNER,
    DRAFT,
    FIREFOX_ANDROID,
    event_time,
    keep_typing,
    new_context,
    set_policy,
    sign_in,
    signed_in,
    start_draft,
    wait_state,
)

from support.service_process import ServiceProcess

pytestmark = pytest.mark.e2e


async def test_a_page_script_that_loads_after_ready_still_sees_the_claim(
    browser: Any, service: ServiceProcess
) -> None:
    """Defect 1: demo.js held back until 500 ms after ready; its card and log still fill."""
    context = await new_context(browser)
    page = await context.new_page()

    async def late(route: Any) -> None:
        if route.request.url.endswith("/static/demo.js"):
            await page.wait_for_function(
                "document.documentElement.dataset.sessionwatchState === 'active'", timeout=10000
            )
            await asyncio.sleep(0.5)  # the lateness under test, not a wait for an event
        await route.continue_()

    await context.route("**/static/demo.js", late)
    await sign_in(page, service, "late")
    await page.locator("#tab-state", has_text="active").wait_for(timeout=5000)
    assert await page.locator("#tab-gen").inner_text() != "\u2013"  # the placeholder dash
    log = await page.locator("#events").inner_text()
    assert "claimed" in log and "ready" in log
    # any page script: a listener added 500 ms after ready gets it at once
    await event_time(page, "ready")
    await asyncio.sleep(0.5)
    gen = await page.evaluate(
        """() => new Promise((resolve, reject) => {
             SessionWatch.on("ready", (detail) => resolve(detail.gen));
             setTimeout(() => reject(new Error("no ready for a late listener")), 2000);
           })"""
    )
    assert gen == int(await page.locator("#tab-gen").inner_text())
    assert await page.evaluate("SessionWatch.state()") == "active"
    await context.close()


async def sign_out_from(page: Any, service: ServiceProcess) -> None:
    """Leave through the header: its Sign out while the session lives; once it ended
    (signed out or revoked elsewhere) the header says so and offers Sign in instead
    (issue 24 item 7). Either way the login page, no error."""
    await page.click("header button[type=submit], header a[href='/login']", timeout=3000)
    await page.wait_for_url(service.url + "/login", timeout=5000)


async def test_sign_out_works_from_superseded_logged_out_and_revoked_tabs(
    browser: Any, service: ServiceProcess
) -> None:
    """Defect 2: the header's Sign out (data-sessionwatch-skip) is never disabled."""
    context, first = await signed_in(browser, service, "leaver")
    second = await context.new_page()
    await second.goto(service.url + "/")
    await wait_state(first, "superseded")
    assert await first.locator("header button[type=submit]").is_enabled()
    assert await first.locator("#transfer button").is_disabled()  # the rest stays locked
    third = await context.new_page()
    await third.goto(service.url + "/")
    await wait_state(second, "superseded")
    await sign_out_from(second, service)  # superseded → signed out
    await wait_state(first, "logged_out")
    await sign_out_from(first, service)  # logged_out → the login page, no error
    await context.close()

    laptop, laptop_page = await signed_in(browser, service, "leaver2")
    phone, phone_page = await signed_in(browser, service, "leaver2", FIREFOX_ANDROID)
    await phone_page.click("#revoke-others")
    await wait_state(laptop_page, "revoked")
    await sign_out_from(laptop_page, service)
    await laptop.close()
    await phone.close()


async def test_typing_through_supersede_and_revoke_keeps_every_character(
    browser: Any, service: ServiceProcess
) -> None:
    """Defect 3: no focus theft; the first Tab goes to the banner when the user wants it."""
    context, page = await signed_in(browser, service, "writer")
    url = page.url
    typed: list[str] = []
    await start_draft(page)
    await keep_typing(page, typed, "Dear team,")
    other = await context.new_page()
    await other.goto(service.url + "/")
    await page.locator(BANNER.format("superseded")).wait_for(timeout=2000)
    await keep_typing(page, typed, "the quarterly numbers")
    phone, phone_page = await signed_in(browser, service, "writer", FIREFOX_ANDROID)
    await phone_page.click("#revoke-others")
    await page.locator(BANNER.format("revoked")).wait_for(timeout=2000)
    await keep_typing(page, typed, "are attached.")
    assert await page.input_value(DRAFT) == "".join(typed)
    assert page.url == url, "still on the page"
    assert await page.evaluate("document.activeElement.id") == "draft"
    # asked for: the first Tab reaches the banner's button, the next leaves it as usual
    await page.keyboard.press("Tab")
    action = await page.evaluate(
        "document.querySelector('sessionwatch-banner').shadowRoot.activeElement?.dataset.swAction"
    )
    assert action == "sign-in"
    await context.close()
    await phone.close()


async def test_texts_a_stale_tab_shows(browser: Any, service: ServiceProcess) -> None:
    """Defect 5: its own generation; no Not you? for a tab of the same browser."""
    context, first = await signed_in(browser, service, "texts")
    own = await first.locator("#tab-gen").inner_text()
    second = await context.new_page()
    await second.goto(service.url + "/")
    await first.locator(BANNER.format("superseded")).wait_for(timeout=2000)
    await first.locator("#tab-state", has_text="superseded").wait_for(timeout=2000)
    assert await first.locator("#tab-gen").inner_text() == own
    assert await second.locator("#tab-gen").inner_text() != own
    assert (
        await first.locator("sessionwatch-banner [data-sw-action='sign-out-others']").count() == 0
    )
    await context.close()


async def test_a_revoked_tab_drops_the_new_sign_in_toast(
    browser: Any, service: ServiceProcess
) -> None:
    """Defect 5: no 'New sign-in … Not you?' on a tab that has ended."""
    laptop, laptop_page = await signed_in(browser, service, "toasty")
    phone, phone_page = await signed_in(browser, service, "toasty", FIREFOX_ANDROID)
    toast = laptop_page.locator(BANNER.format("signed_in"))
    await toast.wait_for(timeout=2000)
    await phone_page.click("#revoke-others")
    await wait_state(laptop_page, "revoked")
    await toast.wait_for(state="hidden", timeout=2000)
    await laptop.close()
    await phone.close()


async def test_live_tabs_of_a_device_that_just_signed_in(
    browser: Any, service: ServiceProcess
) -> None:
    """Defect 5: the new device shows its live tab well before the 15 s refresh."""
    laptop, laptop_page = await signed_in(browser, service, "counter")
    phone, _phone_page = await signed_in(browser, service, "counter", FIREFOX_ANDROID)
    row = laptop_page.locator("#sessions tr", has_text="Firefox")
    await row.wait_for(timeout=3000)
    await laptop_page.wait_for_function(
        """() => [...document.querySelectorAll('#sessions tr')]
             .some((r) => r.textContent.includes('Firefox') && r.cells[4].textContent === '1')""",
        timeout=7000,
    )
    await laptop.close()
    await phone.close()


async def test_start_options_after_the_autostart_reconfigure(
    browser: Any, service: ServiceProcess
) -> None:
    """Defect 6, its own tag: start(options) on a running client is not ignored."""
    context, first = await signed_in(browser, service, "reconf")
    await first.evaluate(
        "SessionWatch.start({strings: {superseded: 'Reconfigured: open elsewhere.'}})"
    )
    second = await context.new_page()
    await second.goto(service.url + "/")
    banner = first.locator(BANNER.format("superseded"))
    await banner.wait_for(timeout=2000)
    assert "Reconfigured: open elsewhere." in await banner.inner_text()
    await context.close()


async def test_the_banner_speaks_german_for_a_german_browser(
    browser: Any, service: ServiceProcess
) -> None:
    """Translations from navigator.language when the page has no lang of its own."""
    context = await browser.new_context(
        bypass_csp=True, locale="de-DE", viewport={"width": 1100, "height": 760}
    )

    async def without_lang(route: Any) -> None:
        response = await route.fetch()
        body = (await response.text()).replace('<html lang="en">', "<html>")
        await route.fulfill(response=response, body=body)

    await context.route(service.url + "/", without_lang)
    page = await context.new_page()
    await sign_in(page, service, "greta")
    await page.goto(service.url + "/")  # a redirect's target is not routed: load it again
    await wait_state(page, "active")
    assert await page.evaluate("document.documentElement.lang") == ""
    other = await context.new_page()
    await other.goto(service.url + "/")
    banner = page.locator(BANNER.format("superseded"))
    await banner.wait_for(timeout=2000)
    assert "Diese App ist in einem anderen Tab geöffnet." in await banner.inner_text()
    await context.close()


async def test_the_deny_page_keeps_the_username(browser: Any, service: ServiceProcess) -> None:
    """Defect 5: a sign-in refused by the device limit keeps what the user typed."""
    laptop, laptop_page = await signed_in(browser, service, "denise")
    await set_policy(laptop_page, tabs="one", devices="1", on_limit="deny")
    try:
        phone = await new_context(browser, FIREFOX_ANDROID)
        page = await phone.new_page()
        await page.goto(service.url + "/login")
        await page.fill("input[name=username]", "denise")
        await page.fill("input[name=password]", "demo")
        await page.click("button[type=submit]")
        await page.locator(".error", has_text="already have 1 active session").wait_for(
            timeout=5000
        )
        assert await page.input_value("input[name=username]") == "denise"
        assert await page.evaluate("document.activeElement.name") == "password"
        await phone.close()
    finally:
        await set_policy(laptop_page, tabs="one", devices="", on_limit="evict_oldest")
    await laptop.close()
