"""The demo's admin page in real Chromium (its CSP on): its own sign-in, every user's
live sessions with their tabs, a revocation that the user's tab is told live with its
reason, and the audit trail's live feed showing a takeover and the revocation with the
admin as its actor (docs/admin.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_banner import BANNER, signed_in, transfer_status, wait_state

from support.attacks import raw_request
from support.service_process import DemoProcess

pytestmark = pytest.mark.e2e

PASSWORD = "admin-" + uuid.uuid4().hex


@pytest.fixture(scope="module", name="demo")
def _demo(redis_url: str) -> Iterator[DemoProcess]:
    with DemoProcess(
        redis_url, env={"DEMO_ADMIN_PASSWORD": PASSWORD}, key_prefix=f"e2e:{uuid.uuid4().hex[:8]}:"
    ) as demo:
        yield demo


async def admin_page(browser: Any, demo: DemoProcess, password: str) -> Any:
    context = await browser.new_context(viewport={"width": 1100, "height": 760})  # CSP on
    page = await context.new_page()
    await page.goto(demo.url + "/admin")
    await page.wait_for_url(demo.url + "/admin/login")
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    return page


def audit_row(page: Any, event: str, user: str) -> Any:
    return page.locator(f"#admin-audit tr[data-event='{event}'][data-user='{user}']")


async def test_admin_lists_users_tabs_and_revokes_them_live(
    browser: Any, demo: DemoProcess, artifacts: Path
) -> None:
    user = f"tess-{uuid.uuid4().hex[:6]}"
    taken_over = f"otto-{uuid.uuid4().hex[:6]}"
    laptop, laptop_page = await signed_in(browser, demo, user)

    refused = await admin_page(browser, demo, "not-the-password")
    assert "Wrong password" in await refused.locator(".error").inner_text()
    assert await (await refused.goto(demo.url + "/admin/sessions")).json() == {
        "error": "not_signed_in",
        "message": "Sign in to the admin page first.",
    }
    await refused.context.close()

    page = await admin_page(browser, demo, PASSWORD)
    await page.wait_for_url(demo.url + "/admin")
    row = page.locator(f"#admin-sessions tr[data-user='{user}']")
    await row.wait_for(timeout=5000)
    await page.wait_for_function(  # the laptop's tab, counted live
        "u => [...document.querySelectorAll('#admin-sessions tr')].some(r => "
        "r.dataset.user === u && r.children[4].textContent === '1')",
        arg=user,
        timeout=5000,
    )
    await audit_row(page, "signed_in", user).wait_for(timeout=5000)  # the first read

    # A takeover while the page is open: the feed's next poll (with its cursor) shows it.
    other, older_tab = await signed_in(browser, demo, taken_over)
    newer_tab = await other.new_page()
    await newer_tab.goto(demo.url + "/")
    await wait_state(older_tab, "superseded")
    takeover = audit_row(page, "superseded", taken_over)
    await takeover.last.wait_for(timeout=5000)
    assert (await takeover.last.get_attribute("data-actor")) == "user"
    await other.close()
    await page.screenshot(path=str(artifacts / "demo-admin.png"), full_page=True)

    await page.fill("#reason", "stolen_laptop")
    await row.locator("button", has_text="Revoke").first.click()
    await laptop_page.locator(BANNER.format("revoked")).wait_for(timeout=3000)
    await wait_state(laptop_page, "revoked")
    told = await laptop_page.evaluate("window.__sw.filter(e => e[0] === 'revoked').map(e => e[2])")
    assert told and told[-1]["reason"] == "stolen_laptop"
    assert await transfer_status(laptop_page) == 401
    await row.wait_for(state="detached", timeout=5000)
    revoked = audit_row(page, "revoked", user)
    await revoked.wait_for(timeout=5000)
    assert (await revoked.get_attribute("data-actor")) == "admin:demo"
    assert (await revoked.locator("td[data-label=Reason]").inner_text()) == "stolen_laptop"
    assert await revoked.count() == 1  # polled with its cursor: never shown twice
    await page.context.close()
    await laptop.close()


async def test_admin_writes_need_the_admin_cookie_and_the_pages_origin(demo: DemoProcess) -> None:
    body = b'{"user": "anyone"}'
    json_type = ("Content-Type", "application/json")
    anonymous = await raw_request(
        demo.port, "POST", "/admin/revoke", [json_type, ("Origin", demo.url)], body
    )
    assert (anonymous.status, anonymous.json()["error"]) == (401, "not_signed_in")
    signed = await raw_request(
        demo.port,
        "POST",
        "/admin/login",
        [("Content-Type", "application/x-www-form-urlencoded")],
        f"password={PASSWORD}".encode(),
    )
    cookie = (signed.header("Set-Cookie") or "").split(";")[0]
    assert signed.status == 302 and cookie.startswith("demo_admin=")
    foreign = await raw_request(
        demo.port,
        "POST",
        "/admin/revoke",
        [json_type, ("Cookie", cookie), ("Origin", "https://evil.example")],
        body,
    )
    assert (foreign.status, foreign.json()["error"]) == (403, "origin_forbidden")
    allowed = await raw_request(
        demo.port,
        "POST",
        "/admin/revoke",
        [json_type, ("Cookie", cookie), ("Origin", demo.url)],
        body,
    )
    assert (allowed.status, allowed.json()) == (200, {"revoked": 0})
