"""Error answers: JSON with a stable ``error`` code, or a small HTML page for navigations."""

from __future__ import annotations

import html
import math
from typing import Any
from urllib.parse import quote

from quart import Response, has_request_context, jsonify, request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from ..core.codes import MESSAGES, Code
from ..core.config import is_local_path
from ..core.refusals import Refusal, ended_refusal

__all__ = [
    "ended_response",
    "error_fields",
    "error_page",
    "error_response",
    "html_wanted",
    "reauth_response",
    "refusal_response",
    "retry_after",
    "wants_html",
]

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
    return {"error": code, "message": message or MESSAGES.get(code, code), **fields}


def retry_after(seconds: float) -> str:
    """The ``Retry-After`` value of a 429: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


def error_page(
    code: str, message: str | None = None, *, again: str | None = None, path: str, method: str
) -> str:
    """The HTML page of an error answer to a navigation (``method path``), whose link
    leads to ``again`` (default: this path for a superseded tab, else ``/``)."""
    superseded = code == Code.TAB_SUPERSEDED
    return _PAGE.format(
        title=html.escape("Open in another tab" if superseded else "Session problem"),
        message=html.escape(message or MESSAGES.get(code, code)),
        # A link is a GET: it reloads a refused page, but a refused form post (its
        # route may take POST only) goes to the app's start page instead.
        again=html.escape(again or (path if superseded and method == "GET" else "/")),
        action="Use this tab instead" if superseded else "Continue",
    )


def error_response(
    status: int, code: str, message: str | None = None, *, again: str | None = None, **fields: Any
) -> Response:
    """An error answer with a stable ``code``; HTML for navigations, whose link leads to
    ``again`` (default: this path for a superseded tab, else ``/``)."""
    if wants_html():
        page = error_page(code, message, again=again, path=request.path, method=request.method)
        response = Response(page, status=status, content_type="text/html; charset=utf-8")
    else:
        response = jsonify(error_fields(code, message, **fields))
        response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


def refusal_response(refusal: Refusal, *, again: str | None = None) -> Response:
    """The answer of ``refusal`` (see :func:`error_response`), with ``Retry-After``
    when it says how long to wait."""
    response = error_response(
        refusal.status, refusal.code, refusal.message, again=again, **refusal.fields
    )
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = retry_after(refusal.retry_after)
    return response


def reauth_response(refusal: Refusal, reauth_url: str, going_to: str) -> Response:
    """The answer of a step-up refusal: for a navigation, when the app has a
    re-authentication page (``reauth_url``), a 303 to it with ``?next=`` the local path
    the browser was going to; else :func:`refusal_response` (JSON 401
    ``reauth_required`` with ``max_age``, which the browser client turns into its
    "confirm it's you" prompt)."""
    if refusal.code == Code.REAUTH_REQUIRED and reauth_url and wants_html():
        target = going_to if is_local_path(going_to) else "/"
        separator = "&" if "?" in reauth_url else "?"
        location = f"{reauth_url}{separator}next={quote(target, safe='/')}"
        return Response("", status=303, headers={"Location": location, "Cache-Control": "no-store"})
    return refusal_response(refusal)


def ended_response(ended: str | None) -> Response:
    """The 401 for a request whose session is gone (see
    :func:`~sessionwatch.core.refusals.ended_refusal`)."""
    return refusal_response(ended_refusal(ended))
