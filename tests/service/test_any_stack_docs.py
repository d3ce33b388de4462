"""docs/any-stack.md and the OpenAPI file say what the code does: the nginx snippets
are the ones the demo runs through real nginx, the OpenAPI paths are the routes, and the
guide's Flask sign-in runs against the real service, session limit included."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, redirect, request

from sessionwatch.demo.proxy.nginx import PROTECT_SNIPPET, SESSIONWATCH_SNIPPET
from support.app_factory import make_proxy_app
from support.service_process import ServiceProcess

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


def _flask_login_snippet() -> str:
    """The guide's Python client example (the block with the Flask ``login`` view)."""
    guide = (DOCS / "any-stack.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", guide, re.S) if "def login" in b]
    return block


@pytest.mark.multiprocess
def test_the_documented_flask_login_answers_the_session_limit_not_500(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 24: the guide's snippet let ``session_limit_reached`` escape as a 500. Run
    as written in a Flask app against the real service with one session per user and
    the deny policy: the second device's sign-in is refused with a page, not a crash."""
    policy = {"SESSIONWATCH_SESSIONS_PER_USER": "1", "SESSIONWATCH_ON_LIMIT": "deny"}
    with ServiceProcess("memory://", env=policy) as service:
        monkeypatch.setenv("SESSIONWATCH_API_KEY", service.api_key)
        app = Flask(__name__)
        namespace: dict[str, Any] = {
            "app": app,
            "os": os,
            "request": request,
            "redirect": redirect,
            "check_password": lambda user, password: password == "demo",
        }
        code = _flask_login_snippet().replace("http://127.0.0.1:8000", service.url)
        exec(compile(code, "docs/any-stack.md", "exec"), namespace)
        form = {"username": "ann", "password": "demo"}
        laptop, phone = app.test_client(), app.test_client()
        signed_in = laptop.post("/login", data=form)
        assert signed_in.status_code == 302, signed_in.text
        assert "Set-Cookie" in signed_in.headers
        refused = phone.post("/login", data=form)
        assert refused.status_code == 403, refused.text  # was 500
        assert "Set-Cookie" not in refused.headers
        assert phone.post("/login", data={**form, "password": "x"}).status_code == 401
