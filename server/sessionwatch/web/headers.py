"""Security headers on every HTTP answer, added by an ASGI middleware around the app.

Not an app-wide ``after_request`` hook: such a hook makes sessionwatch serve
``POST /claim`` and ``GET /state`` through Quart's whole request handling instead of its
raw ASGI path (docs/architecture.md, "The raw HTTP path"), so the headers go around
the app instead, to Quart's answers and the raw path's alike (the demo and the service
use it). A header the answer already has is kept; the page headers go on ``text/html``
answers only, HSTS on answers over HTTPS only (the scheme as a trusted-proxy middleware
outside this one left it). WebSocket handshakes are not touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SecurityHeaders"]


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


class SecurityHeaders:
    """ASGI middleware: ``app`` with ``every`` header on each HTTP answer, ``pages`` on
    HTML ones and ``https`` on those over HTTPS, unless the answer set them itself."""

    def __init__(
        self,
        app: Any,
        *,
        every: Mapping[str, str],
        pages: Mapping[str, str],
        https: Mapping[str, str],
    ) -> None:
        self.app = app
        self._every = _encoded(every)
        self._pages = _encoded(pages)
        self._https = _encoded(https)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = scope.get("scheme") == "https"

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                content_type = next(
                    (value for name, value in headers if name.lower() == b"content-type"), b""
                )
                added = list(self._every)
                if content_type.partition(b";")[0].strip() == b"text/html":
                    added += self._pages
                if secure:
                    added += self._https
                for name, value in added:
                    if name not in present:
                        headers.append((name, value))
                        present.add(name)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
