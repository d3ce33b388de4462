"""The session API for an upstream app behind a proxy: ``{url_prefix}/api/v1``.

The upstream checks passwords; sessionwatch owns the session. ``login`` turns the
browser's current session (its tab claim under a new tab key) into a signed-in one and answers
the ``Set-Cookie`` the upstream relays; ``logout`` ends it; ``revoke`` ends one session,
a user's others or all of them; ``sessions`` lists a user's. Every call needs
``Authorization: Bearer <key>`` with one of ``SESSIONWATCH_API_KEYS`` (several, for
rotation); a request that looks like a browser's (``Cookie``, ``Origin`` or
``Sec-Fetch-Site``/``-Dest``) is refused, so a browser cookie can never reach it. Errors are the
JSON codes of docs/any-stack.md; the contract is ``docs/session-api.openapi.yaml``.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from quart import Blueprint, Quart, Response, current_app, jsonify, request
from werkzeug.http import parse_cookie

from ..core import jsonlimits
from ..core.audit import MAX_USER_ID, check_user_id, security_event
from ..core.codes import Code
from ..core.config import parse_address
from ..core.refusals import REFUSED_ERRORS, refusal_for
from ..core.tabs import make_tab_token
from ..engine import REASON_RE
from ..web.responses import error_response, refusal_response
from ..web.sessions import (
    ServerSession,
    ServerSessionInterface,
    UnavailableSession,
    copies_named,
)

if TYPE_CHECKING:
    from ..backends.base import SessionRecord
    from ..web.extension import SessionWatch

__all__ = ["ApiError", "create_session_api_blueprint"]

_MAX_BODY: Final = 16 * 1024
_MAX_COOKIE_HEADER: Final = 8192
_MAX_USER_AGENT: Final = 1024
_PUBLIC_ID_MAX: Final = 64
_BROWSER_HEADERS: Final = ("Cookie", "Origin", "Sec-Fetch-Site", "Sec-Fetch-Dest")


class ApiError(Exception):
    """A refused API call: its status, stable code and message."""

    def __init__(self, status: int, code: Code, message: str | None = None) -> None:
        super().__init__(message or code)
        self.status = status
        self.code = code
        self.message = message


def _bad(message: str) -> ApiError:
    return ApiError(400, Code.BAD_REQUEST, message)


def _string(name: str, limit: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value or len(value) > limit:
            raise _bad(f"{name} must be a non-empty string of at most {limit} characters")
        return value

    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else check(value)


def _flag(name: str) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise _bad(f"{name} must be true or false")
        return value

    return check


def _address(value: Any) -> str:
    try:
        return str(ipaddress.ip_address(value if isinstance(value, str) else ""))
    except ValueError:
        raise _bad("client_ip must be an IPv4 or IPv6 address") from None


def _user(value: Any) -> str:
    """A user id, refused as the extension's login refuses it (control characters too)."""
    value = _string("user", MAX_USER_ID)(value)
    try:
        return check_user_id(value)
    except ValueError:
        raise _bad("user must not contain control or separator characters") from None


def _reason(value: Any) -> str:
    if not isinstance(value, str) or not REASON_RE.fullmatch(value):
        raise _bad(f"reason must match {REASON_RE.pattern}")
    return value


_USER = _user
_SESSION = _string("session", _PUBLIC_ID_MAX)
_COOKIE = _optional(_string("cookie", _MAX_COOKIE_HEADER))


async def _body(fields: dict[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """The JSON object body, each field checked; unknown fields are refused."""
    if request.mimetype != "application/json":
        raise ApiError(
            415, Code.BAD_REQUEST, "the body must be JSON (Content-Type: application/json)"
        )
    raw = await request.get_data(as_text=False)
    if len(raw) > _MAX_BODY:
        raise ApiError(413, Code.BAD_REQUEST, f"the body is larger than {_MAX_BODY} bytes")
    try:
        value = jsonlimits.loads(raw)
    except jsonlimits.JSONTooDeep as exc:
        raise _bad(f"the body is not valid JSON: {exc}") from None
    except ValueError:
        raise _bad("the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise _bad("the body must be a JSON object")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise _bad(f"unknown field(s): {', '.join(unknown)}")
    return {name: check(value.get(name)) for name, check in fields.items()}


def on_address(server: Any, address: tuple[str, int]) -> bool:
    """Whether the ASGI ``server`` (the local end of the connection) is ``address``
    (any local host when ``address`` is a wildcard such as 0.0.0.0)."""
    if not isinstance(server, (tuple, list)) or len(server) != 2:
        return False
    host, port = server
    if port != address[1]:
        return False
    return address[0] in ("0.0.0.0", "::", "") or host == address[0]  # noqa: S104


def create_session_api_blueprint(watch: SessionWatch) -> Blueprint:
    """The session API bound to ``watch`` (mount under ``{url_prefix}/api/v1``)."""
    bp = Blueprint("sessionwatch_api", __name__)
    api_address = parse_address(watch.settings.api_address) if watch.settings.api_address else None

    def interface(app: Quart) -> ServerSessionInterface:
        found = app.session_interface
        if not isinstance(found, ServerSessionInterface):
            raise RuntimeError("the app's session interface is not sessionwatch's")
        return found

    # The browser's scheme is the deployment's (public_scheme), never this call's: the
    # upstream calls over plain HTTP while its browsers hold the __Host- cookie.
    browser_secure = watch.settings.public_scheme == "https"

    def relayed_cookie(session_id: str | None) -> dict[str, Any]:
        """The cookie to relay (``None``: clears it): its parts and ``Set-Cookie``,
        built as the extension's answers build it."""
        cookie = interface(current_app).session_cookie(current_app, browser_secure, session_id)
        return {"name": cookie.name, "value": cookie.value, "set_cookie": cookie.header}

    def relayed_remember(value: str | None) -> dict[str, Any]:
        """The remember cookie to relay (``None``: clears it), as :func:`relayed_cookie`."""
        cookie = interface(current_app).remember_cookie(current_app, browser_secure, value)
        return {"name": cookie.name, "value": cookie.value, "set_cookie": cookie.header}

    async def browser_session(cookie_header: str | None) -> SessionRecord | None:
        """The live session named by the browser's ``Cookie`` header, if any, chosen
        among copies of the cookie as a browser request's is (a tossed copy is never
        preferred; several live ones: none)."""
        if not cookie_header:
            return None
        sessions = interface(current_app)
        name = sessions.cookie_name(current_app, browser_secure)
        session = await sessions.open_cookies(
            parse_cookie(cookie_header).getlist(name),
            defer=False,
            named=copies_named([cookie_header], name),
        )
        if isinstance(session, UnavailableSession):
            raise session.error
        return session.record if isinstance(session, ServerSession) else None

    @bp.before_request
    async def authenticate() -> Response | None:
        keys = watch.settings.api_keys
        if not keys:
            return error_response(404, Code.API_DISABLED)
        if api_address is not None and not on_address(request.scope.get("server"), api_address):
            return error_response(
                404, Code.API_DISABLED, "The session API listens on another address."
            )
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
        matched = False
        for key in keys:  # every key compared: the time does not say which matched
            matched |= hmac.compare_digest(given, key.encode())
        if not matched:
            security_event("api_refused", logging.WARNING, reason="bad_key", path=request.path)
            response = error_response(401, Code.API_KEY_INVALID)
            response.headers["WWW-Authenticate"] = (
                'Bearer realm="sessionwatch", error="invalid_token"'
            )
            return response
        return None

    @bp.errorhandler(ApiError)
    async def api_error(error: ApiError) -> Response:
        return error_response(error.status, error.code, error.message)

    async def refused(error: Exception) -> Response:
        refusal = refusal_for(error)
        if refusal is None:  # registered only for the table's errors
            raise error
        return refusal_response(refusal)

    for kind in REFUSED_ERRORS:
        bp.register_error_handler(kind, refused)

    @bp.after_request
    async def no_store(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        return response

    @bp.post("/login")
    async def login() -> Response:
        body = await _body(
            {
                "user": _USER,
                "cookie": _COOKIE,
                "user_agent": _optional(_string("user_agent", _MAX_USER_AGENT)),
                "client_ip": _optional(_address),
                "revoke_others": _optional(_flag("revoke_others")),
                "remember": _optional(_flag("remember")),
            }
        )
        old = await browser_session(body["cookie"])
        device = watch.engine.describe(body["user_agent"], body["client_ip"])
        session_id, record, evicted = await watch.engine.login(
            old,
            body["user"],
            old.data if old is not None else "",
            device,
            address=body["client_ip"],  # the browser's: the caller is the upstream server
        )
        revoked = 0
        if body["revoke_others"]:
            revoked = await watch.engine.revoke_user(
                body["user"], except_id=record.id, reason="signed_out_elsewhere"
            )
        # Remember-me: a new family's cookie, else the browser's old one is cleared (its
        # family ended with the session this sign-in replaced).
        remember = await watch.engine.remember(record) if body["remember"] else None
        return jsonify(
            {
                "session": record.id,
                "user": record.user,
                "remember_cookie": relayed_remember(remember),
                "rotated_from": old.id if old is not None else None,
                "evicted": evicted,
                "revoked": revoked,
                "expires_at": record.expires_at(watch.timeouts.idle),
                "cookie": relayed_cookie(session_id),
                # The tab key rotated: tokens issued before are refused; the upstream
                # hands this one to the calling tab (its X-SessionWatch-Tab header).
                "tab": make_tab_token(record.tab_key, record.gen),
            }
        )

    @bp.post("/logout")
    async def logout() -> Response:
        body = await _body({"cookie": _string("cookie", _MAX_COOKIE_HEADER)})
        record = await browser_session(body["cookie"])
        ended = False
        if record is not None:
            ended = await watch.engine.logout(record.id, via="api")
        return jsonify(
            {
                "logged_out": ended,
                "session": record.id if record is not None else None,
                "cookie": relayed_cookie(None),
                "remember_cookie": relayed_remember(None),  # its family ended with the session
            }
        )

    @bp.post("/revoke")
    async def revoke() -> Response:
        body = await _body(
            {
                "session": _optional(_SESSION),
                "user": _optional(_USER),
                "except_session": _optional(_SESSION),
                "reason": _optional(_reason),
            }
        )
        reason = body["reason"] or "revoked"
        if body["session"] is not None:
            if body["except_session"] is not None:
                raise _bad("give session, or user (with except_session), not both")
            ended = await watch.revoke_session(body["session"], reason=reason, user_id=body["user"])
            if not ended:
                raise ApiError(404, Code.SESSION_NOT_FOUND)
            return jsonify({"revoked": 1})
        if body["user"] is None:
            raise _bad("give session (one session) or user (all, or all but except_session)")
        count = await watch.engine.revoke_user(
            body["user"], except_id=body["except_session"], reason=reason, via="api"
        )
        return jsonify({"revoked": count})

    @bp.get("/sessions")
    async def sessions() -> Response:
        user = request.args.get("user")
        if user is None:
            raise _bad("the user query parameter is required")
        page = await watch.list_sessions(
            _USER(user), cursor=request.args.get("cursor"), limit=request.args.get("limit")
        )
        listed = []
        for info in page.sessions:
            item = info.to_json()
            item.pop("current")
            item["user"] = info.user
            listed.append(item)
        return jsonify({"user": user, "sessions": listed, "next_cursor": page.next_cursor})

    return bp
