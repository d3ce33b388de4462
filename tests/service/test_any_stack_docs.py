"""docs/any-stack.md and the OpenAPI file say what the code does: the nginx snippets
are the ones the demo runs through real nginx, and the OpenAPI paths are the routes."""

from __future__ import annotations

import json
from pathlib import Path

from sessionwatch.demo.proxy.nginx import PROTECT_SNIPPET, SESSIONWATCH_SNIPPET
from support.app_factory import make_proxy_app

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_documented_nginx_snippets_are_the_tested_ones() -> None:
    guide = (DOCS / "any-stack.md").read_text()
    assert SESSIONWATCH_SNIPPET.strip() in guide
    assert PROTECT_SNIPPET.strip() in guide


def test_the_openapi_paths_are_the_session_api_routes() -> None:
    spec = json.loads((DOCS / "session-api.openapi.json").read_text())
    assert spec["openapi"].startswith("3.1")
    app = make_proxy_app("memory://")
    prefix = "/_sessionwatch/api/v1"
    routes = {
        (rule.rule[len(prefix) :], method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("sessionwatch_api.")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert documented == routes
    codes = set(spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"])
    assert {"api_key_invalid", "api_browser_forbidden", "session_limit_reached"} <= codes
