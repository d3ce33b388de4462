"""The facts of a request, as every door parses them: plain data, no framework.

A door (Quart request, raw ASGI scope, WebSocket handshake, forward-auth headers)
reads its input into :class:`RequestFacts`; the engine decides on those alone, so two
doors given the same request cannot decide differently.
"""

from __future__ import annotations

from typing import NamedTuple

from ..core.devices import client_address
from ..core.origins import SAFE_METHODS, own_origin_of
from ..core.origins import is_unsafe_method as is_unsafe

# SAFE_METHODS and is_unsafe are core.origins' (the one definition), re-exported here.
__all__ = ["SAFE_METHODS", "RequestFacts", "client_address", "is_unsafe"]


class RequestFacts(NamedTuple):
    """What the engine knows of a request (immutable; a named tuple rather than a
    frozen dataclass because the raw claim path builds one per request, and a frozen
    dataclass takes 4-5 us more to build).

    Attributes:
        method, path: the request line (the original request's, behind forward-auth).
        scheme, host: how the request reached us (``https``/``wss``, ``Host``).
        origin, fetch_site: the ``Origin`` and ``Sec-Fetch-Site`` headers.
        cookies: the values of the session cookie, every copy in order.
        cookies_named: how many times the ``Cookie`` headers name the session cookie,
            copies no parser accepts included (several copies clear none of them).
        tab: the tab token (header, or form field on a form post).
        address: the client address (:func:`client_address`: the one rule).
        user_agent: the ``User-Agent`` header.
        forwarded_host, forwarded_proto: the host and scheme a trusted proxy says the
            browser used (``None`` unless the door trusts the peer for them).
    """

    method: str
    path: str
    scheme: str
    host: str
    origin: str | None = None
    fetch_site: str | None = None
    cookies: tuple[str, ...] = ()
    cookies_named: int = 0
    tab: str | None = None
    address: str | None = None
    user_agent: str | None = None
    forwarded_host: str | None = None
    forwarded_proto: str | None = None

    @property
    def unsafe(self) -> bool:
        return is_unsafe(self.method)

    @property
    def secure(self) -> bool:
        return (self.forwarded_proto or self.scheme) in ("https", "wss")

    @property
    def own_origin(self) -> str:
        """The app's own origin as the browser sees it (the proxy's, when trusted)."""
        return own_origin_of(self.forwarded_proto or self.scheme, self.forwarded_host or self.host)
