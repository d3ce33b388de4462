"""The session API for an upstream app behind a proxy: ``{url_prefix}/api/v1``.

The upstream checks passwords; sessionwatch owns the session. ``login`` turns the
browser's current session (its tab claim under a new tab key) into a signed-in one and answers
the ``Set-Cookie`` the upstream relays; ``complete-login`` finishes a sign-in that
``login`` left pending under ``on_limit="ask"`` (the chooser's choice);
``reauthenticated`` records a password checked again (step-up, ``/verify?max_age=``);
``logout`` ends it; ``revoke`` ends one session,
a user's others or all of them; ``sessions`` lists a user's. Every call needs
``Authorization: Bearer <key>`` with one of ``SESSIONWATCH_API_KEYS`` (several, for
rotation); a request that looks like a browser's (``Cookie``, ``Origin`` or
``Sec-Fetch-Site``/``-Dest``) is refused, so a browser cookie can never reach it. Errors are the
JSON codes of docs/any-stack.md; the contract is ``docs/session-api.openapi.yaml``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from quart import Blueprint, Quart, Response, current_app, jsonify, request
from werkzeug.http import parse_cookie

from ..core.codes import Code
from ..core.config import parse_address
from ..core.refusals import REFUSED_ERRORS, refusal_for
from ..core.tabs import make_tab_token
from ..engine.roster import session_json
from ..web.responses import error_response, refusal_response
from ..web.sessions import (
    ServerSession,
    ServerSessionInterface,
    UnavailableSession,
    copies_named,
)
from .api_callers import check_caller
from .api_input import (
    MAX_COOKIE_HEADER,
    ApiError,
    address_field,
    bad_request,
    flag_field,
    optional,
    read_body,
    reason_field,
    text_field,
    user_field,
)

if TYPE_CHECKING:
    from ..backends.base import SessionRecord
    from ..web.extension import SessionWatch

__all__ = ["ApiError", "create_session_api_blueprint", "register_api_errors"]

_MAX_USER_AGENT: Final = 1024
_PUBLIC_ID_MAX: Final = 64
_SESSION = text_field("session", _PUBLIC_ID_MAX)
_COOKIE = optional(text_field("cookie", MAX_COOKIE_HEADER))
_PENDING = text_field("pending", _PUBLIC_ID_MAX)
_MAX_EVICT: Final = 100


def register_api_errors(bp: Blueprint) -> None:
    """Answer an :class:`ApiError` and the refusals of the engine (503, 400
    ``bad_page``…) on ``bp`` as JSON errors, and never let an answer be cached."""

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


def _evict(value: Any) -> list[str]:
    """The sessions a user chose to sign out: a list of public ids (at most 100)."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > _MAX_EVICT:
        raise bad_request(f"evict must be a list of at most {_MAX_EVICT} session ids")
    return [_SESSION(item) for item in value]


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
        caller = check_caller(
            watch.settings.api_keys, disabled=Code.API_DISABLED, api_address=api_address
        )
        return caller if isinstance(caller, Response) else None

    register_api_errors(bp)

    @bp.post("/login")
    async def login() -> Response:
        body = await read_body(
            {
                "user": user_field,
                "cookie": _COOKIE,
                "user_agent": optional(text_field("user_agent", _MAX_USER_AGENT)),
                "client_ip": optional(address_field),
                "revoke_others": optional(flag_field("revoke_others")),
                "remember": optional(flag_field("remember")),
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
        return await signed_in(old, session_id, record, evicted, body["remember"], revoked)

    async def signed_in(
        old: SessionRecord | None,
        session_id: str,
        record: SessionRecord,
        evicted: list[str],
        remember: bool | None,
        revoked: int = 0,
    ) -> Response:
        """The answer of a sign-in (``login``, ``complete-login``). Remember-me: a new
        family's cookie, else the browser's old one is cleared (its family ended with the
        session this sign-in replaced)."""
        remembered = await watch.engine.remember(record) if remember else None
        return jsonify(
            {
                "session": record.id,
                "user": record.user,
                "remember_cookie": relayed_remember(remembered),
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

    @bp.post("/complete-login")
    async def complete_login() -> Response:
        """The chooser's completion (``on_limit="ask"``): ``pending`` from the 409
        ``session_choice_required`` of ``login``, ``evict`` the ids the user chose, and
        the same browser's ``cookie`` (the pending sign-in is bound to its session)."""
        body = await read_body(
            {
                "pending": _PENDING,
                "evict": _evict,
                "cookie": _COOKIE,
                "user_agent": optional(text_field("user_agent", _MAX_USER_AGENT)),
                "client_ip": optional(address_field),
                "remember": optional(flag_field("remember")),
            }
        )
        old = await browser_session(body["cookie"])
        session_id, record, evicted = await watch.engine.complete_login(
            old,
            body["pending"],
            body["evict"],
            old.data if old is not None else "",
            watch.engine.describe(body["user_agent"], body["client_ip"]),
        )
        return await signed_in(old, session_id, record, evicted, body["remember"])

    @bp.post("/reauthenticated")
    async def reauthenticated() -> Response:
        """The upstream checked the password again: step-up (``/verify?max_age=``)
        passes from now; nothing else of the session changes."""
        body = await read_body({"cookie": text_field("cookie", MAX_COOKIE_HEADER)})
        record = await browser_session(body["cookie"])
        if record is None or record.user is None:
            raise ApiError(404, Code.SESSION_NOT_FOUND, "The cookie names no signed-in session.")
        if not await watch.engine.reauthenticated(record.id, via="api"):
            raise ApiError(404, Code.SESSION_NOT_FOUND)
        return jsonify({"session": record.id, "user": record.user})

    @bp.post("/logout")
    async def logout() -> Response:
        body = await read_body({"cookie": text_field("cookie", MAX_COOKIE_HEADER)})
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
        body = await read_body(
            {
                "session": optional(_SESSION),
                "user": optional(user_field),
                "except_session": optional(_SESSION),
                "reason": optional(reason_field),
            }
        )
        reason = body["reason"] or "revoked"
        if body["session"] is not None:
            if body["except_session"] is not None:
                raise bad_request("give session, or user (with except_session), not both")
            ended = await watch.revoke_session(body["session"], reason=reason, user_id=body["user"])
            if not ended:
                raise ApiError(404, Code.SESSION_NOT_FOUND)
            return jsonify({"revoked": 1})
        if body["user"] is None:
            raise bad_request("give session (one session) or user (all, or all but except_session)")
        count = await watch.engine.revoke_user(
            body["user"], except_id=body["except_session"], reason=reason, via="api"
        )
        return jsonify({"revoked": count})

    @bp.get("/sessions")
    async def sessions() -> Response:
        user = request.args.get("user")
        if user is None:
            raise bad_request("the user query parameter is required")
        page = await watch.list_sessions(
            user_field(user), cursor=request.args.get("cursor"), limit=request.args.get("limit")
        )
        listed = [session_json(info) for info in page.sessions]
        return jsonify({"user": user, "sessions": listed, "next_cursor": page.next_cursor})

    return bp
