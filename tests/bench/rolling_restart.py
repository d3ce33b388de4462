"""A rolling restart of 2 hosts x 2 workers behind nginx, under load (issue 23).

    python -m tests.bench.rolling_restart                   # 1,000 tabs, 200 requests/s
    python -m tests.bench.rolling_restart --tabs 100 --rate 50
    python -m tests.bench.rolling_restart --no-drain        # just SIGTERM each host
    python -m tests.bench.rolling_restart --sighup          # SIGHUP: workers one by one

Two ``sessionwatch serve --workers 2`` on loopback ports ("hosts"), one Redis, one nginx
whose upstream holds both (``proxy_next_upstream error timeout``, keep-alive connections
to the hosts, as in docs/deployment.md). Every user signs in through the session API,
claims a tab through nginx and holds its WebSocket open through nginx; the tab client
reconnects as the browser client does (the first retry after a random 0-5 s, then
backoff; ``client_js/sessionwatch.js``). Each tab comes from an address of its own
(``X-Forwarded-For``, believed from nginx only: ``--forwarded-allow-ips``), so the
per-address limits see what they would see in production.

The load, open loop at ``--rate`` requests/s, each with a tab's cookie and token: 70 %
``GET /state`` (a protected request: 200 with ``tab: active``), 30 % ``POST /claim``
(the tab claims again; it takes the new token and says ``hello`` with it on its socket,
as the client does after a claim).

The restart, one host after the other (docs/deployment.md, "Rolling restarts"):

1. take the host out of nginx's upstream (``down``) and reload nginx: new requests and
   new sockets go to the other host; requests in flight to it finish;
2. wait ``--drain`` s, then SIGTERM the host: its workers stop accepting, finish what is
   in flight and close every socket 1012; the tabs reconnect, through nginx, to the
   other host;
3. start it again, wait for its ``/readyz``, put it back into the upstream, reload.

``--no-drain`` skips 1 and 3's nginx part: the host is stopped while nginx still sends
it requests (nginx's passive ``proxy_next_upstream`` alone), to show what the drain buys.
``--sighup`` restarts each host's workers in place instead (no nginx change): the
service's supervisor starts a new worker, waits until it is ready, then stops an old one.

Counted: requests that failed (not 200: 5xx, a refusal, no answer), banners (a tab told
``superseded`` by a claim other than its own, an end, a terminal close, a refused
handshake, or a ``/state`` answer that its tab is not active), each tab's time from its
socket's close to its next ``ready``, and at the end every session asked once more
(``/state``: 200 and the tab active, else "lost").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop
from tests.support.redis_server import RedisServer, free_port
from tests.support.service_process import ServiceProcess
from tests.support.tab_socket import open_tab_socket
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

__all__ = ["Result", "main", "run"]

ORIGIN = "http://app.test"
API_KEY = secrets.token_urlsafe(32)
HOST_ENV = {
    "SESSIONWATCH_API_KEYS": API_KEY,
    "SESSIONWATCH_ALLOWED_ORIGINS": ORIGIN,
    "FORWARDED_ALLOW_IPS": "127.0.0.1",  # nginx: its X-Forwarded-For is believed
    "SESSIONWATCH_PUBLIC_SCHEME": "http",  # nginx serves the "browsers" plain HTTP
}
CLAIM_SHARE = 0.3
TERMINAL_CLOSES = frozenset({4002, 4003, 4004, 4005, 4007})  # ended or told: a banner
ENDS = frozenset({"evicted", "revoked", "logged_out", "expired"})
REQUEST_TIMEOUT = 10.0
PING_EVERY = 20.0  # seconds, as the browser client
# A tab whose socket a restart closed is ready again within this many seconds: the
# client's first retry comes after a random 0-5 s, then the handshake through nginx,
# queued behind the other tabs' (all of one host's at once on the others; 11.5 s the
# longest measured with 1,000 tabs; docs/deployment.md, "Rolling restarts").
RECONNECT_BOUND = 15.0

NGINX = """
daemon off;
worker_processes 2;
worker_rlimit_nofile 65536;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
{temp_paths}
    map $http_upgrade $connection_upgrade {{ default upgrade; "" ""; }}
    upstream sessionwatch {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://sessionwatch;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 75s;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


class Nginx:
    """nginx in front of ``ports``; :meth:`route` rewrites the upstream and reloads."""

    def __init__(self, ports: list[int]) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.access(binary, os.X_OK):
            raise RuntimeError("nginx is not installed (Debian: apt-get install nginx-light)")
        self.binary = binary
        self.ports = ports
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="sessionwatch-rolling-"))
        self.process: subprocess.Popen[bytes] | None = None

    def _write(self, down: set[int]) -> None:
        servers = "\n".join(
            f"        server 127.0.0.1:{port}{' down' if port in down else ''};"
            for port in self.ports
        )
        temp_paths = "\n".join(
            f"    {kind}_temp_path {self.directory / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        text = NGINX.format(
            dir=self.directory, port=self.port, servers=servers, temp_paths=temp_paths
        )
        (self.directory / "nginx.conf").write_text(text)

    def start(self) -> None:
        self._write(set())
        self.process = subprocess.Popen(
            [self.binary, "-p", str(self.directory), "-c", str(self.directory / "nginx.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            time.sleep(0.05)
        raise RuntimeError(f"nginx did not start: {self.errors()}")

    async def route(self, down: set[int]) -> None:
        """Serve from every port but ``down``: rewrite, ``SIGHUP`` (a graceful reload:
        old workers finish what they hold), and wait until the new workers run."""
        assert self.process is not None
        before = set(self._workers())
        self._write(down)
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            fresh = set(self._workers()) - before
            if len(fresh) >= 2:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"nginx did not reload: {self.errors()}")

    def _workers(self) -> list[int]:
        assert self.process is not None
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == self.process.pid and fields[0] != "Z":
                    found.append(int(stat.parent.name))
        return found

    def errors(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)


async def http(
    port: int, method: str, path: str, headers: dict[str, str], body: bytes = b""
) -> tuple[int, dict[str, str], Any]:
    """One request on a connection of its own; ``(0, {}, error)`` when none came back."""
    head = [f"{method} {path} HTTP/1.1", "Host: app.test", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    writer = None
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            data = await reader.read(-1)
    except (OSError, TimeoutError) as exc:
        return 0, {}, type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    top, _, payload = data.partition(b"\r\n\r\n")
    lines = top.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return 0, {}, "no status line"
    answer: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "set-cookie":
            pair = value.strip().split(";", 1)[0]
            answer.setdefault("cookie", pair)
    with contextlib.suppress(ValueError):
        return status, answer, json.loads(payload)
    return status, answer, None


@dataclass(eq=False)
class RollingTab:
    """One browser tab: its session's cookie, its address, its token; its socket
    reconnects like the browser client's until :meth:`stop`."""

    index: int
    cookie: str
    address: str
    port: int  # nginx
    token: str = ""
    gen: int = 0
    ready: bool = False
    busy: bool = False  # a request of the load in flight (one at a time, as a page)
    claiming: bool = False
    deferred: list[int] = field(default_factory=list)  # superseded gens seen mid-claim
    banners: list[str] = field(default_factory=list)
    closes: list[tuple[float, int]] = field(default_factory=list)  # (when, code)
    reconnects: list[float] = field(default_factory=list)  # close -> next ready, s
    ws: ClientConnection | None = None
    task: asyncio.Task[None] | None = None
    _closed_at: float | None = None
    _stopping: bool = False

    def headers(self) -> dict[str, str]:
        return {
            "Cookie": self.cookie,
            "Origin": ORIGIN,
            "X-Forwarded-For": self.address,
            "X-SessionWatch-Tab": self.token,
        }

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def _banner(self, what: str) -> None:
        self.banners.append(what)

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            code = await self._once()
            if code in TERMINAL_CLOSES:
                self._banner(f"close {code}")
                return
            if self.ready:  # "ready" resets the backoff
                attempt = 0
            self.ready = False
            if self._closed_at is None:
                self._closed_at = time.monotonic()
            self.closes.append((time.monotonic(), code))
            # The browser client: random(0, min(60, 5 x 2^attempt)) s.
            await asyncio.sleep(random.random() * min(60.0, 5.0 * 2**attempt))
            attempt += 1

    async def _once(self) -> int:
        url = f"ws://127.0.0.1:{self.port}/_sessionwatch/ws"
        headers = {"Cookie": self.cookie, "Origin": ORIGIN, "X-Forwarded-For": self.address}
        ws = await open_tab_socket(url, headers)
        if isinstance(ws, int):
            if ws in (401, 403):
                self._banner(f"handshake {ws}")
            return -ws if ws else -1
        self.ws = ws
        pinger = asyncio.create_task(self._ping(ws))
        try:
            await ws.send(json.dumps({"type": "hello", "v": 1, "tab": self.token}))
            async for raw in ws:
                self._heard(json.loads(raw))
            return ws.close_code or 1006
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else 1006
        except (OSError, ValueError):
            return 1006
        finally:
            self.ws = None
            pinger.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)

    @staticmethod
    async def _ping(ws: ClientConnection) -> None:
        """The client's heartbeat: a ping every 20 s (the server closes a socket silent
        for 40 s, 4014)."""
        with contextlib.suppress(ConnectionClosed, OSError):
            while True:
                await asyncio.sleep(PING_EVERY * (0.9 + 0.1 * random.random()))
                await ws.send('{"type":"ping"}')

    def _heard(self, message: dict[str, Any]) -> None:
        kind = message.get("type", "")
        if kind == "ready":
            self.ready = True
            if self._closed_at is not None:
                self.reconnects.append(time.monotonic() - self._closed_at)
                self._closed_at = None
        elif kind == "superseded":
            gen = int(message.get("gen", 0))
            if self.claiming:
                self.deferred.append(gen)  # maybe its own claim: judged by the answer
            elif gen > self.gen:
                self._banner(f"superseded {gen} > {self.gen}")
        elif kind in ENDS:
            self._banner(kind)

    async def claimed(self, token: str, gen: int) -> None:
        """Its own claim was answered: the new token, said on the open socket."""
        self.token, self.gen = token, gen
        for seen in self.deferred:
            if seen > gen:
                self._banner(f"superseded {seen} > {gen}")
        self.deferred.clear()
        ws = self.ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed, OSError):
                await ws.send(json.dumps({"type": "hello", "v": 1, "tab": token}))


@dataclass
class Result:
    tabs: int
    rate: float
    mode: str  # drain, no-drain, sighup
    requests: Counter[str] = field(default_factory=Counter)  # "kind status"
    failed: int = 0
    skipped: int = 0  # requests not sent: every tab tried had one out (overload)
    banners: int = 0
    banner_examples: list[str] = field(default_factory=list)
    closes: Counter[int] = field(default_factory=Counter)
    tabs_closed: int = 0
    reconnect_max: float = 0.0
    reconnect_p99: float = 0.0
    not_ready_at_end: int = 0
    sessions_lost: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        total = sum(self.requests.values())
        return [
            f"rolling restart ({self.mode}): {self.tabs} tabs, "
            f"{self.rate:g} requests/s, {self.seconds:.0f} s",
            f"requests: {total} ({self.skipped} not sent: overload), failed {self.failed} "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.requests.items()))})",
            f"banners: {self.banners} {self.banner_examples[:5]}",
            f"tabs whose socket closed: {self.tabs_closed}; close codes "
            f"{dict(sorted(self.closes.items()))}",
            f"close -> ready again: max {self.reconnect_max:.2f} s, p99 {self.reconnect_p99:.2f} s",
            f"not ready at the end: {self.not_ready_at_end}; sessions lost: {self.sessions_lost}",
            "each host: out of nginx to ready again "
            + ", ".join(f"{s:.1f} s" for s in self.restart_seconds),
            *(f"failure: {f}" for f in self.failures[:10]),
        ]


async def _sign_in(hosts: list[ServiceProcess], count: int, port: int) -> list[RollingTab]:
    """``count`` users signed in through a host's session API, each with a claimed tab."""
    tabs: list[RollingTab] = []
    gate = asyncio.Semaphore(32)

    async def one(index: int) -> None:
        address = f"10.{index // 62500 % 250}.{index // 250 % 250}.{index % 250 + 1}"
        body = json.dumps({"user": f"roll-{index}", "client_ip": address}).encode()
        async with gate:
            status, _, answer = await http(
                hosts[index % len(hosts)].port,
                "POST",
                "/_sessionwatch/api/v1/login",
                {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
                body,
            )
            if status != 200:
                raise RuntimeError(f"sign-in answered {status}: {answer}")
            cookie = f"{answer['cookie']['name']}={answer['cookie']['value']}"
            tab = RollingTab(index, cookie, address, port)
            status, _, claim = await http(
                port,
                "POST",
                "/_sessionwatch/claim",
                {**tab.headers(), "Content-Type": "application/json"},
                b"{}",
            )
            if status != 200:
                raise RuntimeError(f"first claim answered {status}: {claim}")
            tab.token, tab.gen = claim["tab"], int(claim["gen"])
            tabs.append(tab)

    await asyncio.gather(*(one(i) for i in range(count)))
    return tabs


async def _request(tab: RollingTab, result: Result) -> None:
    tab.busy = True
    try:
        await _one_request(tab, result)
    finally:
        tab.busy = False


async def _one_request(tab: RollingTab, result: Result) -> None:
    if random.random() < CLAIM_SHARE:
        tab.claiming = True
        try:
            status, _, body = await http(
                tab.port,
                "POST",
                "/_sessionwatch/claim",
                {**tab.headers(), "Content-Type": "application/json"},
                b"{}",
            )
            if status == 200:
                await tab.claimed(body["tab"], int(body["gen"]))
        finally:
            tab.claiming = False
        kind = "claim"
    else:
        status, _, body = await http(tab.port, "GET", "/_sessionwatch/state", tab.headers())
        kind = "state"
        if status == 200 and body.get("tab") != "active":
            tab.banners.append(f"/state: tab {body.get('tab')}")
    result.requests[f"{kind} {status or body}"] += 1
    if status != 200:
        result.failed += 1
        result.failures.append(f"{kind} answered {status or body} at {time.strftime('%X')}")


async def _load(tabs: list[RollingTab], rate: float, result: Result, stop: asyncio.Event) -> None:
    """Open loop: one request every 1/rate s, whatever the answers take."""
    pending: set[asyncio.Task[None]] = set()
    began, sent = time.monotonic(), 0
    while not stop.is_set():
        due = began + sent / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        sent += 1
        # A tab whose previous request is still out waits: another one asks (a few
        # tries; when all are out the load generator cannot keep up, and says so).
        tab = next((t for t in random.sample(tabs, min(8, len(tabs))) if not t.busy), None)
        if tab is None:
            result.skipped += 1
            continue
        task = asyncio.create_task(_request(tab, result))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)


async def _ready(tabs: list[RollingTab], timeout: float) -> int:
    """Wait until every tab is ready (at most ``timeout`` s); returns those that are not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waiting = sum(not tab.ready for tab in tabs)
        if not waiting:
            return 0
        await asyncio.sleep(0.2)
    return sum(not tab.ready for tab in tabs)


async def _reload(host: ServiceProcess) -> None:
    """``SIGHUP``: the service's supervisor replaces its workers one at a time (each
    replacement ready before the old worker is stopped) on the same listening socket."""
    assert host.process is not None

    def workers() -> set[int]:  # not multiprocessing's resource tracker
        found = set()
        for pid in host.children():
            with contextlib.suppress(OSError):
                if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.add(pid)
        return found

    old = workers()
    host.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        current = workers()
        if len(current - old) >= len(old) and not current & old:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"SIGHUP did not replace the workers: {host.output()}")


async def _restart(host: ServiceProcess, nginx: Nginx, mode: str, pause: float) -> float:
    began = time.monotonic()
    if mode == "sighup":
        await _reload(host)
        return time.monotonic() - began
    drain = mode == "drain"
    if drain:
        await nginx.route({host.port})
        await asyncio.sleep(pause)
    await asyncio.to_thread(host.stop)  # SIGTERM: stop accepting, finish, close 1012
    await asyncio.to_thread(host.start, 90)
    if drain:
        await nginx.route(set())
    return time.monotonic() - began


async def run(
    *,
    tabs: int = 1000,
    rate: float = 200.0,
    mode: str = "drain",
    pause: float = 1.0,
    settle: float = 8.0,
    say: Any = print,
) -> Result:
    """Start everything, load it, restart each host in turn, and count."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    began = time.monotonic()
    result = Result(tabs, rate, mode)
    redis = RedisServer()
    redis.start()
    hosts = [ServiceProcess(redis.url, workers=2, env=HOST_ENV) for _ in range(2)]
    nginx = Nginx([host.port for host in hosts])
    opened: list[RollingTab] = []
    try:
        for host in hosts:
            await asyncio.to_thread(host.start, 90)
        await asyncio.to_thread(nginx.start)
        opened = await _sign_in(hosts, tabs, nginx.port)
        for index, tab in enumerate(opened):
            tab.start()
            if index % 50 == 49:
                await asyncio.sleep(0.2)
        if await _ready(opened, 120):
            raise RuntimeError(f"{sum(not t.ready for t in opened)} tabs never got ready")
        say(f"rolling: {tabs} tabs ready through nginx on :{nginx.port}")
        for tab in opened:  # only what the restart does counts
            tab.closes.clear()
            tab.reconnects.clear()
        stop = asyncio.Event()
        load = asyncio.create_task(_load(opened, rate, result, stop))
        try:
            await asyncio.sleep(settle / 2)
            for host in hosts:
                took = await _restart(host, nginx, mode, pause)
                result.restart_seconds.append(took)
                say(f"rolling: host :{host.port} restarted in {took:.1f} s")
                await _ready(opened, 30)
                await asyncio.sleep(settle)
        finally:
            stop.set()
            await load
        result.not_ready_at_end = await _ready(opened, 30)
        gate = asyncio.Semaphore(32)

        async def still_there(tab: RollingTab) -> bool:
            async with gate:
                status, _, body = await http(
                    nginx.port, "GET", "/_sessionwatch/state", tab.headers()
                )
            if status == 200 and body.get("tab") == "active":
                return True
            result.failures.append(f"session {tab.index} at the end: {status} {body}")
            return False

        # Every session once more: still signed in, its tab active.
        kept = await asyncio.gather(*(still_there(tab) for tab in opened))
        result.sessions_lost = kept.count(False)
    finally:
        for tab in opened:
            await tab.stop()
        nginx.stop()
        for host in hosts:
            await asyncio.to_thread(host.stop)
            host.log.unlink(missing_ok=True)
        redis.stop()
    delays = sorted(d for tab in opened for d in tab.reconnects)
    result.reconnect_max = delays[-1] if delays else 0.0
    result.reconnect_p99 = delays[int(0.99 * (len(delays) - 1))] if delays else 0.0
    result.tabs_closed = sum(bool(tab.closes) for tab in opened)
    result.closes = Counter(code for tab in opened for _, code in tab.closes)
    result.banners = sum(len(tab.banners) for tab in opened)
    result.banner_examples = [b for tab in opened for b in tab.banners][:20]
    result.seconds = time.monotonic() - began
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.rolling_restart", description=__doc__
    )
    parser.add_argument("--tabs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--no-drain", action="store_true", help="SIGTERM each host, no nginx change")
    modes.add_argument(
        "--sighup", action="store_true", help="SIGHUP each host: its workers one at a time"
    )
    parser.add_argument(
        "--drain", type=float, default=1.0, help="seconds between out of nginx and SIGTERM"
    )
    parser.add_argument("--settle", type=float, default=8.0, help="seconds of load around restarts")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)
    result = uvloop.run(
        run(
            tabs=args.tabs,
            rate=args.rate,
            mode="no-drain" if args.no_drain else "sighup" if args.sighup else "drain",
            pause=args.drain,
            settle=args.settle,
        )
    )
    print("\n".join(result.lines()))
    if args.json:
        figures = {k: v for k, v in result.__dict__.items() if k != "failures"}
        figures["reconnect_bound"] = RECONNECT_BOUND
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    clean = not (
        result.failed
        or result.banners
        or result.sessions_lost
        or result.not_ready_at_end
        or result.reconnect_max >= RECONNECT_BOUND
        or result.skipped
    )
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
