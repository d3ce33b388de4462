"""The proxy demo with real parts: ``sessionwatch serve`` (Redis, 2 workers) as nginx's
forward-auth service and the session API of a Flask and an Express app, nginx from
Debian in front; plus the Python client against the real service and the one command."""

from __future__ import annotations

import ast
import asyncio
import http.client
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from sessionwatch.client import AsyncSessionAPI, SessionAPI, SessionAPIError
from sessionwatch.demo.proxy import ProxyDemo
from sessionwatch.demo.proxy.runner import express_ready
from support.proxy import demo_command, require_express, require_nginx
from support.redis_server import RedisServer, free_port
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess

ROOT = Path(__file__).resolve().parents[2]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module", name="demo")
def _demo(redis_url: str) -> Iterator[ProxyDemo]:
    require_nginx()
    require_express()
    prefix = f"proxy:{uuid.uuid4().hex[:8]}:"
    with ProxyDemo(backend=redis_url, workers=2, env={"SESSIONWATCH_KEY_PREFIX": prefix}) as demo:
        yield demo


class Browser:
    """A cookie-keeping HTTP client of one nginx site (what a browser sends, no JS)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def request(
        self, method: str, path: str, body: str | bytes | None = None, **headers: str
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(self.base.split("//")[1], timeout=15)
        try:
            sent = {"Origin": self.base} if method not in ("GET", "HEAD") else {}
            if self.cookies:
                sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            sent.update({k.replace("_", "-"): v for k, v in headers.items()})
            connection.request(method, path, body=body, headers=sent)
            answer = connection.getresponse()
            data = answer.read()
            for header in answer.headers.get_all("Set-Cookie") or []:
                jar: SimpleCookie = SimpleCookie()
                jar.load(header)
                for name, morsel in jar.items():
                    if morsel["max-age"] == "0":
                        self.cookies.pop(name, None)
                    else:
                        self.cookies[name] = morsel.value
            return answer.status, dict(answer.headers.items()), data
        finally:
            connection.close()

    def sign_in(self, user: str) -> None:
        status, headers, _ = self.request(
            "POST", "/login", f"username={user}&password=demo", **FORM
        )
        assert status in (302, 303), status
        assert headers["Location"].endswith("/")

    def claim(self) -> str:
        status, _, body = self.request(
            "POST", "/_sessionwatch/claim", "{}", Content_Type="application/json"
        )
        assert status == 200, body
        return str(json.loads(body)["tab"])

    def transfer(self, tab: str | None, **headers: str) -> tuple[int, dict[str, Any]]:
        """``POST /api/transfer`` (JSON) with the tab token ``tab``."""
        if tab is not None:
            headers["X_SessionWatch_Tab"] = tab
        headers.setdefault("Content_Type", "application/json")
        status, _, body = self.request("POST", "/api/transfer", '{"amount": 5}', **headers)
        return status, json.loads(body)


@pytest.mark.parametrize("site", ["flask", "express"])
def test_an_unchanged_upstream_gets_sessions_and_409_for_stale_tabs(
    demo: ProxyDemo, site: str
) -> None:
    browser = Browser(demo.urls[site])
    status, headers, _ = browser.request("GET", "/")
    assert status == 302 and headers["Location"].endswith("/login")
    status, _, _ = browser.request("POST", "/login", "username=x&password=wrong", **FORM)
    assert status == 401
    browser.sign_in("alice")
    status, _, page = browser.request("GET", "/")
    assert status == 200 and b"alice" in page and b"/_sessionwatch/client.js" in page
    status, body = browser.transfer(None)
    assert status == 409 and body["error"] == "tab_missing"
    older = browser.claim()
    status, body = browser.transfer(older)
    assert (status, body["ok"], body["user"]) == (200, True, "alice")
    newer = browser.claim()
    status, body = browser.transfer(older)  # through nginx: 409, not 403 or 500
    assert status == 409 and body["error"] == "tab_superseded" and body["by"]["at"] > 0
    assert browser.transfer(newer)[0] == 200
    # a cross-site POST with the right token is still refused (origin)
    status, body = browser.transfer(newer, Origin="https://evil.example")
    assert status == 403 and body["error"] == "origin_forbidden"
    # the identity header cannot be forged by the client
    anonymous = Browser(demo.urls[site])
    status, headers, _ = anonymous.request("GET", "/", X_SessionWatch_User="alice")
    assert status == 302
    # logout through the API; the relayed cookie replayed afterwards is refused
    stolen = dict(browser.cookies)
    status, headers, _ = browser.request("POST", "/logout")
    assert status in (302, 303) and headers["Location"].endswith("/login")
    assert "session" not in browser.cookies
    replay = Browser(demo.urls[site])
    replay.cookies = stolen
    status, body = replay.transfer(newer)
    assert status == 401 and body["error"] == "no_session"


def test_a_navigation_refused_gets_the_html_page(demo: ProxyDemo) -> None:
    browser = Browser(demo.urls["flask"])
    browser.sign_in("carol")
    browser.claim()
    status, headers, body = browser.request(
        "POST",
        "/api/transfer",
        "amount=1",
        Sec_Fetch_Mode="navigate",
        Accept="text/html",
        Content_Type="application/x-www-form-urlencoded",
    )
    assert status == 409 and headers["Content-Type"].startswith("text/html")
    assert b"did not come from an active tab" in body
    assert b'href="/"' in body  # a refused form post's link: the start page, not the POST route


def test_the_session_api_is_not_reachable_through_nginx(demo: ProxyDemo) -> None:
    browser = Browser(demo.urls["flask"])
    status, _, _ = browser.request(
        "GET", "/_sessionwatch/api/v1/sessions?user=alice", Authorization=f"Bearer {demo.api_key}"
    )
    assert status == 404


def test_python_clients_against_the_real_service(demo: ProxyDemo) -> None:
    api = SessionAPI(demo.sessionwatch_url, demo.api_key)
    user = f"dave-{uuid.uuid4().hex[:6]}"
    first = api.login(user, user_agent="Firefox/121", client_ip="198.51.100.7")
    second = api.login(user)
    assert [s["id"] for s in api.sessions(user)] == [first["session"], second["session"]]
    assert api.revoke(user=user, except_session=second["session"]) == 1
    cookie = f"{second['cookie']['name']}={second['cookie']['value']}"
    assert api.logout(cookie=cookie)["logged_out"] is True
    assert api.sessions(user) == []
    with pytest.raises(SessionAPIError) as wrong:
        SessionAPI(demo.sessionwatch_url, "not-the-key-0123456789abcdef").sessions(user)
    assert (wrong.value.status, wrong.value.code) == (401, "api_key_invalid")
    with pytest.raises(SessionAPIError) as bad:
        api.login("")
    assert (bad.value.status, bad.value.code) == (400, "bad_request")
    with pytest.raises(SessionAPIError) as down:
        SessionAPI(f"http://127.0.0.1:{free_port()}", "key", timeout=5).sessions(user)
    assert (down.value.status, down.value.code) == (0, "unreachable")

    async def main() -> None:
        client = AsyncSessionAPI(demo.sessionwatch_url, demo.api_key)
        result = await asyncio.wait_for(client.login(user), 15)
        assert [s["id"] for s in await asyncio.wait_for(client.sessions(user), 15)] == [
            result["session"]
        ]
        assert await asyncio.wait_for(client.revoke(session=result["session"]), 15) == 1

    asyncio.run(main())


@pytest.mark.parametrize("workers", [1, 2])
def test_the_api_answers_only_on_its_own_address(redis_url: str, workers: int) -> None:
    key = "api-key-for-the-bind-test-0123456789"
    api_port = free_port()
    service = ServiceProcess(
        redis_url,
        workers=workers,
        env={"SESSIONWATCH_API_KEYS": key},
        key_prefix=f"bind:{uuid.uuid4().hex[:8]}:",
    )
    service.command += ["--api-bind", f"127.0.0.1:{api_port}"]
    with service:
        with pytest.raises(SessionAPIError) as elsewhere:
            SessionAPI(service.url, key).sessions("alice")
        assert (elsewhere.value.status, elsewhere.value.code) == (404, "api_disabled")
        assert SessionAPI(f"http://127.0.0.1:{api_port}", key).sessions("alice") == []


def test_the_node_client_against_the_real_service(demo: ProxyDemo) -> None:
    script = """
const { SessionAPI, SessionAPIError } = require(process.argv[1]);
(async () => {
  const api = new SessionAPI(process.argv[2], process.argv[3]);
  const user = "node-" + Date.now();
  const first = await api.login(user, { userAgent: "Firefox/121", clientIp: "198.51.100.9" });
  const second = await api.login(user);
  const listed = (await api.sessions(user)).map((s) => s.id);
  const others = await api.revoke({ user, exceptSession: second.session });
  const out = await api.logout(second.cookie.name + "=" + second.cookie.value);
  let refused = null;
  try { await new SessionAPI(process.argv[2], "wrong-key-0123456789abcdefgh").sessions(user); }
  catch (error) { refused = [error instanceof SessionAPIError, error.status, error.code]; }
  console.log(JSON.stringify({ ids: [first.session, second.session], listed, others,
    loggedOut: out.logged_out, left: await api.sessions(user), refused }));
})().catch((error) => { console.error(error); process.exit(1); });
"""
    process = subprocess.run(
        ["node", "-e", script, str(ROOT / "client_js/node"), demo.sessionwatch_url, demo.api_key],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    result = json.loads(process.stdout)
    assert result["listed"] == result["ids"]
    assert result["others"] == 1 and result["loggedOut"] is True and result["left"] == []
    assert result["refused"] == [True, 401, "api_key_invalid"]


def test_the_python_client_runs_as_a_single_copied_file(demo: ProxyDemo, tmp_path: Path) -> None:
    """An app may vendor client.py alone: it works without the package installed."""
    copy = tmp_path / "sessionwatch_client.py"
    copy.write_text((ROOT / "server/sessionwatch/client.py").read_text())
    script = (
        "import sys\n"
        "sys.path.insert(0, '.')\n"
        "import sessionwatch_client as c\n"
        "assert 'sessionwatch' not in sys.modules and 'quart' not in sys.modules\n"
        "print(c.SessionAPI(sys.argv[1], sys.argv[2]).sessions('nobody'))\n"
    )
    process = subprocess.run(
        [sys.executable, "-I", "-c", script, demo.sessionwatch_url, demo.api_key],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert process.returncode == 0, process.stderr
    assert process.stdout.strip() == "[]"


def test_the_python_client_imports_only_the_standard_library() -> None:
    tree = ast.parse((ROOT / "server/sessionwatch/client.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            imported.add((node.module or "").split(".")[0])
    assert imported <= sys.stdlib_module_names | {"__future__"}, imported


def test_redis_down_is_503_through_nginx(tmp_path: Path) -> None:
    require_nginx()
    redis = RedisServer()
    redis.start()
    try:
        with ProxyDemo(backend=redis.url, express_port=None) as demo:
            browser = Browser(demo.urls["flask"])
            browser.sign_in("erin")
            tab = browser.claim()
            assert browser.transfer(tab)[0] == 200
            redis.stop()
            status, body = browser.transfer(tab)
            assert status == 503 and body["error"] == "backend_unavailable"
            status, _, _ = browser.request("GET", "/")  # pages fail closed too
            assert status == 503
        assert not demo.directory.exists()  # its config and logs go with it
    finally:
        redis.stop()


def test_one_command_starts_the_demo() -> None:
    require_nginx()
    port, express_port = free_port(), free_port()
    with demo_command("--port", str(port), "--express-port", str(express_port)) as lines:
        assert any(f"127.0.0.1:{port}" in line for line in lines), lines
        (shown,) = [line for line in lines if "nginx config and logs: " in line]
        directory = Path(shown.split("nginx config and logs: ")[1].strip())
        assert (directory / "nginx.conf").is_file()
        assert Browser(f"http://127.0.0.1:{port}").request("GET", "/login")[0] == 200
        if express_ready():
            assert Browser(f"http://127.0.0.1:{express_port}").request("GET", "/login")[0] == 200
    # stopped (SIGTERM, exit 0): a clean stop leaves no temp folder behind (issue 24:
    # they piled up in /tmp)
    assert not directory.exists(), sorted(directory.iterdir())
