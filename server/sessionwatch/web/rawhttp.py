"""``POST {url_prefix}/claim``, ``GET {url_prefix}/state`` (and the routes a higher
layer adds with :func:`add_route`: forward-auth's ``GET /verify``) on raw ASGI.

The claim is the hot path of every page load, and most of its CPU went to Quart's
per-request machinery (the request and its werkzeug ``Headers``, the request and app
contexts, URL matching, ``jsonify``, ``process_response``), not to the claim. This module
installs the app's ``asgi_http_class`` (the innermost ASGI layer: ASGI middleware around
the app and Quart's test client go through it) and answers these two routes from the
ASGI scope, with the very functions the Quart views use: the session interface's
``open_cookies`` / ``store`` / ``answer_headers``, the engine's ``claim`` and
``tab_status``, its refusals (:mod:`sessionwatch.core.refusals`) and the bodies of
:mod:`sessionwatch.web.routes`; nothing of the decision is written twice. Every other
request goes to Quart unchanged. A route added with :func:`add_route` answers through
:class:`RawRequest` (the facts, the session as Quart opens it, the error answers as
:func:`~sessionwatch.web.responses.error_response` writes them, the session's headers
after it), under the same conditions.

It takes a request only when its answer cannot differ from Quart's by a byte:

- the app registered nothing Quart would run for the route
  (:func:`sessionwatch.web.bypass.only_the_view`), the path routes to the view, which is
  still sessionwatch's, and the method is the route's (anything else, 405 included, is
  Quart's);
- the request carries no remember cookie (Quart's session opening may restore a session
  from it), unless the route defers a session its cookie names (a claim with a session
  cookie: it restores none);
- the request is not one Quart answers with an error that needs no backend: a claim
  without ``Content-Type: application/json`` (415) or from a foreign page (403
  ``origin_forbidden``, logged), and no claim or state request for which an error would
  be an HTML page (a navigation): those go to Quart before anything was read or changed
  (``/verify`` writes its page itself, with :func:`~sessionwatch.web.responses.error_page`
  as Quart's view does).

The errors it does answer itself are those after the claim or the session read began,
exactly as the extension's error handlers answer them: 503 ``backend_unavailable``,
429 ``rate_limited``, the 401 of an ended session. The request body is never read (the
views do not read it either). One difference is not observable in an answer: Quart
cancels a view when the client disconnects, this path completes the claim.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol, cast
from urllib.parse import parse_qsl, urlparse

# Quart internals this module relies on (checked against Quart 0.22.0): the app
# attribute ``asgi_http_class`` and ASGIHTTPConnection's constructor and __call__, how
# it derives the routed path and the remote address from the scope, how werkzeug parses
# ``request.args``, the scope key ``_quart._preserve_context`` of the test client, the
# endpoint names ``<blueprint>.<view>``, and those of sessionwatch.web.bypass.
from quart.asgi import ASGIHTTPConnection
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import parse_options_header

from ..backends.base import Timeouts
from ..core.config import Settings
from ..core.exceptions import BackendUnavailable
from ..core.origins import OriginRule
from ..core.policy import Policy
from ..core.refusals import BACKEND_UNAVAILABLE, REFUSED_ERRORS, Refusal, ended_refusal, refusal_for
from ..engine import RequestFacts, SessionEngine
from .bypass import only_the_view
from .requestfacts import ScopeHeaders, facts_of_scope
from .responses import error_fields, error_page, html_wanted, retry_after
from .routes import claim_answer, no_store, state_answer
from .sessions import ServerSession, ServerSessionInterface, copies_named

if TYPE_CHECKING:
    from quart import Quart
    from quart.blueprints import BlueprintSetupState
    from quart.sessions import SessionMixin

__all__ = ["Answer", "RawHost", "RawRequest", "RawView", "add_route", "install", "route_path"]

logger = logging.getLogger(__name__)

# (status, headers, body) of an answer.
Answer = tuple[int, list[tuple[str, str]], bytes]


class RawHost(Protocol):
    """What the raw routes need of the extension (which wires them)."""

    settings: Settings
    policy: Policy
    timeouts: Timeouts
    origins: OriginRule

    @property
    def engine(self) -> SessionEngine: ...


class RawRequest(Protocol):
    """What a route added with :func:`add_route` answers with (the connection)."""

    @property
    def path(self) -> str:
        """The routed path (as Quart's ``request.path``)."""

    @property
    def headers(self) -> ScopeHeaders: ...

    @property
    def scope(self) -> Any: ...

    def arg(self, name: str, default: str) -> str | None:
        """The first query argument ``name`` (as ``request.args.get``); ``None`` when
        the query string is not UTF-8 (Quart's request would raise: leave it Quart's)."""

    def args(self, name: str) -> list[str] | None:
        """Every query argument ``name`` (as ``request.args.getlist``); ``None`` as
        :meth:`arg`."""

    def facts(self) -> RequestFacts:
        """The request's facts (as ``SessionWatch.request_facts``)."""

    async def open_session(self, facts: RequestFacts) -> SessionMixin:
        """The request's session as Quart's ``open_session`` opens it (not deferred)."""

    def error(self, status: int, code: str, message: str | None = None, **fields: Any) -> Answer:
        """:func:`~sessionwatch.web.responses.error_response`'s answer."""

    def failed(self, error: Exception) -> Answer:
        """An unexpected error, answered as Quart answers it (or raised)."""

    def cookies_to_set(self, session: SessionMixin, facts: RequestFacts) -> list[tuple[str, str]]:
        """The ``Set-Cookie`` values :meth:`finish` will add (as
        ``SessionWatch.cookies_to_set``)."""

    async def finish(self, session: SessionMixin, facts: RequestFacts, answer: Answer) -> Answer:
        """``answer`` with the session stored and its headers, as ``save_session``."""


# A route's answer: ``None`` for Quart to answer it (only before anything was read or
# changed).
RawView = Callable[[RawRequest], Awaitable[Answer | None]]


class RawRoute(NamedTuple):
    """A route the raw path may answer: its method, endpoint, blueprint, the
    blueprint's one ``after_request`` and the view function Quart would run (the route
    is answered here only while both are still the app's), the answer, and whether the
    view defers a session its cookie names (Quart then restores none from a remember
    cookie)."""

    method: str
    endpoint: str
    blueprint: str
    after_request: Callable[..., Any]
    view: Callable[..., Any]
    answer: RawView
    defers: bool = False


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

    class Connection(_Connection):
        __slots__ = ()

    Connection.host = host
    Connection.interface = interface
    Connection.error_handlers = dict(error_handlers)
    Connection.routes = {}
    Connection.matched = {}
    app.asgi_http_class = Connection  # type: ignore[attr-defined]
    add_route(state, "/claim", "POST", "claim", no_store, _claim, defers=True)
    add_route(state, "/state", "GET", "state", no_store, _state)


def add_route(
    state: BlueprintSetupState,
    path: str,
    method: str,
    view: str,
    after_request: Callable[..., Any],
    answer: RawView,
    *,
    defers: bool = False,
) -> None:
    """Answer ``method {url_prefix}{path}``, the route of view ``view`` of the blueprint
    being registered (``state``, whose one ``after_request`` is ``after_request``), with
    ``answer`` on raw ASGI, when the app's HTTP connections are sessionwatch's (after
    the extension's blueprint was registered) and under the conditions above
    (``defers``: the view defers a session its cookie names)."""
    connection = getattr(state.app, "asgi_http_class", None)
    if not (isinstance(connection, type) and issubclass(connection, _Connection)):
        return
    endpoint = f"{state.name}.{view}"
    view_function = state.app.view_functions[endpoint]
    route = RawRoute(method, endpoint, state.name, after_request, view_function, answer, defers)
    connection.routes[(state.url_prefix or "") + path] = route


class _Connection:
    """One HTTP request of the app (Quart creates one per request)."""

    __slots__ = ("_app", "_facts", "_headers", "_path", "_scope")

    host: ClassVar[RawHost]  # these are set on the app's subclass by install()
    interface: ClassVar[ServerSessionInterface]
    error_handlers: ClassVar[dict[type[Exception], Callable[..., Any]]]
    routes: ClassVar[dict[str, RawRoute]]  # path -> route
    # (path, method, number of URL rules) -> whether it routes to the endpoint
    matched: ClassVar[dict[tuple[str, str, int], bool]]

    def __init__(self, app: Quart, scope: Any) -> None:
        self._app = app
        self._scope = scope
        self._path = ""
        self._headers: ScopeHeaders | None = None
        self._facts: RequestFacts | None = None

    async def __call__(self, receive: Any, send: Any) -> None:
        scope = self._scope
        path = route_path(scope)
        route = self.routes.get(path) if path is not None else None
        answer: Answer | None = None
        if (
            route is not None
            and scope.get("method") == route.method
            and self._plain(path, route)
            and not self._remembered(route)
        ):
            self._path = str(path)
            answer = await route.answer(self)
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

    def _plain(self, path: Any, route: RawRoute) -> bool:
        app, endpoint = self._app, route.endpoint
        if self._scope.get("_quart._preserve_context", False):
            return False  # a test client keeping the context for inspection
        if app.view_functions.get(endpoint) is not route.view:
            return False
        if not only_the_view(
            app,
            route.blueprint,
            after_request=route.after_request,
            session_interface=self.interface,
            error_handlers=self.error_handlers,
        ):
            return False
        key = (path, route.method, len(app.url_map._rules))  # new rules: match again
        routed = self.matched.get(key)
        if routed is None:
            try:
                adapter = app.url_map.bind("localhost")
                rule, _ = adapter.match(path, method=route.method, return_rule=True)
                routed = rule.endpoint == endpoint
            except HTTPException:
                routed = False
            self.matched[key] = routed
        return routed

    def _remembered(self, route: RawRoute) -> bool:
        """Whether a remember cookie may restore the request's session: only Quart's
        ``open_session`` does."""
        facts = self.facts()
        if route.defers and facts.cookies:
            return False  # the view defers the session its cookie names: it restores none
        name = self.interface.remember_cookie_name(self._app, facts.secure)
        return copies_named(self.headers.cookies, name) > 0

    # -- RawRequest -----------------------------------------------------------------------

    @property
    def path(self) -> str:
        return self._path

    @property
    def scope(self) -> Any:
        return self._scope

    @property
    def headers(self) -> ScopeHeaders:
        if self._headers is None:
            self._headers = ScopeHeaders(self._scope)
        return self._headers

    def arg(self, name: str, default: str) -> str | None:
        values = self.args(name)
        if values is None:
            return None
        return values[0] if values else default  # as request.args.get: the first

    def args(self, name: str) -> list[str] | None:
        query = bytes(self._scope.get("query_string", b""))
        try:
            text = query.decode()
        except UnicodeDecodeError:
            return None  # werkzeug's request.args raises: Quart's answer
        pairs = parse_qsl(text, keep_blank_values=True, errors="werkzeug.url_quote")
        return [value for key, value in pairs if key == name]

    def facts(self) -> RequestFacts:
        if self._facts is None:
            interface = self.interface
            self._facts = facts_of_scope(
                self._scope,
                self.headers,
                lambda secure: interface.cookie_name(self._app, secure),
                trust_forwarded_for=self.host.settings.trust_forwarded_for,
            )
        return self._facts

    async def open_session(self, facts: RequestFacts, *, defer: bool = False) -> SessionMixin:
        return await self.interface.open_cookies(
            list(facts.cookies), defer=defer, named=facts.cookies_named
        )

    def error(self, status: int, code: str, message: str | None = None, **fields: Any) -> Answer:
        headers = self.headers
        if html_wanted(headers.get(b"sec-fetch-mode"), headers.get(b"accept")):
            page = error_page(
                code, message, path=self._path, method=str(self._scope["method"])
            ).encode()
            kind = "text/html; charset=utf-8"
        else:
            page, kind = self._json(error_fields(code, message, **fields)), "application/json"
        answer = [("Content-Type", kind), ("Content-Length", str(len(page)))]
        return status, [*answer, ("Cache-Control", "no-store")], page

    def failed(self, error: Exception) -> Answer:
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

    def cookies_to_set(self, session: SessionMixin, facts: RequestFacts) -> list[tuple[str, str]]:
        if not isinstance(session, ServerSession):
            return []
        return self.interface.cookies_to_set(self._app, session, facts.secure)

    async def finish(self, session: SessionMixin, facts: RequestFacts, answer: Answer) -> Answer:
        # As Quart's process_response: the session is stored after the view, and its
        # headers come last.
        status, headers, body = answer
        if not isinstance(session, ServerSession):
            return answer
        interface = self.interface
        try:
            await interface.store(session)
        except BackendUnavailable as exc:  # as save_session: the answer becomes a 503
            logger.error("backend unavailable while saving the session: %s", exc)
            status, body = self._refusal(BACKEND_UNAVAILABLE)
            replaced = {"Content-Type": "application/json", "Content-Length": str(len(body))}
            headers = [(name, replaced.get(name, value)) for name, value in headers]
        return status, [*headers, *interface.answer_headers(self._app, session, facts.secure)], body

    # -- claim and state ------------------------------------------------------------------

    async def answer(self, *, claim: bool) -> Answer | None:
        """The answer to the claim or the state, or ``None`` for Quart to answer it
        (before anything was read or changed)."""
        host, headers_in = self.host, self.headers
        if html_wanted(headers_in.get(b"sec-fetch-mode"), headers_in.get(b"accept")):
            return None  # its errors are HTML pages: Quart's
        facts = self.facts()
        if claim:
            mimetype = parse_options_header(headers_in.get(b"content-type") or "")[0].lower()
            if mimetype != "application/json":
                return None  # Quart's 415
            if host.origins.foreign(facts.origin, facts.fetch_site, facts.own_origin) is not None:
                return None  # Quart's 403, logged
        session = await self.open_session(facts, defer=claim and bool(facts.cookies))
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
            status, headers, body = self.failed(exc)
        if headers is None:
            headers = [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                *extra,
            ]
        return await self.finish(session, facts, (status, headers, body))

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


async def _claim(request: RawRequest) -> Answer | None:
    return await cast("_Connection", request).answer(claim=True)


async def _state(request: RawRequest) -> Answer | None:
    return await cast("_Connection", request).answer(claim=False)


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
