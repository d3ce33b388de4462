"""The HTTP API under ``url_prefix`` (docs/protocol.md §2) and the client script."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from quart import Blueprint, Response, has_request_context, jsonify, request, websocket

from .responses import ended_response, error_response

if TYPE_CHECKING:
    from .extension import SessionWatch

__all__ = ["create_blueprint", "origin_allowed", "own_origin"]


def own_origin() -> str:
    """The app's own origin as this request or WebSocket handshake sees it
    (scheme://host[:port]; ws maps to http, wss to https)."""
    connection = request if has_request_context() else websocket
    scheme = "https" if connection.scheme in ("https", "wss") else "http"
    return f"{scheme}://{connection.host}"


def origin_allowed(watch: SessionWatch, origin: str | None, own: str) -> bool:
    """Exact match against the allow-list (default: the app's own origin only)."""
    if origin is None:
        return watch.settings.allow_missing_origin
    allowed = watch.settings.allowed_origins or (own,)
    return origin in allowed


@cache
def client_script() -> tuple[bytes, str]:
    """The browser client and its ETag (read once)."""
    candidates = [
        Path(__file__).resolve().parents[2] / "client_js" / "sessionwatch.js",  # a checkout
    ]
    packaged = resources.files(__package__).joinpath("static", "sessionwatch.js")
    for path in candidates:
        if path.is_file():
            body = path.read_bytes()
            break
    else:
        body = packaged.read_bytes() if packaged.is_file() else b""
    etag = hashlib.sha256(body).hexdigest()[:32]
    return body, etag


def create_blueprint(watch: SessionWatch) -> Blueprint:
    """The blueprint of the HTTP API, bound to ``watch``."""
    bp = Blueprint("sessionwatch", __name__)

    @bp.after_request
    async def no_store(response: Response) -> Response:
        if request.endpoint != "sessionwatch.client_js":
            response.headers["Cache-Control"] = "no-store"
        return response

    @bp.post("/claim")
    async def claim() -> Response:
        if request.mimetype != "application/json":
            return error_response(
                415, "bad_request", "POST /claim needs Content-Type: application/json"
            )
        watch.refuse_foreign("claim")  # 403 origin_forbidden (Origin or Sec-Fetch-Site)
        token, result = await watch.claim_tab()
        if watch.metrics is not None:
            watch.metrics.claimed()
        session = watch.current_session()
        return jsonify(
            {
                "tab": token,
                "gen": result.gen,
                "exclusive": watch.policy.exclusive_tabs,
                "expires_at": result.expires_at,
                "session": session.public_id,
                "user": session.record.user if session.record else None,
            }
        )

    @bp.get("/state")
    async def state() -> Response:
        session = watch.current_session()
        record = session.record
        if record is None:
            return ended_response(session.ended)
        return jsonify(
            {
                "session": record.id,
                "user": record.user,
                "expires_at": record.expires_at(watch.timeouts.idle),
                "gen": record.gen,
                "exclusive": watch.policy.exclusive_tabs,
                "tab": watch.tab_status(record, request.headers.get("X-SessionWatch-Tab")),
                "by": record.claimed_by,
            }
        )

    @bp.post("/extend")
    @watch.active_tab_required
    async def extend() -> Response:
        session = watch.current_session()
        assert session.record is not None  # guaranteed by active_tab_required
        found = await watch.backend.extend(
            session.record.id, timeouts=watch.timeouts, now=watch.now_ms()
        )
        if found.record is None:
            return ended_response(found.ended)
        return jsonify({"expires_at": found.record.expires_at(watch.timeouts.idle)})

    @bp.get("/sessions")
    async def sessions() -> Response:
        session = watch.current_session()
        if session.record is None or session.record.user is None:
            return error_response(401, "not_signed_in")
        infos = await watch.list_sessions(session.record.user)
        return jsonify({"sessions": [info.to_json() for info in infos]})

    @bp.delete("/sessions/<string:session_id>")
    @watch.active_tab_required
    async def revoke(session_id: str) -> Response:
        user = watch.current_session().record.user  # type: ignore[union-attr]
        if user is None or len(session_id) > 64:
            return error_response(404, "session_not_found")
        if not await watch.revoke_session(session_id, user_id=user):
            return error_response(404, "session_not_found")
        return jsonify({"revoked": 1})

    @bp.post("/sessions/revoke-others")
    @watch.active_tab_required
    async def revoke_others() -> Response:
        user = watch.current_session().record.user  # type: ignore[union-attr]
        if user is None:
            return error_response(401, "not_signed_in")
        count = await watch.revoke_user(user, except_current=True)
        return jsonify({"revoked": count})

    from .websocket import register_websocket  # here: websocket.py imports this module

    register_websocket(bp, watch)

    @bp.get("/client.js")
    async def client_js() -> Response:
        body, etag = client_script()
        if request.if_none_match.contains(etag):
            response = Response(b"", status=304)
        else:
            response = Response(body, content_type="text/javascript; charset=utf-8")
        response.set_etag(etag)
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    return bp
