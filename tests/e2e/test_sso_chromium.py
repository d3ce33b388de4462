"""Single sign-on in real Chromium against a real, certified provider: panva's
oidc-provider (tests/support/oidc_provider) on loopback, the demo on Redis. A sign-out
at the provider reaches every tab of that provider session live (Back-Channel Logout
1.0), and only those (docs/sso.md)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from support.browser import EVENT_RECORDER
from support.oidc import NodeProvider
from support.service_process import DemoProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", name="sso_demo")
def _sso_demo(redis_url: str) -> Iterator[tuple[DemoProcess, NodeProvider]]:
    """The demo (2 workers, tabs not exclusive) signed in through oidc-provider."""
    demo = DemoProcess(
        redis_url,
        workers=2,
        key_prefix=f"e2e-sso:{uuid.uuid4().hex[:8]}:",
        env={"SESSIONWATCH_TABS_PER_SESSION": "unlimited"},
    )
    with NodeProvider(app_origin=demo.url) as provider:
        demo.env.update(provider.app_env())
        with demo:
            yield demo, provider


async def state_of(page: Any) -> str:
    return str(await page.evaluate("document.documentElement.dataset.sessionwatchState || ''"))


async def wait_state(page: Any, state: str, timeout: float = 5000) -> None:
    await page.wait_for_function(
        "s => document.documentElement.dataset.sessionwatchState === s", arg=state, timeout=timeout
    )


async def sso_sign_in(browser: Any, demo: DemoProcess, user: str) -> tuple[Any, Any]:
    """A browser (context) signed in as ``user`` at the provider and into the demo."""
    context = await browser.new_context(bypass_csp=True)
    await context.add_init_script(EVENT_RECORDER)
    page = await context.new_page()
    await page.goto(demo.url + "/login")
    await page.click("#sso-sign-in")
    await page.fill("input[name=login]", user)  # oidc-provider's development sign-in
    await page.fill("input[name=password]", "any")
    await page.click("button[type=submit]")
    await page.wait_for_url(demo.url + "/")
    await wait_state(page, "active")
    assert user in await page.content()
    return context, page


async def revoked_at(page: Any) -> int:
    """When the page's client fired ``revoked`` (its ``Date.now()``), with the reason."""
    events = await page.evaluate("window.__sw.filter(e => e[0] === 'revoked')")
    assert events, "no revoked event"
    assert events[0][2]["reason"] == "signed_out_at_provider"
    return int(events[0][1])


async def transfer(page: Any) -> int:
    """A protected request through the page's own fetch (the client adds the tab)."""
    script = "async () => (await fetch('/api/transfer', {method: 'POST', body: '{}'})).status"
    return int(await page.evaluate(script))


async def test_a_sign_out_at_the_provider_reaches_every_tab_live(
    browser: Any, sso_demo: tuple[DemoProcess, NodeProvider]
) -> None:
    """docs/sso.md: alice signs in through the provider and opens two tabs, bob one;
    alice signs out at the provider: both her tabs show the signed-out banner within a
    second and their next request is refused; bob's tab is untouched."""
    demo, provider = sso_demo
    alice, first = await sso_sign_in(browser, demo, "alice")
    bob, bobs = await sso_sign_in(browser, demo, "bob")
    try:
        second = await alice.new_page()
        await second.goto(demo.url + "/")
        await wait_state(second, "active")
        assert await transfer(first) == 200 and await transfer(second) == 200

        at_provider = await alice.new_page()
        await at_provider.goto(provider.issuer + "/session/end")
        clicked = await at_provider.evaluate("Date.now()")  # the browsers share one clock
        await at_provider.click("button[name=logout][value=yes]")
        try:
            for page in (first, second):
                await wait_state(page, "revoked", timeout=3000)
        except Exception:
            print(provider.output(), demo.output(), sep="\n----\n")
            raise
        for page in (first, second):
            told = await revoked_at(page)
            # From the click at the provider to the tab's event: the provider's POST,
            # its back-channel call, the revocation and the push.
            print(f"tab told {told - clicked} ms after the click at the provider")
            assert told - clicked < 1000, f"the tab was told after {told - clicked} ms"
        for page in (first, second):
            banner = page.locator("sessionwatch-banner [data-sw-state='revoked']")
            assert "identity provider" in await banner.inner_text()
            assert await transfer(page) == 401
        assert await state_of(bobs) == "active"
        assert await transfer(bobs) == 200
        assert "backchannel.success" in provider.output()
    finally:
        await alice.close()
        await bob.close()
