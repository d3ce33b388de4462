"""Single sign-on in real Chromium against a real, certified provider: panva's
oidc-provider (tests/support/oidc_provider) on loopback, the demo on Redis. A sign-out
at the provider reaches every tab of that provider session live (Back-Channel Logout
1.0), and only those (docs/sso.md) — on the library (the Quart demo) and through the
service behind nginx (the proxy demo's Flask app)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from sessionwatch.demo.proxy import ProxyDemo
from support.browser import EVENT_RECORDER
from support.oidc import NodeProvider
from support.proxy import require_nginx
from support.service_process import DemoProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", name="sso_site", params=["demo", "nginx"])
def _sso_site(redis_url: str, request: pytest.FixtureRequest) -> Iterator[tuple[str, NodeProvider]]:
    """A site signing in through oidc-provider, tabs not exclusive, 2 workers on Redis:
    the Quart demo (the library), or the proxy demo's Flask app behind nginx (the
    service: ``sessionwatch serve`` signs in, the app only links to it)."""
    prefix = f"e2e-sso:{uuid.uuid4().hex[:8]}:"
    policy = {"SESSIONWATCH_TABS_PER_SESSION": "unlimited"}
    if request.param == "demo":
        demo = DemoProcess(redis_url, workers=2, key_prefix=prefix, env=policy)
        with NodeProvider(app_origin=demo.url) as provider:
            demo.env.update(provider.app_env())
            with demo:
                yield demo.url, provider
        return
    require_nginx()
    proxied = ProxyDemo(
        backend=redis_url,
        workers=2,
        express_port=None,
        env={"SESSIONWATCH_KEY_PREFIX": prefix, **policy},
    )
    with NodeProvider(app_origin=proxied.urls["flask"]) as provider:
        proxied.env.update(provider.app_env())
        with proxied:
            yield proxied.urls["flask"], provider


async def state_of(page: Any) -> str:
    return str(await page.evaluate("document.documentElement.dataset.sessionwatchState || ''"))


async def wait_state(page: Any, state: str, timeout: float = 5000) -> None:
    await page.wait_for_function(
        "s => document.documentElement.dataset.sessionwatchState === s", arg=state, timeout=timeout
    )


async def sso_sign_in(browser: Any, site: str, user: str) -> tuple[Any, Any]:
    """A browser (context) signed in as ``user`` at the provider and into the demo."""
    context = await browser.new_context(bypass_csp=True)
    await context.add_init_script(EVENT_RECORDER)
    page = await context.new_page()
    await page.goto(site + "/login")
    await page.click("#sso-sign-in")
    await page.fill("input[name=login]", user)  # oidc-provider's development sign-in
    await page.fill("input[name=password]", "any")
    await page.click("button[type=submit]")
    await page.wait_for_url(site + "/")
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
    browser: Any, sso_site: tuple[str, NodeProvider]
) -> None:
    """docs/sso.md: alice signs in through the provider and opens two tabs, bob two;
    alice signs out at the provider: both her tabs show the signed-out banner within a
    second and their next request is refused; bob's tabs are untouched."""
    site, provider = sso_site
    alice, first = await sso_sign_in(browser, site, "alice")
    bob, bobs = await sso_sign_in(browser, site, "bob")
    try:
        second = await alice.new_page()
        await second.goto(site + "/")
        await wait_state(second, "active")
        bobs_second = await bob.new_page()
        await bobs_second.goto(site + "/")
        await wait_state(bobs_second, "active")
        assert await transfer(first) == 200 and await transfer(second) == 200

        at_provider = await alice.new_page()
        await at_provider.goto(provider.issuer + "/session/end")
        # Timed from the browser sending the sign-out form (the request's start, on the
        # clock every page shares), not from before Playwright's click: its actionability
        # checks are the test's overhead, not the product's.
        # (Playwright fills a request's timing in when its response arrives.)
        async with at_provider.expect_response(lambda r: r.request.method == "POST") as posted:
            await at_provider.click("button[name=logout][value=yes]")
        clicked = (await posted.value).request.timing["startTime"]
        assert clicked > 0
        try:
            for page in (first, second):
                await wait_state(page, "revoked", timeout=3000)
        except Exception:
            print(provider.output())
            raise
        for page in (first, second):
            told = await revoked_at(page)
            # From the click at the provider to the tab's event: the provider's POST,
            # its back-channel call, the revocation and the push.
            print(f"tab told {told - clicked:.0f} ms after the sign-out was posted")
            assert told - clicked < 1000, f"the tab was told after {told - clicked:.0f} ms"
        for page in (first, second):
            banner = page.locator("sessionwatch-banner [data-sw-state='revoked']")
            assert "identity provider" in await banner.inner_text()
            assert await transfer(page) == 401
        for page in (bobs, bobs_second):
            assert await state_of(page) == "active"
            assert await transfer(page) == 200
        assert "backchannel.success" in provider.output()
    finally:
        await alice.close()
        await bob.close()
