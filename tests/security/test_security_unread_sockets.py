"""A live-push socket whose peer stops reading, on real ``sessionwatch serve`` processes
(uvicorn, hypercorn).

The attacker's tab completes the handshake and the ``hello``, then reads nothing more,
its receive buffer 4 KB (``SO_RCVBUF``), while it floods WebSocket pings: each is owed
a pong the server cannot deliver, until the server's kernel buffer and its transport's
are full. Then the server closes the socket — the session revoked, its send queue
overflowing, the service stopping — and must cut the connection off within
``CLOSE_TIMEOUT`` and a margin, never wait for a peer that does not read: the socket
forgotten by the hub (``sessionwatch_sockets``), the address's connection slot released
(``max_connections_per_address`` is 1 here: a request from the attacker's address is
served again) and the connection gone from the server's TCP table. Before the fix each
stayed open (30 s measured, as long as the attacker liked), holding the buffered pongs
and the address's slot."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sessionwatch.live.socket import CLOSE_TIMEOUT
from support.attacks import raw_request
from support.redis_server import RedisServer
from support.service_process import ServiceProcess
from support.unread import client_frame, established, flood_pings, open_unread

pytestmark = pytest.mark.multiprocess

SOURCE = "127.0.0.9"  # the attacker's address (its connection slot is watched)
MARGIN = 1.5  # seconds a cut-off may take beyond its deadline on a loaded machine
LIMIT = 8.0  # seconds the tests wait for a cut-off before they fail
SERVERS = ["uvicorn", "hypercorn"]
FLOOD = 40_000  # pings: 5 MB of pongs owed

_ADDRESSES = itertools.count(1)


def own_address() -> str:
    """An address for one of the test's own requests (127.1.x.y, each once): the
    service counts one connection per address."""
    n = next(_ADDRESSES)
    return f"127.1.{n // 250}.{n % 250 + 1}"


async def sockets_in_the_hub(process: ServiceProcess) -> float:
    """The service's ``sessionwatch_sockets`` gauge."""
    answer = await raw_request(process.port, "GET", "/metrics", source=own_address())
    for line in answer.body.decode().splitlines():
        if line.startswith("sessionwatch_sockets "):
            return float(line.split()[1])
    raise AssertionError("no sessionwatch_sockets in /metrics")


async def slot_free(process: ServiceProcess) -> bool:
    """Whether a request from the attacker's address is served: 200, not 429
    ``too_many_connections`` (its one connection is not held)."""
    try:
        answer = await raw_request(process.port, "GET", "/healthz", source=SOURCE, timeout=2)
    except (OSError, TimeoutError, IndexError):  # refused, reset before the answer
        return False
    return answer.status == 200


class Attacker:
    """A signed-in user whose tab's socket stops reading after its ``ready``."""

    def __init__(self, process: ServiceProcess) -> None:
        self.process = process
        self.user = f"mallory-{uuid.uuid4().hex[:6]}"
        self.origin = f"http://127.0.0.1:{process.port}"
        self.cookie = ""
        self.peer = ("", 0)

    async def claim(self) -> str:
        """Claim a tab of the session (another tab's claim tells the socket
        ``superseded``); returns its token."""
        answer = await raw_request(
            self.process.port,
            "POST",
            "/_sessionwatch/claim",
            [
                ("Origin", self.origin),
                ("Cookie", self.cookie),
                ("Content-Type", "application/json"),
            ],
            b"{}",
            source=own_address(),
        )
        assert answer.status == 200, (answer, self.process.output())
        return str(answer.json()["tab"])

    @contextlib.asynccontextmanager
    async def unread_socket(self) -> AsyncIterator[Any]:
        status, body = await self.process.api("login", {"user": self.user}, source=own_address())
        assert status == 200, body
        self.cookie = f"{body['cookie']['name']}={body['cookie']['value']}"
        tab = await self.claim()
        headers = {"Origin": self.origin, "Cookie": self.cookie}
        sock = await open_unread(self.process.port, "/_sessionwatch/ws", headers, source=SOURCE)
        try:
            self.peer = sock.getsockname()
            loop = asyncio.get_running_loop()
            hello = json.dumps({"type": "hello", "v": 1, "tab": tab}).encode()
            await loop.sock_sendall(sock, client_frame(1, hello))
            answer = await asyncio.wait_for(loop.sock_recv(sock, 4096), 10)
            assert b'"type":"ready"' in answer, answer  # its last read
            yield sock
        finally:
            sock.close()

    async def cut_off(self) -> float:
        """Seconds until the connection is cut off: not ESTABLISHED on the server, its
        address's slot free, not in the hub; fails after LIMIT seconds, saying what
        held."""
        process, started = self.process, time.monotonic()
        while True:
            took = time.monotonic() - started
            open_ = established(process.port, self.peer)
            held = not await slot_free(process)
            hub = await sockets_in_the_hub(process)
            if not (open_ or held or hub):
                return took
            if took > LIMIT:
                pytest.fail(
                    f"after {took:.1f} s: connection established {open_}, address slot "
                    f"held {held}, sockets in the hub {hub:g}"
                )
            await asyncio.sleep(0.05)


def service(redis: RedisServer, server: str) -> ServiceProcess:
    return ServiceProcess(
        redis.url,
        key_prefix=f"unread:{uuid.uuid4().hex[:8]}:",
        args=["--server", server],
        env={"SESSIONWATCH_MAX_CONNECTIONS_PER_ADDRESS": "1"},
    )


async def revoke(process: ServiceProcess, attacker: Attacker) -> None:
    """The session API revokes the user: ``revoked``, then the close 4003, are queued
    behind what the peer did not read."""
    status, _ = await process.api("revoke", {"user": attacker.user}, source=own_address())
    assert status == 200


async def overflow(process: ServiceProcess, attacker: Attacker) -> None:
    """40 claims of the session tell the socket ``superseded`` 40 times: past
    ``send_queue_size`` (32) it is closed 4012."""
    for _ in range(40):
        await attacker.claim()


# How the server closes the socket, and how long it may take: the revocation's message
# and close are given CLOSE_TIMEOUT; a socket whose queue overflowed took nothing, its
# close is not waited for.
CLOSES = {"revoked": (revoke, CLOSE_TIMEOUT + MARGIN), "queue-overflow": (overflow, MARGIN)}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("close", list(CLOSES))
async def test_an_unread_socket_is_cut_off_when_the_server_closes_it(
    redis_server: RedisServer, server: str, close: str
) -> None:
    """The socket owes 5 MB of pongs when the server closes it: before the fix, open
    after 30 s (revoked, uvicorn) and 8 s (each case), the hub still holding the
    revoked one and the address's slot held; now cut off at CLOSE_TIMEOUT (2.0 s)
    after the revocation, at once (0.0 s) after the overflowing claim."""
    act, deadline = CLOSES[close]
    with service(redis_server, server) as process:
        attacker = Attacker(process)
        async with attacker.unread_socket() as sock:
            pings = await flood_pings(sock, FLOOD)
            assert established(process.port, attacker.peer)
            assert not await slot_free(process)  # held by the socket
            await act(process, attacker)
            took = await attacker.cut_off()
            print(f"{server}, {close}: {pings} pings unread; cut off after {took:.2f} s")
            assert took < deadline
        log = process.output()
    assert "Traceback" not in log, log


@pytest.mark.parametrize("server", SERVERS)
async def test_an_unread_socket_does_not_hold_the_shut_down(
    redis_server: RedisServer, server: str
) -> None:
    """SIGTERM: uvicorn waits for its connections to close, and the unread one never
    did (running after 20 s before; 0.2 s now)."""
    with service(redis_server, server) as process:
        async with Attacker(process).unread_socket() as sock:
            await flood_pings(sock, FLOOD)
            assert process.process is not None
            started = time.monotonic()
            os.killpg(process.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.process.wait, LIMIT)
            took = time.monotonic() - started
            print(f"{server}: stopped {took:.2f} s after SIGTERM")
            assert process.process.poll() is not None, f"still running after {took:.1f} s"
            assert took < CLOSE_TIMEOUT + MARGIN


async def settled_rss(process: ServiceProcess) -> float:
    """The worker's resident memory (MB) once it has stopped changing (0.2 s apart)."""
    last = process.worker_rss_mb()
    for _ in range(25):
        await asyncio.sleep(0.2)
        now = process.worker_rss_mb()
        if abs(now - last) < 0.1:
            return now
        last = now
    return last


@pytest.mark.parametrize("server", SERVERS)
async def test_pings_of_a_peer_that_does_not_read_are_not_answered_without_bound(
    redis_server: RedisServer, server: str
) -> None:
    """Each ping is owed a pong: a worker that reads on while its peer reads nothing
    buffers them all (uvicorn: 160,000 pings, 20 MB of pongs, took the worker +18.2 MB
    before). Reading now pauses while writing is: +1.3 MB, the rest of the pings wait
    in the kernel's buffers (hypercorn: its read waits for the write, +0.6 MB)."""
    with service(redis_server, server) as process:
        async with Attacker(process).unread_socket() as sock:
            before = await settled_rss(process)
            pings = await flood_pings(sock, 4 * FLOOD)
            grown = await settled_rss(process) - before
            print(f"{server}: {pings} pings sent, worker RSS +{grown:.1f} MB")
            assert grown < 5
