"""docs/any-stack.md's Caddyfile is the site the proxy demo runs through real Caddy
(tests/integration/test_proxy_caddy.py, tests/e2e/test_proxy_chromium.py)."""

from __future__ import annotations

from pathlib import Path

from sessionwatch.demo.proxy.caddy import site_routes

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_documented_caddyfile_is_the_tested_one() -> None:
    guide = (DOCS / "any-stack.md").read_text()
    site = site_routes(sessionwatch="127.0.0.1:8000", upstream="127.0.0.1:5000")
    assert f"```caddyfile\napp.example.com {{\n{site}\n}}\n```" in guide
