"""The demo's admin page (``/admin``): every user's live sessions with their tabs,
revoke one or a user's, and a live feed of the audit trail (``SessionWatch.audit_feed``:
the durable records every worker's changes wrote, docs/audit.md).

Behind its own sign-in, never a user's: the password is ``DEMO_ADMIN_PASSWORD`` or
one made at start and printed by ``sessionwatch demo`` (the demo is loopback-only; the
production service has no password at all: its admin scope takes named bearer keys,
docs/admin.md). Signing in sets a signed, HttpOnly, ``SameSite=Strict`` cookie for
``/admin`` only, apart from the sessionwatch session (the admin is not a user and is
never listed). Its writes also require JSON and a same-origin ``Origin``: a page from
elsewhere cannot post them.
"""

from __future__ import annotations

import hmac
from typing import Any, Final

from itsdangerous import BadSignature, TimestampSigner
from quart import Quart, jsonify, redirect, render_template, request
from werkzeug.wrappers import Response as WerkzeugResponse

from .. import Code, ConfigurationError, InvalidPage, SessionWatch

__all__ = ["ADMIN_ACTOR", "ADMIN_COOKIE", "register_admin"]

ADMIN_COOKIE: Final = "demo_admin"
ADMIN_ACTOR: Final = "admin:demo"
_SIGNED_IN_FOR: Final = 8 * 3600  # seconds
_FEED_SIZE: Final = 50  # records per answer (per stream shard after a cursor)
_MAX_USERS: Final = 500  # the page lists at most this many users (pages of 100)
_MAX_ID: Final = 64


def _error(status: int, code: Code, message: str) -> Any:
    return jsonify({"error": code, "message": message}), status


def register_admin(app: Quart, watch: SessionWatch, password: str) -> None:
    """Serve ``/admin`` on ``app``, signed in with ``password``."""
    signer = TimestampSigner(app.config["SECRET_KEY"], salt="sessionwatch-demo-admin")

    def signed_in() -> bool:
        value = request.cookies.get(ADMIN_COOKIE, "")
        try:
            signer.unsign(value, max_age=_SIGNED_IN_FOR)
        except BadSignature:
            return False
        return True

    def refused_read() -> Any | None:
        if not signed_in():
            return _error(401, Code.NOT_SIGNED_IN, "Sign in to the admin page first.")
        return None

    def refused_write() -> Any | None:
        refused = refused_read()
        if refused is not None:
            return refused
        if request.headers.get("Origin") != request.host_url.rstrip("/"):
            return _error(403, Code.ORIGIN_FORBIDDEN, "Admin actions come from the admin page.")
        return None

    @app.get("/admin/login")
    async def admin_login_form() -> Any:
        return await render_template("admin_login.html", error=None)

    @app.post("/admin/login")
    async def admin_login() -> Any:
        form = await request.form
        given = str(form.get("password", "")).encode("utf-8", "replace")
        if not hmac.compare_digest(given, password.encode()):
            return await render_template("admin_login.html", error="Wrong password."), 401
        response: WerkzeugResponse = redirect("/admin")
        response.set_cookie(
            ADMIN_COOKIE,
            signer.sign("admin").decode(),
            max_age=_SIGNED_IN_FOR,
            path="/admin",
            secure=request.scheme == "https",
            httponly=True,
            samesite="Strict",
        )
        return response

    @app.post("/admin/logout")
    async def admin_logout() -> WerkzeugResponse:
        response: WerkzeugResponse = redirect("/admin/login")
        response.delete_cookie(ADMIN_COOKIE, path="/admin")
        return response

    @app.get("/admin")
    async def admin_page() -> Any:
        if not signed_in():
            return redirect("/admin/login")
        return await render_template("admin.html", user=None)

    @app.get("/admin/sessions")
    async def admin_sessions() -> Any:
        refused = refused_read()
        if refused is not None:
            return refused
        users: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            while len(users) < _MAX_USERS:
                page = await watch.list_every_user(cursor=cursor, limit=100)
                users += [entry.to_json() for entry in page.users]
                cursor = page.next_cursor
                if cursor is None:
                    break
        except InvalidPage as exc:  # not reached: the cursors are the backend's own
            return _error(400, Code.BAD_PAGE, str(exc))
        return jsonify({"users": users, "complete": cursor is None})

    @app.get("/admin/audit")
    async def admin_audit() -> Any:
        """The newest records (no ``cursor``) or those after ``cursor``, oldest first,
        and the cursor for the next poll."""
        refused = refused_read()
        if refused is not None:
            return refused
        try:
            feed = await watch.audit_feed(cursor=request.args.get("cursor"), count=_FEED_SIZE)
        except InvalidPage as exc:
            return _error(400, Code.BAD_PAGE, str(exc))
        return jsonify(feed.to_json())

    @app.post("/admin/revoke")
    async def admin_revoke() -> Any:
        refused = refused_write()
        if refused is not None:
            return refused
        body = await request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, Code.BAD_REQUEST, "The body must be a JSON object.")
        reason = body.get("reason") or "admin"
        session, user = body.get("session"), body.get("user")
        try:
            if isinstance(session, str) and 0 < len(session) <= _MAX_ID:
                if not await watch.revoke_session(session, reason=reason, actor=ADMIN_ACTOR):
                    return _error(404, Code.SESSION_NOT_FOUND, "No such live session.")
                return jsonify({"revoked": 1})
            if isinstance(user, str) and 0 < len(user) <= 256:
                count = await watch.revoke_user(user, reason=reason, actor=ADMIN_ACTOR)
                return jsonify({"revoked": count})
        except ConfigurationError as exc:  # the engine's check of the reason
            return _error(400, Code.BAD_REASON, str(exc))
        return _error(400, Code.BAD_REQUEST, "Give a session or a user.")
