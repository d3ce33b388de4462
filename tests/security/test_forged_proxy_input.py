"""Issue 22, items 2, 7, 8 and 9: what a client can put in front of forward-auth and
the service — a forged proxy header, deep JSON, a Host label no URL can be built for,
a log line of its own — on real ``sessionwatch serve`` processes (memory backend:
nothing here depends on Redis).

A signed-in session comes from the session API (``SESSIONWATCH_API_KEYS`` + ``POST
/_sessionwatch/api/v1/login``), as an upstream app gets it."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from support.attacks import Answer, raw_request
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess

API_KEY = "forged-input-api-key-0123456789"
FOREIGN = "https://evil.example"
# A NEL (U+0085) ends a line for str.splitlines() and some log readers: the URI
# carried it into the security log, and what followed read as a line of its own.
FORGED_LINE = '{"event":"login","user":"admin","forged":true}'


@contextlib.contextmanager
def service(*args: str, env: dict[str, str] | None = None) -> Iterator[ServiceProcess]:
    process = ServiceProcess(
        "memory://",
        key_prefix=f"forged:{uuid.uuid4().hex[:8]}:",
        args=list(args),
        env={"SESSIONWATCH_API_KEYS": API_KEY, **(env or {})},
    )
    with process:
        yield process


def own_origin(process: ServiceProcess) -> str:
    return f"http://127.0.0.1:{process.port}"


async def api_login(process: ServiceProcess, user: str = "alice") -> tuple[str, str]:
    """Sign ``user`` in through the session API: (the Cookie header, the tab token)."""
    answer = await api_call(process, "/login", json.dumps({"user": user}).encode())
    assert answer.status == 200, answer.body
    body = answer.json()
    return f"{body['cookie']['name']}={body['cookie']['value']}", body["tab"]


async def api_call(process: ServiceProcess, path: str, body: bytes) -> Answer:
    headers = [("Authorization", f"Bearer {API_KEY}"), ("Content-Type", "application/json")]
    return await raw_request(process.port, "POST", "/_sessionwatch/api/v1" + path, headers, body)


async def claim(process: ServiceProcess, cookie: str) -> str:
    """Another tab of the same browser claims: the token it gets."""
    headers = [("Cookie", cookie), ("Origin", own_origin(process))]
    headers.append(("Content-Type", "application/json"))
    answer = await raw_request(process.port, "POST", "/_sessionwatch/claim", headers, b"{}")
    assert answer.status == 200, answer.body
    return str(answer.json()["tab"])


async def verify(process: ServiceProcess, headers: list[tuple[str, str]]) -> Answer:
    return await raw_request(process.port, "GET", "/_sessionwatch/verify", headers)


def refusal(answer: Answer) -> Any:
    return json.loads(answer.header("X-SessionWatch-Refusal") or "null")


# -- item 7: deep JSON is a 400 everywhere --------------------------------------------


async def test_deep_json_is_a_400_not_a_500() -> None:
    """1,000 ``[`` in ``X-SessionWatch-Refusal`` and deep session API bodies answered
    500 (``RecursionError``) with a traceback."""
    with service() as process:
        deep = "[" * 1000
        answer = await raw_request(
            process.port, "GET", "/_sessionwatch/refusal", [("X-SessionWatch-Refusal", deep)]
        )
        assert answer.status == 400 and answer.json()["error"] == "bad_request"
        for path in ("/login", "/logout", "/revoke"):
            for body in (b"[" * 5000, b'{"user": ' + b"[" * 5000 + b"}"):
                answer = await api_call(process, path, body)
                assert answer.status == 400, (path, answer.status)
                assert answer.json()["error"] == "bad_request"
        assert "Traceback" not in process.output()


# -- item 9: the security log cannot be forged ----------------------------------------


async def test_a_nel_in_the_original_uri_cannot_forge_a_security_log_line() -> None:
    """The origin refusal of ``/verify`` logged ``X-Original-URI`` as plain text: a
    NEL in it started a line of the attacker's. Every security line is one JSON
    object now, ASCII only, whatever the header held."""
    with service() as process:
        cookie, tab = await api_login(process)
        headers = [
            ("X-Original-Method", "POST"),
            ("X-Original-URI", "/api/transfer\x85" + FORGED_LINE),  # sent as byte 0x85
            ("Origin", FOREIGN),
            ("X-SessionWatch-Tab", tab),
            ("Cookie", cookie),
        ]
        answer = await verify(process, headers)
        assert answer.status == 403 and refusal(answer)["error"] == "origin_forbidden"
        lines = process.output().splitlines()  # a NEL ends a line here
        for line in lines:
            assert not line.lstrip().startswith(FORGED_LINE), lines
            if FORGED_LINE in line:
                assert " sessionwatch.security " in line and line.isascii(), line
        security = [line for line in lines if " sessionwatch.security " in line]
        refused = [json.loads(line.split("] ", 1)[1]) for line in security]
        assert any(
            event["event"] == "origin_refused" and FORGED_LINE in event["uri"] for event in refused
        ), security
