"""Raw clients of the fault suite: one HTTP/1.1 request per connection with a bounded
wait, and a browser tab's WebSocket that reconnects like the browser client and records
when it was told its token no longer holds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed

from support.push_processes import exchange, parse_response
from support.tab_socket import open_tab_socket

from .topology import ORIGIN

__all__ = ["Answer", "Tab", "request"]

REQUEST_TIMEOUT = 8.0  # seconds; longer than the server's 5 s Redis socket timeout
CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
# Close codes after which the browser client reconnects (docs/protocol.md §3).
RETRY_CLOSES = frozenset({1001, 1006, 1011, 1012, 1013, 4009, 4010, 4012, 4014})
TOLD_CLOSES = frozenset({4002, 4003, 4004, 4005, 4007})  # terminal: the tab was told
TOLD_MESSAGES = frozenset({"evicted", "revoked", "logged_out", "expired"})


@dataclass(slots=True)
class Answer:
    status: int  # 0: no answer (connection failed or timed out)
    body: Any
    cookies: dict[str, str | None]  # None: deleted
    error: str = ""


async def request(
    base: str,
    method: str,
    path: str,
    *,
    cookies: dict[str, str],
    headers: dict[str, str] | None = None,
    json_body: Any = None,
    form: dict[str, str] | None = None,
    timeout: float = REQUEST_TIMEOUT,
    browser: bool = True,
) -> Answer:
    """One request on a fresh connection; never raises for network failures. Without
    ``browser`` it has no ``Origin`` and ``User-Agent`` (an upstream app's call)."""
    try:
        return await asyncio.wait_for(
            _request(base, method, path, cookies, headers or {}, json_body, form, browser),
            timeout,
        )
    except TimeoutError:
        return Answer(0, None, {}, "timeout")
    except (OSError, ValueError, IndexError) as exc:
        return Answer(0, None, {}, type(exc).__name__)


async def _request(
    base: str,
    method: str,
    path: str,
    cookies: dict[str, str],
    headers: dict[str, str],
    json_body: Any,
    form: dict[str, str] | None,
    browser: bool = True,
) -> Answer:
    host_port = base.split("//", 1)[1]
    host, _, port = host_port.rpartition(":")
    if form is not None:
        payload, content_type = urlencode(form).encode(), "application/x-www-form-urlencoded"
    elif json_body is not None:
        payload, content_type = json.dumps(json_body).encode(), "application/json"
    else:
        payload, content_type = b"", ""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host_port}", "Connection: close"]
    all_headers = {"Content-Length": str(len(payload))}
    if browser:
        all_headers.update({"Origin": ORIGIN, "User-Agent": CHROME})
    if content_type:
        all_headers["Content-Type"] = content_type
    if cookies:
        all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    all_headers.update(headers)
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    raw = await exchange(host, int(port), lines, payload)
    if not raw:
        return Answer(0, None, {}, "empty")
    status, jar, body = parse_response(raw)
    return Answer(status, body if not isinstance(body, str) else None, jar)


@dataclass(eq=False)
class Tab:
    """A tab holding token ``token`` (of generation ``gen``): its socket reconnects on the
    closes the protocol says to retry (to any host ``pick_host`` offers) until the tab is
    told its token no longer holds, or :meth:`close` is called."""

    browser: Any
    token: str
    gen: int
    pick_host: Callable[[], str]
    created: float = field(default_factory=time.monotonic)
    ready_at: float | None = None
    told_at: float | None = None
    told: str = ""
    closed_at: float | None = None  # closed by the workload (replaced by "Use here")
    attempts: int = 0
    messages: list[tuple[float, str]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    def _tell(self, how: str) -> None:
        if self.told_at is None:
            self.told_at = time.monotonic()
            self.told = how

    async def _run(self) -> None:
        delay = 0.2
        while self.told_at is None:
            self.attempts += 1
            base = self.pick_host()
            url = base.replace("http://", "ws://") + "/_sessionwatch/ws"
            cookie = "; ".join(f"{k}={v}" for k, v in self.browser.cookies.items())
            ws = await open_tab_socket(
                url, {"Cookie": cookie, "Origin": ORIGIN}, user_agent_header=CHROME
            )
            if isinstance(ws, int):
                if ws in (401, 403):
                    self._tell(f"http_{ws}")
                    return
            else:
                code = await self._serve(ws)
                if code in TOLD_CLOSES:
                    self._tell(f"close_{code}")
                    return
                if code == 4013:  # the session vanished: reconnect at once
                    delay = 0.05
                elif code is not None and code not in RETRY_CLOSES and code != 1000:
                    self._tell(f"close_{code}")
                    return
            if self.told_at is not None:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    async def _serve(self, ws: Any) -> int | None:
        try:
            await ws.send(json.dumps({"type": "hello", "v": 1, "tab": self.token}))
            pinged = time.monotonic()
            while self.told_at is None:
                try:
                    raw = await asyncio.wait_for(ws.recv(), 10)
                except TimeoutError:
                    if time.monotonic() - pinged > 15:
                        await ws.send('{"type":"ping"}')
                        pinged = time.monotonic()
                    continue
                message = json.loads(raw)
                kind = message.get("type", "")
                now = time.monotonic()
                self.messages.append(
                    (now, f"{kind}:{message['gen']}" if "gen" in message else kind)
                )
                if kind == "ready" and self.ready_at is None:
                    self.ready_at = now
                elif kind == "superseded" and int(message.get("gen", 0)) > self.gen:
                    self._tell("superseded")
                elif kind in TOLD_MESSAGES:
                    self._tell(kind)
                if time.monotonic() - pinged > 15:
                    await ws.send('{"type":"ping"}')
                    pinged = time.monotonic()
            await ws.close()
            return None
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else 1006
        except (OSError, ValueError):
            return 1006
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 3)

    async def close(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
