"""The admin tools against the real service (``sessionwatch serve``, 2 workers, Redis):
``sessionwatch sessions list|revoke`` on the service's backend and the admin API under
its own keys; the revoked sessions' tabs, connected to either worker, are told
``revoked{reason}`` live (docs/admin.md)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest

from support.attacks import raw_request
from support.push_processes import HttpBrowser, next_of, open_socket
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess

ADMIN_KEY = "ops-admin-key-" + uuid.uuid4().hex
ADMIN = "/_sessionwatch/api/v1/admin"


async def sessionwatch(service: ServiceProcess, *args: str) -> tuple[int, str, str]:
    """Run ``sessionwatch …`` with the service's environment (its backend and prefix)."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "sessionwatch", *args),
        env=service.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def admin_call(
    service: ServiceProcess, method: str, path: str, body: Any = None, key: str | None = ADMIN_KEY
) -> tuple[int, Any]:
    headers = [("Content-Type", "application/json")] if body is not None else []
    if key is not None:
        headers.append(("Authorization", f"Bearer {key}"))
    payload = json.dumps(body).encode() if body is not None else b""
    answer = await raw_request(service.port, method, ADMIN + path, headers, payload)
    return answer.status, answer.json()


async def admin_roster(service: ServiceProcess) -> dict[str, int]:
    """Every user's session count from ``GET /admin/sessions``, following its cursor: on a
    shared Redis a page is one SCAN step and may hold none of this test's users."""
    counts: dict[str, int] = {}
    path = "/sessions"
    for _ in range(10_000):
        status, body = await admin_call(service, "GET", path)
        assert status == 200, body
        for entry in body["users"]:
            counts[entry["user"]] = counts.get(entry["user"], 0) + len(entry["sessions"])
        if body["next_cursor"] is None:
            return counts
        path = "/sessions?" + urlencode({"cursor": body["next_cursor"]})
    raise AssertionError("the roster's cursor never ended")


async def live_tab(service: ServiceProcess, user: str) -> tuple[str, Any]:
    """A browser signed in as ``user`` with a ready socket: its public id and socket."""
    browser = HttpBrowser(origin=service.url)
    status, body = await service.sign_in(browser.cookies, user)
    assert status == 200, body
    token = (await browser.claim(service))["tab"]
    ws = await open_socket(browser, service)
    await ws.send(json.dumps({"type": "hello", "v": 1, "tab": token}))
    assert (await next_of(ws, "ready"))["type"] == "ready"
    return body["session"], ws


async def test_cli_and_admin_api_list_and_revoke_and_tabs_are_told(redis_url: str) -> None:
    env = {"SESSIONWATCH_ADMIN_KEYS": f"ops-team:{ADMIN_KEY}"}
    prefix = f"admin:{uuid.uuid4().hex[:8]}:"
    with ServiceProcess(redis_url, workers=2, env=env, key_prefix=prefix) as service:
        tabs = {name: [await live_tab(service, name) for _ in range(2)] for name in ("ann", "bob")}
        sockets = [ws for pairs in tabs.values() for _, ws in pairs]
        try:
            # the CLI lists every user's sessions, with their live tabs
            code, out, err = await sessionwatch(service, "sessions", "list", "--json")
            assert code == 0, err
            listed = [json.loads(line) for line in out.splitlines()]
            assert {(s["user"], s["id"]) for s in listed} == {
                (user, sid) for user, pairs in tabs.items() for sid, _ in pairs
            }
            assert all(s["live_tabs"] == 1 for s in listed)
            code, out, _ = await sessionwatch(service, "sessions", "list", "--user", "bob")
            assert code == 0 and out.splitlines()[0].startswith("USER\tSESSION")
            assert {line.split("\t")[1] for line in out.splitlines()[1:]} == {
                sid for sid, _ in tabs["bob"]
            }

            # the CLI revokes one session: its tab is told, with the reason
            (ann1, ann1_ws), (ann2, _) = tabs["ann"]
            code, out, err = await sessionwatch(
                service, "sessions", "revoke", "--session", ann1, "--reason", "stolen_laptop"
            )
            assert code == 0, err
            assert out.startswith("revoked 1 session(s)") and "actor admin:cli" in out
            assert (await next_of(ann1_ws, "revoked"))["reason"] == "stolen_laptop"

            # bad input: stable codes, distinct exit codes, nothing revoked
            code, _, err = await sessionwatch(service, "sessions", "revoke", "--session", ann1)
            assert code == 1 and "session_not_found" in err
            code, _, err = await sessionwatch(
                service, "sessions", "revoke", "--user", "ann", "--reason", "Bad Reason"
            )
            assert code == 2 and "bad_reason" in err
            code, _, err = await sessionwatch(service, "sessions", "revoke", "--session", "x/y")
            assert code == 2 and "bad_session_id" in err

            # the admin API: 401 without a key, 403 with the session API's key
            assert (await admin_call(service, "GET", "/sessions", key=None))[0] == 401
            status, body = await admin_call(service, "GET", "/sessions", key=service.api_key)
            assert (status, body["error"]) == (403, "admin_key_required")
            assert await admin_roster(service) == {"ann": 1, "bob": 2}
            # ... revokes a user's sessions but one: the other's tab is told
            (bob1, bob1_ws), (bob2, _) = tabs["bob"]
            status, body = await admin_call(
                service, "POST", "/revoke", {"user": "bob", "except_session": bob2}
            )
            assert (status, body) == (200, {"revoked": 1, "actor": "ops-team"})
            assert (await next_of(bob1_ws, "revoked"))["reason"] == "admin"
            status, body = await admin_call(service, "POST", "/revoke", {"session": bob1})
            assert (status, body["error"]) == (404, "session_not_found")
            code, out, _ = await sessionwatch(service, "sessions", "list", "--json")
            assert {json.loads(line)["id"] for line in out.splitlines()} == {ann2, bob2}
        finally:
            for ws in sockets:
                await ws.close()


async def test_the_cli_refuses_the_memory_backend() -> None:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "sessionwatch", "sessions", "list", "--backend", "memory://"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2 and b"memory://" in err
