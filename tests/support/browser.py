"""Scripts injected into pages by the end-to-end tests."""

from __future__ import annotations

from typing import Any

# Debian's Chromium, headless, as the end-to-end tests launch it.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Background tabs must keep running timers and sockets like foreground ones here.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]

# Records when each sessionwatch event reached the page (epoch ms, same clock for all tabs).
EVENT_RECORDER = """
window.__sw = [];
for (const t of ["ready", "claimed", "superseded", "evicted", "revoked", "logged_out",
                 "expiring", "extended", "expired", "signed_in", "state"]) {
  document.addEventListener("sessionwatch:" + t, (e) => window.__sw.push([t, Date.now(), e.detail || null]));
}
"""

# The phones of the mobile-emulation tests, by screen width (Playwright's device names).
PHONES = {320: "iPhone SE", 390: "iPhone 13", 414: "iPhone 11 Pro Max"}


def phone_options(devices: dict[str, Any], width: int) -> dict[str, Any]:
    """``browser.new_context`` options that emulate the phone of ``width`` px
    (Playwright's descriptor without its browser type)."""
    return {k: v for k, v in devices[PHONES[width]].items() if k != "default_browser_type"}
