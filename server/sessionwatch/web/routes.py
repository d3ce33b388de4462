"""The HTTP API under ``url_prefix`` (docs/protocol.md §2) and the client script."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Final, Protocol

from quart import Blueprint, Response, has_request_context, jsonify, request, websocket

from ..backends.base import Claim, SessionRecord, Timeouts
from ..core.codes import Code
from ..core.origins import OriginRule, own_origin_of
from ..core.policy import Policy
from ..core.tabs import TAB_HEADER
from ..engine import SessionEngine
from .responses import ended_response, error_response
from .sessions import ServerSession

__all__ = [
    "CLIENT_FILES",
    "RoutesHost",
    "claim_answer",
    "client_file",
    "create_blueprint",
    "no_store",
    "own_origin",
    "state_answer",
]

_CLIENT_ENDPOINTS: Final = frozenset(
    {"sessionwatch.client_js", "sessionwatch.client_css", "sessionwatch.client_i18n"}
)


def own_origin() -> str:
    """The app's own origin as this request or WebSocket handshake sees it
    (scheme://host[:port]; ws maps to http, wss to https)."""
    connection = request if has_request_context() else websocket
    return own_origin_of(connection.scheme, connection.host)


class RoutesHost(Protocol):
    """What the HTTP API needs of the extension (which wires it)."""

    policy: Policy
    timeouts: Timeouts
    origins: OriginRule

    @property
    def engine(self) -> SessionEngine: ...

    def current_session(self) -> ServerSession: ...

    def refuse_foreign(self, action: str) -> None: ...

    async def claim_tab(self) -> tuple[str, Claim]: ...

    def tab_status(self, record: SessionRecord, token: str | None) -> str: ...

    def active_tab_required(
        self, view: Callable[..., Awaitable[Response]]
    ) -> Callable[..., Awaitable[Response]]: ...

    async def list_sessions(
        self, user_id: str, *, cursor: str | None = ..., limit: str | int | None = ...
    ) -> Any: ...

    async def revoke_session(
        self, session_id: str, *, reason: str = ..., user_id: str | None = ...
    ) -> bool: ...

    async def revoke_user(
        self, user_id: str, *, except_current: bool = ..., reason: str = ...
    ) -> int: ...


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
    checkout = Path(__file__).resolve().parents[3] / "client_js" / name
    packaged = resources.files("sessionwatch").joinpath("static", *name.split("/"))  # the wheel
    if checkout.is_file():
        body = checkout.read_bytes()
    else:
        body = packaged.read_bytes() if packaged.is_file() else b""
    etag = hashlib.sha256(body).hexdigest()[:32]
    return body, etag


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


async def no_store(response: Response) -> Response:
    """The blueprint's ``after_request``: its answers (but the client files) are never
    stored by a cache."""
    if request.endpoint not in _CLIENT_ENDPOINTS:
        response.headers["Cache-Control"] = "no-store"
    return response


def claim_answer(
    token: str, result: Claim, session: ServerSession, *, exclusive: bool
) -> dict[str, Any]:
    """The body of ``200 POST /claim`` (docs/protocol.md §2), for the Quart route and
    the raw HTTP path alike."""
    return {
        "tab": token,
        "gen": result.gen,
        "exclusive": exclusive,
        "expires_at": result.expires_at,
        "session": session.public_id,
        "user": session.record.user if session.record else None,
    }


def state_answer(
    record: SessionRecord, tab: str, *, idle_ms: int, exclusive: bool
) -> dict[str, Any]:
    """The body of ``200 GET /state`` for a live session (``tab``: the calling tab's
    status), for the Quart route and the raw HTTP path alike."""
    return {
        "session": record.id,
        "user": record.user,
        "expires_at": record.expires_at(idle_ms),
        "gen": record.gen,
        "exclusive": exclusive,
        "tab": tab,
        "by": record.claimed_by,
    }


def create_blueprint(watch: RoutesHost) -> Blueprint:
    """The blueprint of the HTTP API, bound to ``watch`` (the extension). The extension
    adds the WebSocket endpoint to it."""
    bp = Blueprint("sessionwatch", __name__)

    bp.after_request(no_store)

    @bp.post("/claim")
    async def claim() -> Response:
        if request.mimetype != "application/json":
            return error_response(
                415, Code.BAD_REQUEST, "POST /claim needs Content-Type: application/json"
            )
        watch.refuse_foreign("claim")  # 403 origin_forbidden (Origin or Sec-Fetch-Site)
        token, result = await watch.claim_tab()
        session = watch.current_session()
        return jsonify(claim_answer(token, result, session, exclusive=watch.policy.exclusive_tabs))

    @bp.get("/state")
    async def state() -> Response:
        session = watch.current_session()
        record = session.record
        if record is None:
            return ended_response(session.ended)
        tab = watch.tab_status(record, request.headers.get(TAB_HEADER))
        return jsonify(
            state_answer(
                record, tab, idle_ms=watch.timeouts.idle, exclusive=watch.policy.exclusive_tabs
            )
        )

    @bp.post("/extend")
    @watch.active_tab_required
    async def extend() -> Response:
        session = watch.current_session()
        assert session.record is not None  # guaranteed by active_tab_required
        found = await watch.engine.extend(session.record.id)
        if found.record is None:
            return ended_response(found.ended)
        return jsonify({"expires_at": found.record.expires_at(watch.timeouts.idle)})

    @bp.get("/sessions")
    async def sessions() -> Response:
        session = watch.current_session()
        if session.record is None or session.record.user is None:
            return error_response(401, Code.NOT_SIGNED_IN)
        page = await watch.list_sessions(
            session.record.user,
            cursor=request.args.get("cursor"),
            limit=request.args.get("limit"),
        )
        return jsonify(
            {
                "sessions": [info.to_json() for info in page.sessions],
                "next_cursor": page.next_cursor,
            }
        )

    @bp.delete("/sessions/<string:session_id>")
    @watch.active_tab_required
    async def revoke(session_id: str) -> Response:
        user = watch.current_session().record.user  # type: ignore[union-attr]
        if user is None or len(session_id) > 64:
            return error_response(404, Code.SESSION_NOT_FOUND)
        if not await watch.revoke_session(session_id, user_id=user):
            return error_response(404, Code.SESSION_NOT_FOUND)
        return jsonify({"revoked": 1})

    @bp.post("/sessions/revoke-others")
    @watch.active_tab_required
    async def revoke_others() -> Response:
        user = watch.current_session().record.user  # type: ignore[union-attr]
        if user is None:
            return error_response(401, Code.NOT_SIGNED_IN)
        count = await watch.revoke_user(user, except_current=True)
        return jsonify({"revoked": count})

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
            return error_response(404, Code.NOT_FOUND, f"no bundled translation {lang!r}")
        return _client_file_response(url)

    return bp
