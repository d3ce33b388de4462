"""The admin scope of the session API: ``{url_prefix}/api/v1/admin`` (docs/admin.md).

Support staff and their tools list any user's live sessions and revoke them. Every call
needs ``Authorization: Bearer <key>`` with one of ``SESSIONWATCH_ADMIN_KEYS`` (its own
keys, each with a name); a session API key is a valid key of another scope (403
``admin_key_required``), anything else 401. The same door rules as the session API hold
(its address only, no browser). A revocation goes through the session engine like every
other, so the tabs are told ``revoked{reason}`` live, and its audit line names the key's
name as the ``actor``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from quart import Blueprint, Response, g, jsonify, request

from ..core.codes import Code
from ..core.config import parse_address
from ..engine.roster import roster, session_json
from .api_callers import check_caller
from .api_input import (
    ApiError,
    bad_request,
    optional,
    public_id_field,
    read_body,
    reason_field,
    user_field,
)
from .session_api import register_api_errors

if TYPE_CHECKING:
    from ..web.extension import SessionWatch

__all__ = ["ADMIN_REASON", "create_admin_api_blueprint"]

ADMIN_REASON: Final = "admin"  # what a revoked tab is told when the admin gives none


def _reason(value: object) -> str:
    return reason_field(value, Code.BAD_REASON)


def create_admin_api_blueprint(watch: SessionWatch) -> Blueprint:
    """The admin API bound to ``watch`` (mount under ``{url_prefix}/api/v1/admin``)."""
    bp = Blueprint("sessionwatch_admin", __name__)
    settings = watch.settings
    api_address = parse_address(settings.api_address) if settings.api_address else None
    admins = settings.admin_key_list

    @bp.before_request
    async def authenticate() -> Response | None:
        caller = check_caller(
            [key.secret for key in admins],
            disabled=Code.ADMIN_DISABLED,
            api_address=api_address,
            other_scope=settings.api_keys,
            other_scope_code=Code.ADMIN_KEY_REQUIRED,
        )
        if isinstance(caller, Response):
            return caller
        g.sessionwatch_admin = admins[caller].name
        return None

    register_api_errors(bp)

    @bp.get("/sessions")
    async def sessions() -> Response:
        """One user's sessions (``?user=``), or every user's, a page of users at a time."""
        cursor, limit = request.args.get("cursor"), request.args.get("limit")
        user = request.args.get("user")
        if user is not None:
            page = await watch.engine.list_sessions(user_field(user), cursor=cursor, limit=limit)
            listed = [session_json(info) for info in page.sessions]
            return jsonify({"user": user, "sessions": listed, "next_cursor": page.next_cursor})
        found = await roster(watch.engine, cursor=cursor, limit=limit)
        return jsonify(
            {"users": [entry.to_json() for entry in found.users], "next_cursor": found.next_cursor}
        )

    @bp.post("/revoke")
    async def revoke() -> Response:
        """One session (``session``), or a user's (``user``, but ``except_session``)."""
        body = await read_body(
            {
                "session": optional(public_id_field("session")),
                "user": optional(user_field),
                "except_session": optional(public_id_field("except_session")),
                "reason": optional(_reason),
            }
        )
        reason = body["reason"] or ADMIN_REASON
        name = g.sessionwatch_admin
        actor = f"admin:{name}"  # the trail's and the audit line's (core/trail.ACTOR_RE)
        if body["session"] is not None:
            if body["user"] is not None or body["except_session"] is not None:
                raise bad_request("give session, or user (with except_session), not both")
            ended = await watch.engine.revoke_session(body["session"], reason=reason, actor=actor)
            if not ended:
                raise ApiError(404, Code.SESSION_NOT_FOUND)
            return jsonify({"revoked": 1, "actor": name})
        if body["user"] is None:
            raise bad_request("give session (one session) or user (all, or all but except_session)")
        count = await watch.engine.revoke_user(
            body["user"],
            except_id=body["except_session"],
            reason=reason,
            via="admin_api",
            actor=actor,
        )
        return jsonify({"revoked": count, "actor": name})

    return bp
