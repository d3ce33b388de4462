"""Read a request into :class:`~sessionwatch.engine.RequestFacts`: from Quart's request
or handshake, or from a raw ASGI scope. The only place a door reads these headers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from quart.wrappers import BaseRequestWebsocket
from werkzeug.http import parse_cookie
from werkzeug.sansio.utils import get_host

from ..core.tabs import TAB_HEADER
from ..engine import RequestFacts, client_address
from .sessions import copies_named

__all__ = ["ScopeHeaders", "facts_of_connection", "facts_of_scope"]

_TAB = TAB_HEADER.lower().encode()


def facts_of_connection(
    connection: BaseRequestWebsocket,
    cookie_name: str,
    *,
    trust_forwarded_for: bool,
    tab: str | None = None,
) -> RequestFacts:
    """The facts of Quart's request or WebSocket handshake (``tab``: the token as the
    door read it; default the header)."""
    headers = connection.headers
    cookies = connection.cookies.getlist(cookie_name)
    return RequestFacts(
        method=connection.method,
        path=connection.path,
        scheme=connection.scheme,
        host=connection.host,
        origin=headers.get("Origin"),
        fetch_site=headers.get("Sec-Fetch-Site"),
        cookies=tuple(cookies),
        cookies_named=copies_named(headers.getlist("Cookie"), cookie_name) if cookies else 0,
        tab=tab if tab is not None else headers.get(TAB_HEADER),
        address=client_address(
            connection.remote_addr,
            headers.getlist("X-Forwarded-For"),
            trust_forwarded_for=trust_forwarded_for,
        ),
        user_agent=headers.get("User-Agent"),
    )


class ScopeHeaders:
    """The headers of an ASGI scope as Quart's ``Headers`` reads them: latin-1, the
    first line of a name wins for :meth:`get`; every ``Cookie`` and ``X-Forwarded-For``
    line kept."""

    __slots__ = ("cookies", "first", "forwarded_for")

    def __init__(self, scope: Any) -> None:
        first: dict[bytes, str] = {}
        cookies: list[str] = []
        forwarded: list[str] = []
        for name, value in scope["headers"]:
            name = name.lower()
            if name == b"cookie":
                cookies.append(value.decode("latin1"))
            elif name == b"x-forwarded-for":
                forwarded.append(value.decode("latin1"))
            if name not in first:
                first[name] = value.decode("latin1")
        self.first = first
        self.cookies = cookies
        self.forwarded_for = forwarded

    def get(self, name: bytes) -> str | None:
        return self.first.get(name)


def facts_of_scope(
    scope: Any,
    headers: ScopeHeaders,
    cookie_name: Callable[[bool], str],
    *,
    trust_forwarded_for: bool,
) -> RequestFacts:
    """The facts of a raw ASGI HTTP request or handshake (``cookie_name(secure)``: the
    session cookie's name over this scheme)."""
    scheme = str(scope["scheme"])
    values: tuple[str, ...] = ()
    named = 0
    if headers.cookies:
        name = cookie_name(scheme in ("https", "wss"))
        values = tuple(parse_cookie(";".join(headers.cookies)).getlist(name))
        named = copies_named(headers.cookies, name)
    client = scope.get("client")
    host = headers.get(b"host")
    if host is None and scope.get("type") == "http" and str(scope["http_version"]) < "1.1":
        host = ""  # as Quart's HTTP request (no SERVER_NAME on the raw paths): not the server's
    return RequestFacts(
        method=str(scope.get("method", "GET")),
        path=str(scope.get("path", "")),
        scheme=scheme,
        host=get_host(scheme, host, scope.get("server")),
        origin=headers.get(b"origin"),
        fetch_site=headers.get(b"sec-fetch-site"),
        cookies=values,
        cookies_named=named,
        tab=headers.get(_TAB),
        address=client_address(
            client[0] if client else "<local>",  # as Quart's remote_addr
            headers.forwarded_for,
            trust_forwarded_for=trust_forwarded_for,
        ),
        user_agent=headers.get(b"user-agent"),
    )
