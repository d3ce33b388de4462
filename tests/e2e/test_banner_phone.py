"""The banner on a phone (issue 24 item 4), in Chromium with mobile emulation.

A page wider than the screen (``support.phone_app``: a 485 px table) widens the layout
viewport, which ``position: fixed`` follows, past what the screen shows: the banner was drawn
below the visible area and tapping "Use here" timed out. For every state, at 320, 390 and
414 px (Playwright's device descriptors), the card must lie inside the visual viewport (at the
page's top-left and at its bottom-right corner) and clear of the home indicator (a safe-area
inset emulated through CDP), its primary button be finger-sized (44 x 44 px), and a tap on it
do what the button says.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import TimeoutError as PlaywrightTimeout

from support.browser import EVENT_RECORDER, PHONES, phone_options
from support.phone_app import PhoneApp

pytestmark = pytest.mark.e2e

SAFE_AREA = {"top": 47, "bottom": 34, "left": 0, "right": 0}  # env(safe-area-inset-*), px
CARD = "sessionwatch-banner {}"
STATES = {  # state: the card's selector, its primary button's action
    "signed_in": (".toast[data-sw-state='signed_in']", "sign-out-others"),
    "superseded": (".box[data-sw-state='superseded']", "use-here"),
    "logged_out": (".box[data-sw-state='logged_out']", "sign-in"),
    "revoked": (".box[data-sw-state='revoked']", "sign-in"),
    "evicted": (".box[data-sw-state='evicted']", "sign-in"),
    "expiring": (".box[data-sw-state='expiring']", "stay"),
    "expired": (".box[data-sw-state='expired']", "sign-in"),
}

# The card's box, the visual viewport (both in layout-viewport coordinates) and the
# primary button's size.
_GEOMETRY = """
([card, action]) => {
  const root = document.querySelector("sessionwatch-banner").shadowRoot;
  const box = root.querySelector(card), button = box && box.querySelector(`[data-sw-action="${action}"]`);
  if (!box || !button) return null;
  const r = box.getBoundingClientRect(), b = button.getBoundingClientRect(), v = visualViewport;
  return { card: [r.left, r.top, r.right, r.bottom],
           visible: [v.offsetLeft, v.offsetTop, v.offsetLeft + v.width, v.offsetTop + v.height],
           button: [b.width, b.height], scroll: [scrollX, scrollY],
           page: [document.documentElement.scrollWidth, innerWidth] };
}
"""


def inside(geometry: dict[str, Any]) -> bool:
    (left, top, right, bottom), (v_left, v_top, v_right, v_bottom) = (
        geometry["card"],
        geometry["visible"],
    )
    return left >= v_left and top >= v_top and right <= v_right and bottom <= v_bottom


@pytest.fixture(scope="module", name="phone_app")
def _phone_app() -> Iterator[PhoneApp]:
    with PhoneApp() as app:
        yield app


@pytest.fixture(scope="module", name="short_app")
def _short_app() -> Iterator[PhoneApp]:
    """Idle after 4 s, warned 3 s before: "expiring" 1 s after the last activity."""
    # expiring 3 s after the last activity: time for the page's socket to be bound
    # first under load (a warning due before that reaches no tab)
    with PhoneApp({"idle_timeout": 8, "expiring_lead": 5, "refresh_every": 1}) as app:
        yield app


async def sign_in(context: Any, app: PhoneApp, user: str) -> None:
    answer = await context.request.post(app.url + "/login", form={"user": user})
    assert answer.status == 200, await answer.text()


async def open_page(context: Any, app: PhoneApp, page: Any = None, path: str = "/page") -> Any:
    if page is None:
        page = await context.new_page()
        # A notched phone in portrait: the status bar above, the home indicator below.
        cdp = await context.new_cdp_session(page)
        await cdp.send("Emulation.setSafeAreaInsetsOverride", {"insets": SAFE_AREA})
    await page.goto(app.url + path)
    await wait_state(page, "active")
    return page


async def wait_state(page: Any, state: str, timeout: float = 10000) -> None:
    await page.wait_for_function(
        "s => document.documentElement.dataset.sessionwatchState === s", arg=state, timeout=timeout
    )


async def phone(browser: Any, devices: dict[str, Any], width: int) -> Any:
    descriptor = phone_options(devices, width)
    context = await browser.new_context(**descriptor)
    await context.add_init_script(EVENT_RECORDER)
    return context


async def check_and_tap(page: Any, state: str, width: int, wait: float = 10000) -> dict[str, Any]:
    """The card of ``state`` inside the visual viewport at both corners of the page, its
    primary button >= 44 x 44 px, then tapped. Returns the last geometry."""
    card, action = STATES[state]
    await page.locator(CARD.format(card)).wait_for(timeout=wait)
    geometry: dict[str, Any] = {}
    for corner in ((0, 0), (10_000, 10_000)):  # the page's top-left, then its bottom-right
        await page.evaluate("([x, y]) => window.scrollTo(x, y)", list(corner))
        # The visual viewport's scroll event comes with a later frame; on a timeout the
        # assertion below reports the figures.
        with contextlib.suppress(PlaywrightTimeout):
            await page.wait_for_function(
                f"a => {{ const g = ({_GEOMETRY})(a); return g && g.card[3] <= g.visible[3] "
                "&& g.card[2] <= g.visible[2] && g.card[0] >= g.visible[0] && g.card[1] >= g.visible[1]; }",
                arg=[card, action],
                timeout=2000,
            )
        geometry = await page.evaluate(_GEOMETRY, [card, action])
        assert geometry, f"{state} at {width} px: no card"
        assert geometry["page"][0] > width, f"the host page must overflow: {geometry}"
        assert inside(geometry), (
            f"{state} at {width} px, scrolled to {corner}: off screen {geometry}"
        )
    assert geometry["card"][3] <= geometry["visible"][3] - SAFE_AREA["bottom"], (
        f"{state} at {width} px: over the home indicator {geometry}"
    )
    assert geometry["card"][1] >= geometry["visible"][1] + SAFE_AREA["top"], (
        f"{state} at {width} px: under the status bar {geometry}"
    )
    assert min(geometry["button"]) >= 44, f"{state} at {width} px: button too small {geometry}"
    await page.tap(CARD.format(f"{card} [data-sw-action='{action}']"), timeout=5000)
    return geometry


async def tapped_to_sign_in(page: Any, app: PhoneApp) -> None:
    await page.wait_for_url(app.url + "/signed-out?**", timeout=5000)


@pytest.mark.parametrize("width", PHONES)
async def test_every_state_on_screen_and_tappable(
    mobile: tuple[Any, dict[str, Any]], phone_app: PhoneApp, width: int
) -> None:
    browser, devices = mobile
    user = f"phone-{width}-{uuid.uuid4().hex[:8]}"
    context = await phone(browser, devices, width)
    other = await browser.new_context()  # another device of the same user
    third = await browser.new_context()
    try:
        await sign_in(context, phone_app, user)
        page = await open_page(context, phone_app)

        # the socket is bound (its "ready"), so the user's channel is listened to: a
        # sign-in before that is told to no tab ("active" comes with the claim's answer)
        await page.wait_for_function("() => window.__sw.some(e => e[0] === 'ready')")
        await sign_in(other, phone_app, user)  # "New sign-in … Not you?"
        await check_and_tap(page, "signed_in", width)
        await page.wait_for_url(phone_app.url + "/signed-out?**revoke_others=1", timeout=5000)

        await open_page(context, phone_app, page)
        newer = await open_page(context, phone_app)  # the same session in another tab
        await wait_state(page, "superseded")
        await check_and_tap(page, "superseded", width)
        await wait_state(page, "active")
        await newer.close()

        assert (await context.request.post(phone_app.url + "/logout")).status == 200
        await check_and_tap(page, "logged_out", width)
        await tapped_to_sign_in(page, phone_app)

        await sign_in(context, phone_app, user)
        await open_page(context, phone_app, page)
        answer = await other.request.post(phone_app.url + "/revoke", data={"user": user})
        assert answer.status == 200
        await check_and_tap(page, "revoked", width)
        await tapped_to_sign_in(page, phone_app)

        await sign_in(context, phone_app, user)
        await open_page(context, phone_app, page)
        await sign_in(other, phone_app, user)
        await sign_in(third, phone_app, user)  # 2 sessions per user: the phone's, the oldest, goes
        await check_and_tap(page, "evicted", width)
        await tapped_to_sign_in(page, phone_app)
    finally:
        for each in (context, other, third):
            await each.close()


@pytest.mark.parametrize("width", PHONES)
async def test_expiry_on_screen_and_tappable(
    mobile: tuple[Any, dict[str, Any]], short_app: PhoneApp, width: int
) -> None:
    browser, devices = mobile
    context = await phone(browser, devices, width)
    try:
        await sign_in(context, short_app, f"phone-{width}-{uuid.uuid4().hex[:8]}")
        page = await open_page(context, short_app)
        await page.wait_for_function("() => window.__sw.some(e => e[0] === 'ready')")
        await check_and_tap(page, "expiring", width)
        await page.wait_for_function(
            "() => window.__sw.some(e => e[0] === 'extended')", timeout=5000
        )
        await check_and_tap(page, "expired", width, wait=20000)  # idle 8 s after the extension
        await tapped_to_sign_in(page, short_app)
    finally:
        await context.close()


async def test_right_to_left_page_banner_on_top(
    mobile: tuple[Any, dict[str, Any]], phone_app: PhoneApp
) -> None:
    """A right-to-left page overflows to the left; the banner placed at the top: the card
    still sits on screen, under the status bar."""
    browser, devices = mobile
    context = await phone(browser, devices, 320)
    try:
        await sign_in(context, phone_app, f"phone-rtl-{uuid.uuid4().hex[:8]}")
        page = await open_page(context, phone_app, path="/page?dir=rtl&placement=top")
        await open_page(context, phone_app, path="/page?dir=rtl&placement=top")
        await wait_state(page, "superseded")
        geometry = await check_and_tap(page, "superseded", 320)
        assert geometry["card"][1] < geometry["visible"][1] + 100, f"not at the top: {geometry}"
        await wait_state(page, "active")
    finally:
        await context.close()
