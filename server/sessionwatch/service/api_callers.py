"""Who may call the server-to-server APIs: the checks both scopes (the session API and
its admin scope) make before any route, in one place.

A call must come to the API's address (when ``SESSIONWATCH_API_ADDRESS`` sets one),
must not look like a browser's (``Cookie``, ``Origin``, ``Sec-Fetch-Site``/``-Dest``:
a browser's cookie can never reach these APIs), and must present
``Authorization: Bearer <key>`` with a key of the scope. Every configured key of every
scope is compared in constant time, whichever matches, so the time says nothing about
which key (or scope) came close.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from typing import Any, Final

from quart import Response, request

from ..core.audit import security_event
from ..core.codes import Code
from ..web.responses import error_response

__all__ = ["Caller", "check_caller", "on_address"]

_BROWSER_HEADERS: Final = ("Cookie", "Origin", "Sec-Fetch-Site", "Sec-Fetch-Dest")


def on_address(server: Any, address: tuple[str, int]) -> bool:
    """Whether the ASGI ``server`` (the local end of the connection) is ``address``
    (any local host when ``address`` is a wildcard such as 0.0.0.0)."""
    if not isinstance(server, (tuple, list)) or len(server) != 2:
        return False
    host, port = server
    if port != address[1]:
        return False
    return address[0] in ("0.0.0.0", "::", "") or host == address[0]  # noqa: S104


def _matching(given: bytes, keys: Sequence[str]) -> int | None:
    """The index of the key equal to ``given``; every key is compared."""
    found = None
    for index, key in enumerate(keys):
        if hmac.compare_digest(given, key.encode()):
            found = index
    return found


Caller = int  # the index of the caller's key in the scope's keys


def check_caller(
    keys: Sequence[str],
    *,
    disabled: Code,
    api_address: tuple[str, int] | None,
    other_scope: Sequence[str] = (),
    other_scope_code: Code | None = None,
) -> Response | Caller:
    """The refusal of this request, or the index of its key in ``keys``.

    ``disabled`` answers 404 when ``keys`` is empty. A key of ``other_scope`` (with
    ``other_scope_code``) is answered 403: a valid key, of the wrong scope; any other
    key 401.
    """
    if not keys:
        return error_response(404, disabled)
    if api_address is not None and not on_address(request.scope.get("server"), api_address):
        return error_response(404, disabled, "The session API listens on another address.")
    headers = request.headers
    # What only browsers send (Node's fetch sends Sec-Fetch-Mode, so not that one).
    if any(name in headers for name in _BROWSER_HEADERS):
        security_event("api_refused", logging.WARNING, reason="browser", path=request.path)
        return error_response(403, Code.API_BROWSER_FORBIDDEN)
    scheme, _, presented = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        response = error_response(401, Code.API_KEY_MISSING)
        response.headers["WWW-Authenticate"] = 'Bearer realm="sessionwatch"'
        return response
    given = presented.strip().encode("utf-8", "replace")
    found = _matching(given, keys)
    elsewhere = _matching(given, other_scope)  # compared whether or not found
    if found is not None:
        return found
    if elsewhere is not None and other_scope_code is not None:
        security_event("api_refused", logging.WARNING, reason="wrong_scope", path=request.path)
        return error_response(403, other_scope_code)
    security_event("api_refused", logging.WARNING, reason="bad_key", path=request.path)
    response = error_response(401, Code.API_KEY_INVALID)
    response.headers["WWW-Authenticate"] = 'Bearer realm="sessionwatch", error="invalid_token"'
    return response
