"""``sessionwatch serve --server granian`` as an operator runs it: a real process on
Redis, the HTTP API and the raw-ASGI socket endpoint under granian.

Each test also runs under uvicorn (the default), so that a difference between the two
servers fails here rather than in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sessionwatch import CloseCode
from support.push_processes import HttpBrowser, next_of, open_socket
from support.service_process import ServiceProcess

pytestmark = pytest.mark.multiprocess

SERVERS = ["granian", "uvicorn"]


@pytest.fixture(name="service", params=SERVERS)
def _service(request: pytest.FixtureRequest, redis_url: str) -> Iterator[ServiceProcess]:
    with ServiceProcess(
        redis_url,
        key_prefix=f"granian:{uuid.uuid4().hex[:8]}:",
        env={"SESSIONWATCH_MAX_FRAME": "4096"},
        # granian runs only where a proxy bounds frames (it cannot): said with the flag.
        args=["--server", request.param]
        + (["--frames-bounded-by-proxy"] if request.param == "granian" else []),
    ) as service:
        yield service
        log = service.output()
    assert "Traceback" not in log, f"{request.param} logged an exception:\n{log}"


async def sign_in(browser: HttpBrowser, service: ServiceProcess, user: str) -> None:
    """Through the session API, as the upstream app does."""
    assert (await service.sign_in(browser.cookies, user))[0] == 200
    assert "session" in browser.cookies


async def hello(ws: object, token: str) -> dict[str, object]:
    await ws.send(json.dumps({"type": "hello", "v": 1, "tab": token}))  # type: ignore[attr-defined]
    return dict(json.loads(await asyncio.wait_for(ws.recv(), 10)))  # type: ignore[attr-defined]


async def test_claim_state_and_a_socket_superseded_by_a_second_claim(
    service: ServiceProcess,
) -> None:
    browser = HttpBrowser(origin=service.url)
    await sign_in(browser, service, "gina")
    first = await browser.claim(service)
    status, state = await browser.request(
        "GET", service.url + "/_sessionwatch/state", headers={"X-SessionWatch-Tab": first["tab"]}
    )
    assert status == 200
    assert (state["user"], state["gen"], state["tab"]) == ("gina", first["gen"], "active")

    ws = await open_socket(browser, service)
    assert (await hello(ws, first["tab"]))["type"] == "ready"
    second = await browser.claim(service)
    superseded = await next_of(ws, "superseded")
    assert superseded["gen"] == second["gen"] > first["gen"]
    await ws.close()


async def test_socket_refusals_and_close_codes(service: ServiceProcess) -> None:
    browser = HttpBrowser(origin=service.url)
    await sign_in(browser, service, "hugo")
    token = (await browser.claim(service))["tab"]

    # A foreign page's handshake never opens (cross-site WebSocket hijacking).
    stranger = HttpBrowser(origin="https://evil.example")
    stranger.cookies = dict(browser.cookies)
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(stranger, service)
    assert refused.value.response.status_code == 403

    # A message over max_frame closes 1009 (granian reads it whole first: see
    # sessionwatch.service.granian_server).
    ws = await open_socket(browser, service)
    assert (await hello(ws, token))["type"] == "ready"
    await ws.send("x" * 5000)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == CloseCode.MESSAGE_TOO_BIG

    # Logging out ends the session on the open socket with the protocol's own code.
    ws = await open_socket(browser, service)
    assert (await hello(ws, token))["type"] == "ready"
    status, body = await service.api("logout", {"cookie": browser.headers()["Cookie"]})
    assert status == 200 and body["logged_out"], body
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == CloseCode.LOGGED_OUT


async def test_sigterm_closes_sockets_for_a_retry_and_exits_cleanly(
    service: ServiceProcess,
) -> None:
    browser = HttpBrowser(origin=service.url)
    await sign_in(browser, service, "ines")
    token = (await browser.claim(service))["tab"]
    ws = await open_socket(browser, service)
    assert (await hello(ws, token))["type"] == "ready"
    assert service.process is not None
    os.kill(service.process.pid, signal.SIGTERM)  # the supervisor, as an orchestrator does
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    # uvicorn says "service restart" (1012); granian cancels its sockets without a close
    # frame (1006). The client reconnects after either (docs/protocol.md), elsewhere.
    assert ws.close_code == (1006 if service.server == "granian" else 1012)
    # Ended by itself (uvicorn re-raises the signal it handled: -15; granian exits 0).
    exit_code = await asyncio.wait_for(asyncio.to_thread(service.process.wait), 15)
    assert exit_code == (0 if service.server == "granian" else -signal.SIGTERM)
