"""Issue 22, items 3 and 4, on a real ``sessionwatch serve``: which copy of the session
cookie a request uses when a sibling subdomain tossed more (cookie tossing), and the
cookie the session API issues behind a TLS proxy (``--forwarded-allow-ips``).

Users sign in through the session API (``POST /_sessionwatch/api/v1/login``), as an
upstream app behind the proxy does (docs/any-stack.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from support.attacks import Answer, cookie_value, open_ws, raw_request
from support.proxy import require_nginx
from support.service_process import ServiceProcess
from support.tls_proxy import TlsProxy

pytestmark = pytest.mark.multiprocess

API = "/_sessionwatch/api/v1"
API_KEY = "cookie-choice-test-key-0123456789"
JSON_TYPE = ("Content-Type", "application/json")
PROXIED = [("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "203.0.113.9")]


def service(*args: str) -> ServiceProcess:
    return ServiceProcess("memory://", args=list(args), env={"SESSIONWATCH_API_KEYS": API_KEY})


class Browser:
    """Requests as a browser on ``origin`` sends them, cookie header given."""

    def __init__(self, process: ServiceProcess, *, https: bool = False) -> None:
        self.port = process.port
        self.https = https
        scheme = "https" if https else "http"
        self.origin = f"{scheme}://127.0.0.1:{process.port}"
        self.name = "__Host-session" if https else "session"

    def _headers(self, cookie: str | None) -> list[tuple[str, str]]:
        headers = [("Origin", self.origin), *(PROXIED if self.https else [])]
        return headers + ([("Cookie", cookie)] if cookie is not None else [])

    async def claim(self, cookie: str | None = None) -> Answer:
        return await raw_request(
            self.port, "POST", "/_sessionwatch/claim", [*self._headers(cookie), JSON_TYPE], b"{}"
        )

    async def state(self, cookie: str) -> Answer:
        return await raw_request(self.port, "GET", "/_sessionwatch/state", self._headers(cookie))

    async def verify(self, cookie: str) -> Answer:
        headers = [("X-Original-Method", "GET"), ("X-Original-URI", "/"), ("Cookie", cookie)]
        return await raw_request(
            self.port, "GET", "/_sessionwatch/verify", headers + (PROXIED if self.https else [])
        )

    async def anonymous(self) -> str:
        """A new anonymous session's cookie value (what anyone gets from a claim)."""
        answer = await self.claim()
        assert answer.status == 200, answer.body
        return cookie_value(answer.cookies[self.name])


async def api(port: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A session API call, server to server: plain HTTP, no browser headers."""
    answer = await raw_request(
        port,
        "POST",
        API + path,
        [("Authorization", f"Bearer {API_KEY}"), JSON_TYPE],
        json.dumps(body).encode(),
    )
    assert answer.status == 200, (path, answer.status, answer.body)
    result: dict[str, Any] = answer.json()
    return result


async def signed_in(browser: Browser, user: str) -> str:
    """The cookie value of ``user`` signed in through the session API (the page claimed
    first, the upstream relays the answer's cookie)."""
    anonymous = await browser.anonymous()
    result = await api(
        browser.port, "/login", {"user": user, "cookie": f"{browser.name}={anonymous}"}
    )
    assert result["cookie"]["name"] == browser.name, result["cookie"]
    return str(result["cookie"]["value"])


async def ended(browser: Browser, user: str) -> str:
    """A genuine cookie of a session that has ended (signed in, then out)."""
    value = await signed_in(browser, user)
    await api(browser.port, "/logout", {"cookie": f"{browser.name}={value}"})
    return value


def header(name: str, *values: str) -> str:
    return "; ".join(f"{name}={value}" for value in values)


def assert_nothing_cleared(answer: Answer) -> None:
    """No ``Set-Cookie`` at all: neither deleted nor replaced."""
    assert not answer.all("Set-Cookie"), answer.all("Set-Cookie")


async def test_tossed_copies_never_log_the_victim_out() -> None:
    """Item 3: three ended copies before the victim's (the three longer paths a sibling
    subdomain can set for ``/_sessionwatch/state``) answered 401 and deleted the
    victim's cookie; eight forged copies did the same. Every copy is looked at now: the
    victim's live one is used and nothing is cleared, whatever comes before it."""
    with service() as process:
        browser = Browser(process)
        victim = await signed_in(browser, "victim")
        dead = [await ended(browser, "attacker") for _ in range(3)]
        forged = [f"AAAA{i}.BBBB" for i in range(8)]
        for copies in (dead, forged, dead + forged, [*dead, "x" * 600, *forged]):
            cookie = header("session", *copies, victim)
            for answer in (await browser.state(cookie), await browser.claim(cookie)):
                assert answer.status == 200, (len(copies), answer.status, answer.body)
                assert answer.json()["user"] == "victim", answer.body
                assert_nothing_cleared(answer)
            verify = await browser.verify(cookie)
            assert verify.status == 204, (verify.status, verify.body)
            assert verify.header("X-SessionWatch-User") == "victim"
        # Several copies and none live: refused, but not one of them is cleared.
        answer = await browser.state(header("session", *dead, *forged))
        assert answer.status == 401 and answer.json()["error"] == "no_session", answer.body
        assert_nothing_cleared(answer)
        # One copy, ended: that copy is the one cleared (as before).
        answer = await browser.state(header("session", dead[0]))
        assert answer.status == 401 and "Max-Age=0" in answer.cookies["session"]


async def test_a_live_tossed_copy_is_not_chosen_over_the_victims() -> None:
    """Item 3: a live attacker cookie placed first ran the request as the attacker.
    With two live copies no one's session is used: 401 ``cookie_conflict``, nothing
    cleared, no session started over the victim's cookie (a claim too), in either order;
    and more copies than are ever looked at is the same refusal, not a cut that drops
    the victim's copy."""
    with service() as process:
        browser = Browser(process)
        victim = await signed_in(browser, "victim")
        attacker = await signed_in(browser, "attacker")
        for cookie in (header("session", attacker, victim), header("session", victim, attacker)):
            for answer in (await browser.state(cookie), await browser.claim(cookie)):
                assert answer.status == 401, (answer.status, answer.body)
                assert answer.json()["error"] == "cookie_conflict", answer.body
                assert_nothing_cleared(answer)
            verify = await browser.verify(cookie)
            assert verify.status == 401, (verify.status, verify.body)
            assert verify.header("X-SessionWatch-User") is None
            with pytest.raises(InvalidStatus) as refused:  # the socket's handshake too
                await open_ws(process.port, cookie.removeprefix("session="), browser.origin)
            assert refused.value.response.status_code == 401
            assert b"cookie_conflict" in refused.value.response.body
        # The victim's own session is untouched by all this.
        answer = await browser.state(header("session", victim))
        assert answer.status == 200 and answer.json()["user"] == "victim"
        flood = header("session", *(f"AAAA{i}.BBBB" for i in range(200)), victim)
        answer = await browser.state(flood)
        assert answer.status == 401 and answer.json()["error"] == "cookie_conflict", answer.body
        assert_nothing_cleared(answer)


def attributes(set_cookie: str) -> str:
    """A ``Set-Cookie`` line without its value: the name and the attributes."""
    name_value, _, rest = set_cookie.partition(";")
    return name_value.split("=", 1)[0] + ";" + rest


async def test_behind_a_tls_proxy_the_api_issues_the_cookie_https_browsers_hold() -> None:
    """Item 4: behind a TLS proxy (``--forwarded-allow-ips``, the proxy's
    ``X-Forwarded-Proto: https``) the browser holds ``__Host-session``; the session API,
    called over plain HTTP, looked for ``session``, signed a new anonymous session in
    and relayed ``session=…``, and ``/verify`` over HTTPS saw no one. The API's cookie
    is the deployment's now: the name and attributes browsers over HTTPS get, built by
    the same function, and the one ``/verify`` accepts."""
    with service("--forwarded-allow-ips", "127.0.0.1") as process:
        browser = Browser(process, https=True)
        claim = await browser.claim()
        assert list(claim.cookies) == ["__Host-session"], claim.cookies
        anonymous = cookie_value(claim.cookies["__Host-session"])
        result = await api(
            process.port, "/login", {"user": "tls", "cookie": f"__Host-session={anonymous}"}
        )
        cookie = result["cookie"]
        assert cookie["name"] == "__Host-session", cookie
        assert result["rotated_from"] == claim.json()["session"], result  # the page's session
        assert attributes(cookie["set_cookie"]) == attributes(claim.cookies["__Host-session"])
        relayed = f"__Host-session={cookie['value']}"
        verify = await browser.verify(relayed)
        assert verify.status == 204, (verify.status, verify.body)
        assert verify.header("X-SessionWatch-User") == "tls"
        state = await browser.state(relayed)
        assert state.status == 200 and state.json()["user"] == "tls", state.body
        # A sign-in without the browser's cookie gets the same name.
        cookieless = await api(process.port, "/login", {"user": "tls2"})
        assert cookieless["cookie"]["name"] == "__Host-session"
        verify = await browser.verify(f"__Host-session={cookieless['cookie']['value']}")
        assert verify.status == 204 and verify.header("X-SessionWatch-User") == "tls2"
        # Logout finds the session under that name and clears that name.
        out = await api(process.port, "/logout", {"cookie": relayed})
        assert out["logged_out"] is True and out["cookie"]["name"] == "__Host-session"
        assert "Max-Age=0" in out["cookie"]["set_cookie"]
        assert (await browser.verify(relayed)).status == 401


async def test_the_any_stack_flow_through_a_tls_terminating_nginx() -> None:
    """Item 4 end to end: a browser talks HTTPS to nginx (the documented snippets, TLS
    terminated there), the upstream signs the user in through the session API over
    plain HTTP, and the cookie it relays is the one forward-auth then accepts."""
    require_nginx()
    with (
        service("--forwarded-allow-ips", "127.0.0.1") as process,
        TlsProxy(process.port) as proxy,
    ):
        tls = proxy.client_context()

        async def over_https(method: str, path: str, *headers: tuple[str, str]) -> Answer:
            body = b"{}" if method == "POST" else b""
            headers = (("Origin", proxy.origin), *headers)
            return await raw_request(proxy.tls_port, method, path, list(headers), body, tls=tls)

        claim = await over_https("POST", "/_sessionwatch/claim", JSON_TYPE)
        assert claim.status == 200, (claim.status, claim.body)
        assert list(claim.cookies) == ["__Host-session"], claim.cookies
        page = "__Host-session=" + cookie_value(claim.cookies["__Host-session"])
        # The upstream, server to server: the browser's Cookie header relayed.
        result = await api(process.port, "/login", {"user": "alice", "cookie": page})
        assert result["cookie"]["name"] == "__Host-session", result["cookie"]
        assert result["rotated_from"] == claim.json()["session"]
        signed = "__Host-session=" + result["cookie"]["value"]
        app = await over_https("GET", "/app", ("Cookie", signed))
        assert app.status == 200 and app.header("X-Test-User") == "alice", (app.status, app.body)
        state = await over_https("GET", "/_sessionwatch/state", ("Cookie", signed))
        assert state.status == 200 and state.json()["user"] == "alice", state.body
        assert (await over_https("GET", "/app", ("Cookie", page))).status == 401  # rotated
        # A conflict passes nginx's auth_request as its own 401 (through /refusal).
        other = await api(process.port, "/login", {"user": "bob"})
        both = f"{signed}; __Host-session={other['cookie']['value']}"
        conflict = await over_https("GET", "/app", ("Cookie", both))
        assert conflict.status == 401 and conflict.json()["error"] == "cookie_conflict"
        assert conflict.header("X-Test-User") is None
