"""A browser stand-in over real sockets: a cookie jar, HTTP/1.1 requests and WebSockets."""

from __future__ import annotations

import asyncio
import http.client
import json
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

import websockets

__all__ = ["RealBrowser"]


class RealBrowser:
    """Talks to a running service at ``base`` (``http://127.0.0.1:port``) like one browser."""

    def __init__(self, base: str) -> None:
        self.base = base
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.cookies: dict[str, str] = {}

    def _request_sync(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any] | str]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            raw = response.read().decode()
            for header in response.headers.get_all("Set-Cookie") or []:
                jar: SimpleCookie = SimpleCookie()
                jar.load(header)
                for name, morsel in jar.items():
                    if morsel.value:
                        self.cookies[name] = morsel.value
                    else:
                        self.cookies.pop(name, None)
            try:
                return response.status, json.loads(raw)
            except ValueError:
                return response.status, raw
        finally:
            connection.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        headers = dict(headers or {})
        body = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        elif form is not None:
            from urllib.parse import urlencode

            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return await asyncio.wait_for(
            asyncio.to_thread(self._request_sync, method, path, body, headers), 15
        )

    async def sign_in(self, user: str) -> None:
        status, _ = await self.request(
            "POST", "/login", form={"username": user, "password": "demo"}
        )
        assert status == 302, status

    async def claim(self) -> dict[str, Any]:
        status, body = await self.request("POST", "/_sessionwatch/claim", json_body={})
        assert status == 200, body
        return dict(body)

    async def socket(self, token: str) -> Any:
        """An open WebSocket that has said hello and received ``ready``."""
        ws = await asyncio.wait_for(
            websockets.connect(
                f"ws://{self.host}:{self.port}/_sessionwatch/ws",
                additional_headers={
                    "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
                    "Origin": self.base,
                },
            ),
            10,
        )
        await ws.send(json.dumps({"type": "hello", "v": 1, "tab": token}))
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ready["type"] == "ready", ready
        return ws


async def next_of(ws: Any, message_type: str, timeout: float = 10.0) -> dict[str, Any]:
    """Skip frames until one of ``message_type`` arrives."""
    async with asyncio.timeout(timeout):
        while True:
            message: dict[str, Any] = json.loads(await ws.recv())
            if message["type"] == message_type:
                return message
