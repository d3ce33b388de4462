"""A thin client of the session API (docs/any-stack.md), for upstream apps in Python.

Dependency-free (the standard library only) and independent of the rest of the
package, so a Flask, Django or FastAPI app can use it without Quart or Redis::

    from sessionwatch.client import SessionAPI

    api = SessionAPI("http://127.0.0.1:8000", api_key=os.environ["SESSIONWATCH_API_KEY"])
    result = api.login("alice", cookie=request.headers.get("Cookie"),
                       user_agent=request.headers.get("User-Agent"),
                       client_ip=request.remote_addr)
    response.headers.add("Set-Cookie", result["cookie"]["set_cookie"])

:class:`AsyncSessionAPI` has the same methods as coroutines (each call runs the
blocking one in a worker thread). A refused call raises :class:`SessionAPIError` with
the documented ``status`` and ``code``; an unreachable service raises it with status 0
and code ``unreachable``.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

__all__ = ["AsyncSessionAPI", "SessionAPI", "SessionAPIError"]

DEFAULT_PREFIX = "/_sessionwatch/api/v1"
_MAX_PAGES = 100  # a bound on following next_cursor, should a server never end it


class SessionAPIError(Exception):
    """A call the session API refused (``status``/``code`` as documented), or could not
    make (``status`` 0, ``code`` ``"unreachable"`` or ``"bad_response"``)."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class SessionAPI:
    """Blocking client of the session API.

    Args:
        base_url: where ``sessionwatch serve`` (or its API address) listens.
        api_key: one of the service's ``SESSIONWATCH_API_KEYS``.
        prefix: the API's path (default ``/_sessionwatch/api/v1``).
        timeout: seconds per call.
    """

    def __init__(
        self, base_url: str, api_key: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 5.0
    ) -> None:
        scheme = urllib.parse.urlsplit(base_url).scheme
        if scheme not in ("http", "https"):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        if not api_key:
            raise ValueError("api_key is required")
        self.base = base_url.rstrip("/") + prefix
        self.api_key = api_key
        self.timeout = timeout

    def login(
        self,
        user: str,
        *,
        cookie: str | None = None,
        user_agent: str | None = None,
        client_ip: str | None = None,
        revoke_others: bool = False,
        remember: bool = False,
    ) -> dict[str, Any]:
        """Sign the browser's session in as ``user`` (``cookie``: its ``Cookie`` header).

        Returns ``{"session", "user", "rotated_from", "evicted", "revoked",
        "expires_at", "cookie": {"name", "value", "set_cookie"}, "remember_cookie": {…},
        "tab"}``; relay ``cookie["set_cookie"]`` and ``remember_cookie["set_cookie"]``
        as ``Set-Cookie`` headers (``remember``: a remember-me cookie, else the browser's
        old one cleared) and ``tab``, the calling tab's new token, as
        ``X-SessionWatch-Tab`` if you like. Raises
        :class:`SessionAPIError` (403 ``session_limit_reached`` under ``deny``; 409
        ``session_choice_required`` under ``ask``: its ``body`` holds ``pending`` and
        ``sessions`` for the chooser, then :meth:`complete_login`)."""
        return self._call(
            "POST",
            "/login",
            {
                "user": user,
                "cookie": cookie,
                "user_agent": user_agent,
                "client_ip": client_ip,
                "revoke_others": revoke_others,
                "remember": remember,
            },
        )

    def complete_login(
        self,
        pending: str,
        evict: list[str],
        *,
        cookie: str | None = None,
        user_agent: str | None = None,
        client_ip: str | None = None,
    ) -> dict[str, Any]:
        """Finish the sign-in ``login`` left pending under ``ask``: sign out the
        sessions ``evict`` the user chose, from the same browser (``cookie``). Returns
        what :meth:`login` returns."""
        body = {"pending": pending, "evict": evict, "cookie": cookie}
        return self._call(
            "POST", "/complete-login", {**body, "user_agent": user_agent, "client_ip": client_ip}
        )

    def reauthenticated(self, *, cookie: str) -> dict[str, Any]:
        """The user proved who they are again (step-up: ``/verify?max_age=`` passes)."""
        return self._call("POST", "/reauthenticated", {"cookie": cookie})

    def logout(self, *, cookie: str) -> dict[str, Any]:
        """End the browser's session; relay ``cookie["set_cookie"]`` (it clears it)."""
        return self._call("POST", "/logout", {"cookie": cookie})

    def revoke(
        self,
        *,
        session: str | None = None,
        user: str | None = None,
        except_session: str | None = None,
        reason: str | None = None,
    ) -> int:
        """Revoke one session (``session``), or a user's (all, or all but
        ``except_session``). Returns how many ended."""
        body = {"session": session, "user": user, "except_session": except_session}
        if reason is not None:
            body["reason"] = reason
        return int(self._call("POST", "/revoke", body)["revoked"])

    def sessions(self, user: str) -> list[dict[str, Any]]:
        """The user's live sessions, oldest first (every page, 100 a call; a user holds
        at most ``max_sessions_per_user``)."""
        sessions: list[dict[str, Any]] = []
        cursor = None
        for _ in range(_MAX_PAGES):
            query = {"user": user, "limit": "100", **({"cursor": cursor} if cursor else {})}
            page = self._call("GET", f"/sessions?{urllib.parse.urlencode(query)}", None)
            sessions.extend(page["sessions"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return sessions

    def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps({k: v for k, v in body.items() if v is not None}).encode()
            headers["Content-Type"] = "application/json"
        call = urllib.request.Request(  # noqa: S310 (http(s) only, checked in __init__)
            self.base + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(call, timeout=self.timeout) as answer:  # noqa: S310
                status, raw = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except (OSError, TimeoutError) as error:
            raise SessionAPIError(0, "unreachable", str(error), {}) from error
        try:
            parsed = json.loads(raw)  # stand-alone file: no jsonlimits; deep answers caught here
        except (ValueError, RecursionError):
            parsed = None
        if not isinstance(parsed, dict):
            raise SessionAPIError(
                status or 0, "bad_response", "the answer is not a JSON object", {}
            )
        if status >= 400:
            code = str(parsed.get("error", "error"))
            raise SessionAPIError(status, code, str(parsed.get("message", code)), parsed)
        return parsed


class AsyncSessionAPI:
    """:class:`SessionAPI` for asyncio code: the same methods, awaited."""

    def __init__(
        self, base_url: str, api_key: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 5.0
    ) -> None:
        self.sync = SessionAPI(base_url, api_key, prefix=prefix, timeout=timeout)

    async def login(self, user: str, **options: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.login, user, **options)

    async def complete_login(
        self, pending: str, evict: list[str], **options: Any
    ) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.complete_login, pending, evict, **options)

    async def reauthenticated(self, *, cookie: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.reauthenticated, cookie=cookie)

    async def logout(self, *, cookie: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.logout, cookie=cookie)

    async def revoke(self, **options: Any) -> int:
        return await asyncio.to_thread(self.sync.revoke, **options)

    async def sessions(self, user: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.sync.sessions, user)
