"""Error answers: JSON with a stable ``error`` code, or a small HTML page for navigations."""

from __future__ import annotations

import html
import math
from typing import Any

from quart import Response, has_request_context, jsonify, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

__all__ = [
    "ended_error",
    "ended_response",
    "error_fields",
    "error_response",
    "html_wanted",
    "retry_after",
    "wants_html",
]

_MESSAGES = {
    "no_session": "You are not signed in, or your session is no longer valid.",
    "expired": "Your session has expired.",
    "revoked": "Your session was ended.",
    "cookie_conflict": "This request carries several session cookies; none was used. "
    "Clear this site's cookies, then sign in again.",
    "tab_missing": "This request did not come from an active tab of this app.",
    "tab_invalid": "This tab's token is not valid. Reload the page.",
    "tab_superseded": "This app is open in another tab.",
    "backend_unavailable": "The session service is unavailable. Try again shortly.",
    "busy": "Too many connections are opening at once. Try again shortly.",
    "session_not_found": "No such session.",
    "session_limit_reached": "You have reached the maximum number of active sessions.",
    "bad_request": "The request was malformed.",
    "bad_host": "The request's Host header is not a valid host name.",
    "origin_forbidden": "This request's origin is not allowed.",
    "not_signed_in": "Sign in to see your sessions.",
    "unauthorized": "This endpoint needs a valid bearer token.",
    "rate_limited": "Too many new sessions from your address. Try again shortly.",
    "api_disabled": "The session API is off: set SESSIONWATCH_API_KEYS.",
    "api_key_missing": "The session API needs Authorization: Bearer <key>.",
    "api_key_invalid": "This API key is not valid.",
    "api_browser_forbidden": "The session API is for servers: requests with Cookie, "
    "Origin, Sec-Fetch-Site or Sec-Fetch-Dest headers are refused.",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:15vh auto;padding:0 1rem;color:#222}}
a{{color:#0b57d0}}</style></head>
<body><h1>{title}</h1><p>{message}</p><p><a href="{again}">{action}</a></p></body></html>
"""


def wants_html() -> bool:
    """True for a browser navigation, false for fetch/XHR/API callers and for
    WebSocket handshakes (refused with a JSON body a browser never shows)."""
    if not has_request_context():
        return False
    return html_wanted(request.headers.get("Sec-Fetch-Mode"), request.headers.get("Accept"))


def html_wanted(sec_fetch_mode: str | None, accept: str | None) -> bool:
    """:func:`wants_html` for a request with these ``Sec-Fetch-Mode`` and ``Accept``
    headers (as Quart's ``request.accept_mimetypes`` parses them)."""
    if sec_fetch_mode is not None:
        return sec_fetch_mode == "navigate"
    accepted = parse_accept_header(accept, MIMEAccept)
    best = accepted.best_match(["application/json", "text/html"])
    return best == "text/html" and accepted["text/html"] > accepted["application/json"]


def error_fields(code: str, message: str | None = None, **fields: Any) -> dict[str, Any]:
    """The JSON body of an error answer with the stable ``code``."""
    return {"error": code, "message": message or _MESSAGES.get(code, code), **fields}


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` value of a 429: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


def error_response(
    status: int, code: str, message: str | None = None, *, again: str | None = None, **fields: Any
) -> Response:
    """An error answer with a stable ``code``; HTML for navigations, whose link leads to
    ``again`` (default: this path for a superseded tab, else ``/``)."""
    text = message or _MESSAGES.get(code, code)
    if wants_html():
        superseded = code == "tab_superseded"
        page = _PAGE.format(
            title=html.escape("Open in another tab" if superseded else "Session problem"),
            message=html.escape(text),
            # A link is a GET: it reloads a refused page, but a refused form post
            # (its route may take POST only) goes to the app's start page instead.
            again=html.escape(
                again or (request.path if superseded and request.method == "GET" else "/")
            ),
            action="Use this tab instead" if superseded else "Continue",
        )
        response = Response(page, status=status, content_type="text/html; charset=utf-8")
    else:
        response = jsonify(error_fields(code, text, **fields))
        response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def ended_error(ended: str | None) -> tuple[str, dict[str, Any]]:
    """The error code (and extra fields) of the 401 for a request whose session is gone,
    by why it ended: ``expired``; ``revoked`` with ``reason`` ``"revoked"`` or
    ``"evicted"``; ``cookie_conflict`` for copies of several live sessions (one tossed by
    a sibling subdomain); else ``no_session`` (unknown, forged, or logged out: the user
    ended it and the cookie was cleared)."""
    if ended == "cookie_conflict":
        return "cookie_conflict", {}
    if ended == "expired":
        return "expired", {}
    if ended in ("revoked", "evicted"):
        return "revoked", {"reason": ended}
    return "no_session", {}


def ended_response(ended: str | None) -> Response:
    """The 401 for a request whose session is gone (see :func:`ended_error`)."""
    code, fields = ended_error(ended)
    return error_response(401, code, **fields)
