"""Plain HTTP beyond localhost (issue 16, defect 7), in real Chromium: a host name mapped
to the loopback address in the browser only, so the page is not a secure context and the
browser drops the Secure session cookie. Signing in used to log success and return to the
login page with nothing said; the login page and the log now name the setting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.browser import CHROMIUM_ARGS
from support.service_process import ServiceProcess

pytestmark = pytest.mark.e2e

HOST = "sessionwatch-demo.test"  # resolved by this browser to 127.0.0.1, nowhere else


@pytest.fixture(name="lan_browser")
async def _lan_browser(chromium_path: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path,
            args=[*CHROMIUM_ARGS, f"--host-resolver-rules=MAP {HOST} 127.0.0.1"],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def test_the_login_page_says_why_sign_in_cannot_work_over_plain_http(
    lan_browser: Any, service: ServiceProcess
) -> None:
    base = f"http://{HOST}:{service.port}"
    context = await lan_browser.new_context(bypass_csp=True)
    page = await context.new_page()
    await page.goto(base + "/login")
    warning = page.locator("#insecure-cookie")
    await warning.wait_for(timeout=5000)
    assert "SESSIONWATCH_COOKIE_SECURE=false" in await warning.inner_text()
    await page.fill("input[name=username]", "lan")
    await page.fill("input[name=password]", "demo")
    await page.click("button[type=submit]")
    await page.wait_for_url(base + "/login", timeout=5000)  # the dropped cookie, as before
    assert await context.cookies() == []
    await warning.wait_for(timeout=5000)  # but now it says why
    assert f"sign-in cannot work at http://{HOST}:{service.port}" in service.output()
    assert "SESSIONWATCH_COOKIE_SECURE=false" in service.output()
    await context.close()


async def test_no_warning_on_localhost(browser: Any, service: ServiceProcess) -> None:
    context = await browser.new_context(bypass_csp=True)
    page = await context.new_page()
    await page.goto(f"http://localhost:{service.port}/login")
    await page.locator("form").wait_for(timeout=5000)
    assert await page.locator("#insecure-cookie").count() == 0
    await context.close()
