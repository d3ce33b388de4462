"""The tab-holder agent: many idle "tabs", each one WebSocket, as browsers hold them.

Two protocols (``PROTOCOLS``: the Node Socket.IO peer speaks ``sio``; Django Channels and
the floor the JSON ``hello`` → ``ready`` of ``sw`` on their own path, without pings):

- ``sw``: sessionwatch (docs/protocol.md §3): session cookie + ``Origin``, then
  ``{"type":"hello","v":1,"tab":<token>}`` → ``ready``; later ``superseded{gen,by}``.
  Every tab sends an application ``ping`` every 20 s, as the browser client does (the
  server closes a socket that stays silent for 40 s).
- ``sio``: Socket.IO v5 over Engine.IO v4 on a raw WebSocket
  (``/socket.io/?EIO=4&transport=websocket``): open packet, ``40{"tab":…}`` connect
  with the tab as auth, ``40{sid}`` ack; events ``42["superseded",{…}]``; the server's
  ``2`` pings are answered ``3``.

Receive times are ``time.perf_counter_ns()`` (CLOCK_MONOTONIC on Linux: one clock for
every process) taken as soon as the frame is handed to the tab.

A holder's own garbage collections would be counted as push latency: one process holds
5,000 tabs' sockets (a browser holds one), and at the interpreter's default thresholds a
collection of that heap stopped the holder for 10-40 ms of CPU in the middle of a step
(docs/performance.md, finding 13). So after each connect the holder collects once and
freezes its heap (``gc.freeze()``: the open tabs' objects leave every later collection;
closing tabs unfreezes it first, so what closed tabs leave behind is collected), and no
collection runs while a step's events are logged (``log_start`` to ``log_take``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .httpclient import HttpPool, build_request
from .servers import API_KEY

__all__ = ["CHROME", "PROTOCOLS", "TabHolder"]

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
_PING = json.dumps({"type": "ping"})
_PING_EVERY = 20.0  # seconds, per tab (the browser client's heartbeat_interval)
_OPEN_TIMEOUT = 20.0
_READY_TIMEOUT = 20.0
PROTOCOLS = {"sw": "json", "sio": "sio", "node": "sio", "channels": "json", "floor": "json"}
_PATHS = {
    "sw": "/_sessionwatch/ws",
    "sio": "/socket.io/?EIO=4&transport=websocket",
    "node": "/socket.io/?EIO=4&transport=websocket",
    "channels": "/ws",
    "floor": "/ws",
}


@dataclass(slots=True, eq=False)
class Tab:
    index: int
    cookie: str
    token: str
    ws: ClientConnection | None = None
    task: asyncio.Task[None] | None = None
    close_code: int | None = None
    closed_ns: int = 0
    attempts: int = 0
    ready_ns: int = 0
    extensions: int = 0
    errors: list[str] = field(default_factory=list)


class _Refused(Exception):
    """The server answered, but not with ``ready`` (or the handshake failed)."""

    def __init__(self, kind: str, retry: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry = retry


class TabHolder:
    """Holds tabs for one protocol and logs the events they receive."""

    def __init__(self) -> None:
        self.kind = "sw"
        self.host = "127.0.0.1"
        self.port = 0
        self.compression = False
        self.tabs: dict[int, Tab] = {}
        self.log: list[tuple[int, str, int, int]] = []  # (tab, type, gen, recv_ns)
        self.logging = False
        self.storm_armed = False
        self.unexpected_closes: Counter[str] = Counter()
        self.setup_retries = 0
        self.quiet_gc = True  # see the module docstring
        self._pinger: asyncio.Task[None] | None = None
        # (due, tab, its socket then): each open socket pings 20 s after its last ping.
        self._pings_due: deque[tuple[float, Tab, ClientConnection]] = deque()

    # -- sessions ----------------------------------------------------------------------

    async def create_sessions(
        self,
        kind: str,
        host: str,
        port: int,
        count: int,
        concurrency: int = 32,
        user: str | None = None,
    ) -> list[tuple[str, str, str]]:
        """Start ``count`` sessions and claim a tab in each: ``[(cookie, token,
        session)]``. With ``user`` (sessionwatch only), each session signs in first."""
        origin = f"http://{host}:{port}"
        pool = HttpPool(host, port, size=concurrency, timeout=30.0)
        path = "/_sessionwatch/claim" if kind == "sw" else "/claim"
        base = {"Origin": origin, "User-Agent": CHROME, "Content-Type": "application/json"}
        out: list[tuple[str, str, str]] = [("", "", "")] * count
        limit = asyncio.Semaphore(concurrency)

        async def send(raw: bytes, expect: int) -> Any:
            """The request, retried twice on a 5xx (the server's own Redis pool can
            refuse a burst: see docs/performance.md)."""
            for attempt in range(3):
                response = await pool.request(raw)
                if response.status < 500 or attempt == 2:
                    break
                self.setup_retries += 1
                await asyncio.sleep(0.2 * (attempt + 1))
            if response.status != expect:
                raise RuntimeError(
                    f"{raw.split(b' ')[1]!r} answered {response.status}: {response.body[:200]!r}"
                )
            return response

        async def one(i: int) -> None:
            async with limit:
                cookie = ""
                if user is not None:  # the upstream app's call: no browser headers
                    login = await send(
                        build_request(
                            "POST",
                            "/_sessionwatch/api/v1/login",
                            f"{host}:{port}",
                            headers={
                                "Authorization": f"Bearer {API_KEY}",
                                "Content-Type": "application/json",
                            },
                            body=json.dumps({"user": user, "user_agent": CHROME}).encode(),
                        ),
                        200,
                    )
                    relayed = json.loads(login.body)["cookie"]
                    cookie = f"{relayed['name']}={relayed['value']}"
                headers = dict(base, **({"Cookie": cookie} if cookie else {}))
                response = await send(
                    build_request("POST", path, f"{host}:{port}", headers=headers, body=b"{}"), 200
                )
                jar = response.cookies()
                if jar:
                    cookie = "; ".join(f"{k}={v}" for k, v in jar.items())
                body = json.loads(response.body)
                out[i] = (cookie, str(body["tab"]), str(body["session"]))

        try:
            await asyncio.gather(*(one(i) for i in range(count)))
        finally:
            pool.close()
        return out

    # -- connecting -------------------------------------------------------------------

    def _url(self) -> str:
        return f"ws://{self.host}:{self.port}{_PATHS[self.kind]}"

    async def _open(self, tab: Tab) -> None:
        """Connect, say hello and wait for the answer; raises :class:`_Refused`."""
        tab.attempts += 1
        origin = f"http://{self.host}:{self.port}"
        try:
            ws = await connect(
                self._url(),
                additional_headers={"Cookie": tab.cookie, "Origin": origin},
                user_agent_header=CHROME,
                compression="deflate" if self.compression else None,
                open_timeout=_OPEN_TIMEOUT,
                ping_interval=None,  # the protocol's own heartbeat is used
                close_timeout=2,
                max_size=2**16,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise _Refused(f"http_{status}", retry=status >= 500) from None
        except (OSError, TimeoutError) as exc:
            raise _Refused(type(exc).__name__, retry=True) from None
        except websockets.exceptions.InvalidHandshake as exc:
            raise _Refused(type(exc).__name__, retry=True) from None
        try:
            async with asyncio.timeout(_READY_TIMEOUT):
                if PROTOCOLS[self.kind] == "json":
                    await ws.send(json.dumps({"type": "hello", "v": 1, "tab": tab.token}))
                    first = json.loads(await ws.recv())
                    if first.get("type") != "ready":
                        raise _Refused(f"answer_{first.get('type')}", retry=False)
                else:
                    opened = await ws.recv()
                    if not str(opened).startswith("0"):
                        raise _Refused("eio_open", retry=False)
                    await ws.send("40" + json.dumps({"tab": tab.token}))
                    while True:
                        ack = str(await ws.recv())
                        if ack == "2":
                            await ws.send("3")
                            continue
                        break
                    if not ack.startswith("40"):
                        raise _Refused("sio_connect_error", retry=False)
        except ConnectionClosed as exc:
            await ws.close()
            code = exc.rcvd.code if exc.rcvd is not None else 1006
            raise _Refused(
                f"close_{code}", retry=code in (1001, 1006, 1011, 1012, 1013, 4009)
            ) from None
        except TimeoutError:
            await ws.close()
            raise _Refused("ready_timeout", retry=True) from None
        except _Refused:
            await ws.close()
            raise
        tab.ws = ws
        tab.ready_ns = time.perf_counter_ns()
        if self.kind == "sw":
            self._pings_due.append((time.monotonic() + _PING_EVERY, tab, ws))
        tab.close_code = None
        tab.extensions = len(ws.protocol.extensions)
        tab.task = asyncio.create_task(self._read(tab, ws))

    async def connect(
        self,
        kind: str,
        host: str,
        port: int,
        tabs: list[tuple[int, str, str]],
        compression: bool = False,
        concurrency: int = 64,
    ) -> dict[str, Any]:
        """Open a socket per ``(index, cookie, token)`` and wait for each ``ready``."""
        self.kind, self.host, self.port, self.compression = kind, host, port, compression
        limit = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()
        started = time.perf_counter()

        async def one(index: int, cookie: str, token: str) -> None:
            tab = Tab(index, cookie, token)
            async with limit:
                for attempt in range(3):
                    try:
                        await self._open(tab)
                    except _Refused as exc:
                        failures[exc.kind] += 1
                        if not exc.retry:
                            return
                        await asyncio.sleep(0.2 * (attempt + 1))
                    else:
                        self.tabs[index] = tab
                        return

        await asyncio.gather(*(one(*t) for t in tabs))
        self._settle_heap()
        if self._pinger is None:
            self._pinger = asyncio.create_task(self._ping_forever())
        return {
            "connected": sum(1 for t in tabs if t[0] in self.tabs),
            "failures": dict(failures),
            "seconds": time.perf_counter() - started,
            "with_extensions": sum(
                1 for t in tabs if t[0] in self.tabs and self.tabs[t[0]].extensions
            ),
        }

    # -- reading --------------------------------------------------------------------------

    async def _read(self, tab: Tab, ws: ClientConnection) -> None:
        sio = PROTOCOLS[self.kind] == "sio"
        try:
            async for raw in ws:
                now = time.perf_counter_ns()
                if sio:
                    if raw == "2":
                        await ws.send("3")
                        continue
                    if not str(raw).startswith("42"):
                        continue
                    name, data = json.loads(raw[2:])[:2]
                    if self.logging:
                        self.log.append((tab.index, name, int(data.get("gen", 0)), now))
                    continue
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "pong":
                    continue
                if self.logging:
                    self.log.append((tab.index, kind, int(message.get("gen", 0)), now))
        except ConnectionClosed:
            pass
        finally:
            tab.closed_ns = time.perf_counter_ns()
            tab.close_code = ws.close_code if ws.close_code is not None else 1006
            tab.ws = None
            if self.logging:
                self.log.append((tab.index, f"close_{tab.close_code}", 0, tab.closed_ns))
            if not self.storm_armed and not self.logging:
                self.unexpected_closes[str(tab.close_code)] += 1

    async def _ping_forever(self) -> None:
        """Each sessionwatch tab pings 20 s after it opened, then every 20 s, like the
        browser client (the server closes a tab silent for 40 s with 4014). Every tab has
        the same interval, so the queue stays in due order; a reopened socket has an
        entry of its own and the old one is dropped when it comes up."""
        due = self._pings_due
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, tab, ws = due.popleft()
                if tab.ws is not ws:
                    continue  # closed or reopened since
                due.append((now + _PING_EVERY, tab, ws))
                try:
                    await ws.send(_PING)
                except ConnectionClosed:
                    pass

    # -- event log --------------------------------------------------------------------

    async def log_start(self) -> None:
        self.log = []
        self.logging = True
        if self.quiet_gc:
            gc.disable()

    async def log_count(self, kind: str) -> int:
        return sum(1 for entry in self.log if entry[1] == kind)

    async def log_take(self) -> list[tuple[int, str, int, int]]:
        gc.enable()
        self.logging = False
        log, self.log = self.log, []
        return log

    async def status(self) -> dict[str, Any]:
        return {
            "tabs": len(self.tabs),
            "open": sum(1 for t in self.tabs.values() if t.ws is not None),
            "unexpected_closes": dict(self.unexpected_closes),
            "setup_retries": self.setup_retries,
        }

    # -- reconnect storm --------------------------------------------------------------

    async def storm_arm(self) -> None:
        """From now on a closed socket waits for :meth:`storm_go` instead of counting as
        an unexpected close."""
        self.storm_armed = True

    async def storm_wait_closed(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(t.ws is None for t in self.tabs.values()):
                break
            await asyncio.sleep(0.05)
        codes = Counter(str(t.close_code) for t in self.tabs.values())
        return {"closed": sum(1 for t in self.tabs.values() if t.ws is None), "codes": dict(codes)}

    async def storm_go(self, timeout: float, spread: float = 0.0) -> dict[str, Any]:
        """Every closed tab reconnects at once (after a random 0..``spread`` s delay),
        retrying refused attempts with jittered backoff (50 ms doubling, capped at 1 s)
        until ``timeout``. Returns when every tab is ``ready`` again or time is up."""
        started = time.perf_counter_ns()
        errors: Counter[str] = Counter()
        retried: Counter[str] = Counter()
        deadline = time.monotonic() + timeout

        async def one(tab: Tab) -> None:
            tab.attempts = 0
            tab.ready_ns = 0
            if spread:
                await asyncio.sleep(random.random() * spread)
            delay = 0.05
            while time.monotonic() < deadline:
                try:
                    await self._open(tab)
                    return
                except _Refused as exc:
                    if not exc.retry:
                        errors[exc.kind] += 1
                        return
                    retried[exc.kind] += 1
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
            errors["not_reverified_in_time"] += 1

        await asyncio.gather(*(one(t) for t in self.tabs.values() if t.ws is None))
        self.storm_armed = False
        ready = [t.ready_ns for t in self.tabs.values() if t.ready_ns >= started]
        return {
            "started_ns": started,
            "ready_ns": ready,
            "errors": dict(errors),
            "retried": dict(retried),
            "attempts": sum(t.attempts for t in self.tabs.values()),
        }

    async def update_tokens(self, tokens: dict[int, str]) -> int:
        """Newer tab tokens (after claims) for reconnects."""
        count = 0
        for index, token in tokens.items():
            tab = self.tabs.get(index)
            if tab is not None:
                tab.token = token
                count += 1
        return count

    # -- teardown -----------------------------------------------------------------------

    async def close_tabs(self, indices: list[int] | None = None) -> int:
        """Close the given tabs (all with ``None``) cleanly and forget them."""
        if indices is None:
            tabs = list(self.tabs.values())
            self.tabs = {}
        else:
            tabs = [self.tabs.pop(i) for i in indices if i in self.tabs]
        armed, self.storm_armed = self.storm_armed, True  # these closes are expected
        limit = asyncio.Semaphore(256)

        async def one(tab: Tab) -> None:
            async with limit:
                if tab.ws is not None:
                    try:
                        await asyncio.wait_for(tab.ws.close(), 3)
                    except Exception:
                        tab.ws.transport.abort()
                if tab.task is not None:
                    tab.task.cancel()
                    await asyncio.gather(tab.task, return_exceptions=True)

        await asyncio.gather(*(one(t) for t in tabs))
        self.storm_armed = armed
        self._settle_heap()
        return len(tabs)

    def _settle_heap(self) -> None:
        """After tabs opened or closed: the open tabs' objects frozen, anything else
        (closed tabs' objects frozen before) collectable again (see the module docstring)."""
        gc.unfreeze()
        if self.quiet_gc:
            gc.collect()
            gc.freeze()

    async def close_all(self) -> int:
        if self._pinger is not None:
            self._pinger.cancel()
            self._pinger = None
        self._pings_due.clear()
        closed = await self.close_tabs(None)
        self.unexpected_closes.clear()
        return closed

    async def aclose(self) -> None:
        await self.close_all()
