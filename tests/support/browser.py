"""Scripts injected into pages by the end-to-end tests."""

from __future__ import annotations

# Records when each sessionwatch event reached the page (epoch ms, same clock for all tabs).
EVENT_RECORDER = """
window.__sw = [];
for (const t of ["ready", "claimed", "superseded", "evicted", "revoked", "logged_out",
                 "expiring", "extended", "expired", "signed_in", "state"]) {
  document.addEventListener("sessionwatch:" + t, (e) => window.__sw.push([t, Date.now(), e.detail || null]));
}
"""
