"""The HTTP API under ``url_prefix`` (docs/protocol.md §2) and the client script."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Final

from quart import Blueprint, Response, has_request_context, jsonify, request, websocket

from .responses import ended_response, error_response

if TYPE_CHECKING:
    from .extension import SessionWatch

__all__ = ["CLIENT_FILES", "client_file", "create_blueprint", "origin_allowed", "own_origin"]

_CLIENT_ENDPOINTS: Final = frozenset(
    {"sessionwatch.client_js", "sessionwatch.client_css", "sessionwatch.client_i18n"}
)


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


# The browser client's files: URL under the prefix -> (file in client_js/, content type).
# The script fetches the stylesheet once at start, and a translation only for its language.
CLIENT_FILES: Final[dict[str, tuple[str, str]]] = {
    "client.js": ("sessionwatch.js", "text/javascript; charset=utf-8"),
    "client.css": ("sessionwatch.css", "text/css; charset=utf-8"),
    **{
        f"i18n/{lang}.json": (f"i18n/{lang}.json", "application/json")
        for lang in ("de", "es", "fr", "ja")
    },
}


@cache
def client_file(name: str) -> tuple[bytes, str]:
    """A file of the browser client (``client_js/<name>``) and its ETag, read once: from
    the checkout when there is one, else the copy the wheel ships in ``static/``."""
    checkout = Path(__file__).resolve().parents[2] / "client_js" / name
    packaged = resources.files(__package__).joinpath("static", *name.split("/"))
    if checkout.is_file():
        body = checkout.read_bytes()
    else:
        body = packaged.read_bytes() if packaged.is_file() else b""
    etag = hashlib.sha256(body).hexdigest()[:32]
    return body, etag


def client_script() -> tuple[bytes, str]:
    """The browser client and its ETag (read once)."""
    return client_file("sessionwatch.js")


def _client_file_response(url: str) -> Response:
    name, content_type = CLIENT_FILES[url]
    body, etag = client_file(name)
    if request.if_none_match.contains(etag):
        response = Response(b"", status=304)
    else:
        response = Response(body, content_type=content_type)
    response.set_etag(etag)
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def create_blueprint(watch: SessionWatch) -> Blueprint:
    """The blueprint of the HTTP API, bound to ``watch``."""
    bp = Blueprint("sessionwatch", __name__)

    @bp.after_request
    async def no_store(response: Response) -> Response:
        if request.endpoint not in _CLIENT_ENDPOINTS:
            response.headers["Cache-Control"] = "no-store"
        return response

    @bp.post("/claim")
    async def claim() -> Response:
        if request.mimetype != "application/json":
            return error_response(
                415, "bad_request", "POST /claim needs Content-Type: application/json"
            )
        origin = request.headers.get("Origin")
        if origin is not None and not origin_allowed(watch, origin, own_origin()):
            return error_response(403, "origin_forbidden")
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
        return _client_file_response("client.js")

    @bp.get("/client.css")
    async def client_css() -> Response:
        return _client_file_response("client.css")

    @bp.get("/i18n/<lang>.json")
    async def client_i18n(lang: str) -> Response:
        url = f"i18n/{lang}.json"
        if url not in CLIENT_FILES:
            return error_response(404, "not_found", f"no bundled translation {lang!r}")
        return _client_file_response(url)

    return bp
