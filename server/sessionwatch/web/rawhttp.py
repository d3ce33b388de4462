"""``POST {url_prefix}/claim`` and ``GET {url_prefix}/state`` on raw ASGI.

The claim is the hot path of every page load, and most of its CPU went to Quart's
per-request machinery (the request and its werkzeug ``Headers``, the request and app
contexts, URL matching, ``jsonify``, ``process_response``), not to the claim. This module
installs the app's ``asgi_http_class`` (the innermost ASGI layer: ASGI middleware around
the app and Quart's test client go through it) and answers these two routes from the
ASGI scope, with the very functions the Quart views use: the session interface's
``open_cookies`` / ``store`` / ``answer_headers``, the engine's ``claim`` and
``tab_status``, its refusals (:mod:`sessionwatch.core.refusals`) and the bodies of
:mod:`sessionwatch.web.routes`; nothing of the decision is written twice. Every other request goes to Quart unchanged.

It takes a request only when its answer cannot differ from Quart's by a byte:

- the app registered nothing Quart would run for the route
  (:func:`sessionwatch.web.bypass.only_the_view`), the path routes to the view, which is
  still sessionwatch's, and the method is the route's (anything else, 405 included, is
  Quart's);
- the request carries no remember cookie, unless it is a claim with a session cookie
  (Quart's session opening may restore a session from it; a claim defers its session);
- the request is not one Quart answers with an error that needs no backend: a claim
  without ``Content-Type: application/json`` (415) or from a foreign page (403
  ``origin_forbidden``, logged), and no request for which an error would be an HTML page
  (a navigation): those go to Quart before anything was read or changed.

The errors it does answer itself are those after the claim or the session read began,
exactly as the extension's error handlers answer them: 503 ``backend_unavailable``,
429 ``rate_limited``, the 401 of an ended session. The request body is never read (the
views do not read it either). One difference is not observable in an answer: Quart
cancels a view when the client disconnects, this path completes the claim.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol
from urllib.parse import urlparse

# Quart internals this module relies on (checked against Quart 0.22.0): the app
# attribute ``asgi_http_class`` and ASGIHTTPConnection's constructor and __call__, how
# it derives the routed path and the remote address from the scope, the scope key
# ``_quart._preserve_context`` of the test client, the endpoint names
# ``<blueprint>.claim`` / ``<blueprint>.state``, and those of sessionwatch.web.bypass.
from quart.asgi import ASGIHTTPConnection
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import parse_options_header

from ..backends.base import Timeouts
from ..core.config import Settings
from ..core.exceptions import BackendUnavailable
from ..core.origins import OriginRule
from ..core.policy import Policy
from ..core.refusals import BACKEND_UNAVAILABLE, REFUSED_ERRORS, Refusal, ended_refusal, refusal_for
from ..engine import SessionEngine
from .bypass import only_the_view
from .requestfacts import ScopeHeaders, facts_of_scope
from .responses import html_wanted, retry_after
from .routes import claim_answer, no_store, state_answer
from .sessions import ServerSession, ServerSessionInterface, copies_named

if TYPE_CHECKING:
    from quart import Quart
    from quart.blueprints import BlueprintSetupState

__all__ = ["RawHost", "install", "route_path"]

logger = logging.getLogger(__name__)

Answer = tuple[int, list[tuple[str, str]], bytes]


class RawHost(Protocol):
    """What the raw routes need of the extension (which wires them)."""

    settings: Settings
    policy: Policy
    timeouts: Timeouts
    origins: OriginRule

    @property
    def engine(self) -> SessionEngine: ...


def install(
    state: BlueprintSetupState,
    host: RawHost,
    interface: ServerSessionInterface,
    error_handlers: Mapping[type[Exception], Callable[..., Any]],
) -> None:
    """Make the app's HTTP connections :class:`_Connection` (unless the app brought its
    own class: then it is left alone and Quart serves every route).

    Args:
        host: the extension.
        interface: its session interface.
        error_handlers: the handlers it registered app-wide (for the raw path to be
            taken, they must still be the app's).
    """
    app = state.app
    if getattr(app, "asgi_http_class", None) is not ASGIHTTPConnection:
        return
    prefix = state.url_prefix or ""
    claim, view_state = f"{state.name}.claim", f"{state.name}.state"

    class Connection(_Connection):
        __slots__ = ()

    Connection.host = host
    Connection.interface = interface
    Connection.blueprint = state.name
    Connection.error_handlers = dict(error_handlers)
    Connection.routes = {prefix + "/claim": ("POST", claim), prefix + "/state": ("GET", view_state)}
    Connection.views = {
        claim: app.view_functions[claim],
        view_state: app.view_functions[view_state],
    }
    Connection.matched = {}
    app.asgi_http_class = Connection  # type: ignore[attr-defined]


class _Connection:
    """One HTTP request of the app (Quart creates one per request)."""

    __slots__ = ("_app", "_scope")

    host: ClassVar[RawHost]  # these are set on the app's subclass by install()
    interface: ClassVar[ServerSessionInterface]
    blueprint: ClassVar[str]
    error_handlers: ClassVar[dict[type[Exception], Callable[..., Any]]]
    routes: ClassVar[dict[str, tuple[str, str]]]  # path -> (method, endpoint)
    views: ClassVar[dict[str, Callable[..., Any]]]
    # (path, method, number of URL rules) -> whether it routes to the endpoint
    matched: ClassVar[dict[tuple[str, str, int], bool]]

    def __init__(self, app: Quart, scope: Any) -> None:
        self._app = app
        self._scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        scope = self._scope
        path = route_path(scope)
        route = self.routes.get(path) if path is not None else None
        answer: Answer | None = None
        if route is not None and scope.get("method") == route[0] and self._plain(path, route):
            answer = await self._answer(route[1])
        if answer is None:
            await ASGIHTTPConnection(self._app, scope)(receive, send)
            return
        status, headers, body = answer
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(name.lower().encode(), value.encode()) for name, value in headers],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    # -- whether this path may answer -------------------------------------------------

    def _plain(self, path: Any, route: tuple[str, str]) -> bool:
        app, (method, endpoint) = self._app, route
        if self._scope.get("_quart._preserve_context", False):
            return False  # a test client keeping the context for inspection
        if app.view_functions.get(endpoint) is not self.views[endpoint]:
            return False
        if not only_the_view(
            app,
            self.blueprint,
            after_request=no_store,
            session_interface=self.interface,
            error_handlers=self.error_handlers,
        ):
            return False
        key = (path, method, len(app.url_map._rules))  # new rules: match again
        routed = self.matched.get(key)
        if routed is None:
            try:
                adapter = app.url_map.bind("localhost")
                rule, _ = adapter.match(path, method=method, return_rule=True)
                routed = rule.endpoint == endpoint
            except HTTPException:
                routed = False
            self.matched[key] = routed
        return routed

    # -- the answer ---------------------------------------------------------------------

    async def _answer(self, endpoint: str) -> Answer | None:
        """The answer to the request, or ``None`` for Quart to answer it (before
        anything was read or changed)."""
        scope, host = self._scope, self.host
        headers_in = ScopeHeaders(scope)
        if html_wanted(headers_in.get(b"sec-fetch-mode"), headers_in.get(b"accept")):
            return None  # its errors are HTML pages: Quart's
        claim = endpoint.endswith(".claim")
        interface = self.interface
        facts = facts_of_scope(
            scope,
            headers_in,
            lambda secure: interface.cookie_name(self._app, secure),
            trust_forwarded_for=host.settings.trust_forwarded_for,
        )
        if not (claim and facts.cookies) and copies_named(
            headers_in.cookies, interface.remember_cookie_name(self._app, facts.secure)
        ):
            return None  # a remember cookie may restore a session: Quart's open_session does
        if claim:
            mimetype = parse_options_header(headers_in.get(b"content-type") or "")[0].lower()
            if mimetype != "application/json":
                return None  # Quart's 415
            if host.origins.foreign(facts.origin, facts.fetch_site, facts.own_origin) is not None:
                return None  # Quart's 403, logged
        session = await interface.open_cookies(
            list(facts.cookies), defer=claim and bool(facts.cookies), named=facts.cookies_named
        )
        status, body, extra = 200, b"", []
        headers: list[tuple[str, str]] | None = None
        engine = host.engine
        try:
            if not isinstance(session, ServerSession):  # the backend could not be reached
                raise session.error  # type: ignore[attr-defined]
            if claim:
                token, result = await engine.claim(session, facts.user_agent, facts.address)
                answer = claim_answer(token, result, session, exclusive=host.policy.exclusive_tabs)
                body = self._json(answer)
            elif session.record is None:
                status, body = self._refusal(ended_refusal(session.ended))
            else:
                tab = engine.tab_status(session.record, facts.tab)
                exclusive = host.policy.exclusive_tabs
                answer = state_answer(
                    session.record, tab, idle_ms=host.timeouts.idle, exclusive=exclusive
                )
                body = self._json(answer)
        except REFUSED_ERRORS as exc:  # as the extension's error handler
            if isinstance(exc, BackendUnavailable):
                logger.error("backend unavailable: %s", exc)
            refusal = refusal_for(exc)
            assert refusal is not None  # every REFUSED_ERRORS has one
            status, body = self._refusal(refusal)
            if refusal.retry_after is not None:
                extra = [("Retry-After", retry_after(refusal.retry_after))]
        except Exception as exc:
            status, headers, body = self._failed(exc)
        if headers is None:
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                *extra,
            ]
        # As Quart's process_response: the session is stored after the view, and its
        # headers come last.
        if isinstance(session, ServerSession):
            try:
                await interface.store(session)
            except BackendUnavailable as exc:  # as save_session: the answer becomes a 503
                logger.error("backend unavailable while saving the session: %s", exc)
                status, body = self._refusal(BACKEND_UNAVAILABLE)
                replaced = {"Content-Type": "application/json", "Content-Length": str(len(body))}
                headers = [(name, replaced.get(name, value)) for name, value in headers]
            headers.extend(interface.answer_headers(self._app, session, facts.secure))
        return status, headers, body

    def _refusal(self, refusal: Refusal) -> tuple[int, bytes]:
        return refusal.status, self._json(refusal.to_json())

    def _json(self, value: dict[str, Any]) -> bytes:
        """``value`` as ``jsonify`` writes it (compact, the app's JSON provider)."""
        provider: Any = self._app.json
        if (provider.compact is None and self._app.debug) or provider.compact is False:
            text = provider.dumps(value, indent=2)
        else:
            text = provider.dumps(value, separators=(",", ":"))
        return f"{text}\n".encode()

    def _failed(self, error: Exception) -> tuple[int, list[tuple[str, str]], bytes]:
        """An unexpected error, handled as Quart handles it: raised where exceptions
        propagate (testing, debug), else logged and answered with the plain 500 page."""
        app, scope = self._app, self._scope
        propagate = app.config["PROPAGATE_EXCEPTIONS"]
        if propagate is None:
            propagate = app.testing or app.debug
        if propagate:
            raise error
        app.logger.error(f"Exception on request {scope['method']} {scope['path']}", exc_info=error)
        response = InternalServerError(original_exception=error).get_response()
        headers = [*response.headers.items(), ("Cache-Control", "no-store")]
        return response.status_code, headers, response.get_data()


def route_path(scope: Any) -> str | None:
    """The path Quart routes (as ``ASGIHTTPConnection`` and ``ASGIWebsocketConnection``
    derive it), or ``None`` for a path Quart would not route."""
    try:
        path = str(scope["path"])
        path = path if path[0] == "/" else urlparse(path).path
        root_path = str(scope.get("root_path", ""))
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    if root_path != "":
        if path == root_path or not path.startswith(root_path):
            return None
        path = path.removeprefix(root_path)
    return path
