"""docs/any-stack.md and the OpenAPI files say what the code does: the nginx snippets
are the ones the demo runs through real nginx, the OpenAPI paths are the routes (the
session API's and the admin API's), the admin API's documented answers are the real
ones, and the guide's Flask sign-in runs against the real service, session limit
included."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, redirect, request
from quart import Quart

from sessionwatch.core.codes import Code
from sessionwatch.demo.proxy.nginx import PROTECT_SNIPPET, SESSIONWATCH_SNIPPET
from support.app_factory import API_KEYS, make_proxy_app
from support.service_process import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
API = "/_sessionwatch/api/v1"
ADMIN = API + "/admin"
ADMIN_KEY = "carol-admin-key-0123456789abcdef"


def test_the_documented_nginx_snippets_are_the_tested_ones() -> None:
    guide = (DOCS / "any-stack.md").read_text()
    assert SESSIONWATCH_SNIPPET.strip() in guide
    assert PROTECT_SNIPPET.strip() in guide


def _spec(name: str) -> Any:
    spec = json.loads((DOCS / name).read_text())
    assert spec["openapi"].startswith("3.1")
    return spec


def _routes(app: Quart, blueprint: str, prefix: str) -> set[tuple[str, str]]:
    """The (path under ``prefix``, method) of every route of ``blueprint``."""
    return {
        (rule.rule[len(prefix) :], method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith(blueprint + ".")
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }


def _documented(spec: Any) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items() for method in item}


def _error_codes(spec: Any) -> set[str]:
    return set(spec["components"]["schemas"]["Error"]["properties"]["error"]["enum"])


def _answers(spec: Any) -> dict[tuple[str, str], set[tuple[int, str]]]:
    """The (status, code) of every documented refusal, by (path, method): the codes are
    the backticked words of each "(`error`: ...)" of the answer's description."""
    found: dict[tuple[str, str], set[tuple[int, str]]] = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            pairs = found.setdefault((path, method), set())
            for status, answer in operation["responses"].items():
                if int(status) < 400:
                    continue
                named = re.findall(r"\(`error`: ([^)]*)\)", answer["description"])
                codes = {code for part in named for code in re.findall(r"`(\w+)`", part)}
                assert codes, (path, method, status)  # every refusal names its codes
                pairs |= {(int(status), code) for code in codes}
    return found


def test_the_openapi_paths_are_the_session_api_routes() -> None:
    spec = _spec("session-api.openapi.json")
    app = make_proxy_app("memory://")
    assert _documented(spec) == _routes(app, "sessionwatch_api", API)
    codes = _error_codes(spec)
    assert {"api_key_invalid", "api_browser_forbidden", "session_limit_reached"} <= codes


def test_the_admin_openapi_paths_are_the_admin_api_routes() -> None:
    """Every route of the admin blueprint has its entry, and no entry lacks its route;
    the document is the admin API's own, under its own tag and security scheme."""
    spec, session_spec = _spec("admin-api.openapi.json"), _spec("session-api.openapi.json")
    app = make_proxy_app("memory://", admin_keys=(f"carol:{ADMIN_KEY}",))
    assert _documented(spec) == _routes(app, "sessionwatch_admin", ADMIN)
    assert spec["servers"][0]["url"].endswith(ADMIN)
    schemes = spec["components"]["securitySchemes"]
    assert (
        spec["security"] == [{"adminBearer": []}] and schemes["adminBearer"]["scheme"] == "bearer"
    )
    assert not set(schemes) & set(session_spec["components"]["securitySchemes"])
    operations = [op for item in spec["paths"].values() for op in item.values()]
    assert all(op["tags"] == ["admin"] and "security" not in op for op in operations)
    session_ids = {
        op["operationId"] for item in session_spec["paths"].values() for op in item.values()
    }
    assert not {op["operationId"] for op in operations} & session_ids


def test_each_documented_admin_error_code_is_answered_by_the_code() -> None:
    """The Error enum is exactly the codes the answers name, each a :class:`Code` the
    admin API's modules answer with, and docs/admin.md's error table says the same
    (status, code) pairs."""
    spec = _spec("admin-api.openapi.json")
    pairs = set().union(*_answers(spec).values())
    assert _error_codes(spec) == {code for _, code in pairs}
    package = ROOT / "server" / "sessionwatch"
    modules = ("service/admin_api.py", "service/api_callers.py", "service/api_input.py")
    source = "".join((package / m).read_text() for m in (*modules, "core/refusals.py"))
    for code in _error_codes(spec):
        assert f"Code.{Code(code).name}" in source, code
    guide = (DOCS / "admin.md").read_text()
    table = guide.split("| status | `error` | when |", 1)[1].split("\n\n", 1)[0]
    rows = [row.split("|")[1:3] for row in table.splitlines()[2:]]
    listed = {
        (int(status), code)
        for statuses, codes in rows
        for status in re.findall(r"\d{3}", statuses)
        for code in re.findall(r"`(\w+)`", codes)
    }
    assert listed == pairs


async def _call(app: Quart, method: str, path: str, **options: Any) -> tuple[int, Any]:
    options.setdefault("headers", {"Authorization": f"Bearer {ADMIN_KEY}"})
    response = await app.test_client().open(ADMIN + path, method=method, **options)
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return response.status_code, await response.get_json()


def _keys(spec: Any, schema: str) -> set[str]:
    found = spec["components"]["schemas"][schema]
    assert set(found["required"]) == set(found["properties"])
    return set(found["properties"])


async def test_the_admin_openapi_answers_are_the_real_ones() -> None:
    """Each documented answer is made by a real call, and no call answers anything the
    document does not say (503 ``backend_unavailable`` aside: the backend is up)."""
    spec = _spec("admin-api.openapi.json")
    app = make_proxy_app("memory://", admin_keys=(f"carol:{ADMIN_KEY}",))
    off = make_proxy_app("memory://")
    other = {"Authorization": "Bearer wrong-key-0123456789abcdefghij"}
    session_key = {"Authorization": f"Bearer {API_KEYS[0]}"}
    browser = {"Authorization": f"Bearer {ADMIN_KEY}", "Origin": "http://localhost"}
    async with app.test_app(), off.test_app():
        client = app.test_client()
        for _ in range(2):
            signed_in = await client.post(API + "/login", json={"user": "ann"}, headers=session_key)
            assert signed_in.status_code == 200
        status, page = await _call(app, "GET", "/sessions?limit=5")
        assert status == 200 and set(page) == _keys(spec, "UserPage")
        (entry,) = page["users"]
        assert set(entry) == _keys(spec, "UserSessionList")
        assert {frozenset(s) for s in entry["sessions"]} == {frozenset(_keys(spec, "Session"))}
        status, listed = await _call(app, "GET", "/sessions?user=ann&limit=1")
        assert status == 200 and set(listed) == _keys(spec, "UserSessionList")
        assert listed["next_cursor"]
        first, second = (s["id"] for s in entry["sessions"])
        for body in ({"session": first}, {"user": "ann", "reason": "stolen_laptop"}):
            status, done = await _call(app, "POST", "/revoke", json=body)
            assert status == 200 and set(done) == _keys(spec, "AdminRevokeResult")
        assert done["revoked"] == 1 and second
        calls: list[tuple[Quart, str, str, dict[str, Any]]] = [
            (app, "get", "/sessions", {"headers": {}}),
            (app, "get", "/sessions", {"headers": other}),
            (app, "get", "/sessions", {"headers": session_key}),
            (app, "get", "/sessions", {"headers": browser}),
            (app, "get", "/sessions?user=ann%0A", {}),
            (app, "get", "/sessions?cursor=%25%25", {}),
            (app, "get", "/sessions?user=ann&limit=0", {}),
            (off, "get", "/sessions", {}),
            (app, "post", "/revoke", {"json": {"user": "ann"}, "headers": {}}),
            (app, "post", "/revoke", {"json": {"user": "ann"}, "headers": other}),
            (app, "post", "/revoke", {"json": {"user": "ann"}, "headers": session_key}),
            (app, "post", "/revoke", {"json": {"user": "ann"}, "headers": browser}),
            (app, "post", "/revoke", {"json": {"user": "ann", "actor": "mallory"}}),
            (app, "post", "/revoke", {"json": {"session": "not a public id"}}),
            (app, "post", "/revoke", {"json": {"user": "ann", "reason": "Not A Code"}}),
            (app, "post", "/revoke", {"json": {"session": "A" * 22}}),
            (app, "post", "/revoke", {"json": {"user": "ann", "pad": "x" * 17_000}}),
            (app, "post", "/revoke", {"data": "user=ann"}),
            (off, "post", "/revoke", {"json": {"user": "ann"}}),
        ]
        answered: dict[tuple[str, str], set[tuple[int, str]]] = {}
        for target, method, path, options in calls:
            status, answer = await _call(target, method.upper(), path, **options)
            assert set(answer) == {"error", "message"}, answer
            answered.setdefault((path.split("?")[0], method), set()).add((status, answer["error"]))
    documented = {
        operation: {pair for pair in pairs if pair != (503, "backend_unavailable")}
        for operation, pairs in _answers(spec).items()
    }
    assert answered == documented


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
