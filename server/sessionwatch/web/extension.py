"""The Quart extension: wires settings, backend, sessions, policy and routes together."""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, ParamSpec, TypeVar

from quart import (
    Blueprint,
    Quart,
    Response,
    current_app,
    has_request_context,
    has_websocket_context,
    request,
    websocket,
)
from quart import session as quart_session

from ..backends import Backend, backend_from_url
from ..backends.base import Claim, SessionRecord, Timeouts
from ..backends.connector import BackendConnector
from ..core import devices
from ..core.audit import MAX_USER_ID as MAX_USER_ID  # public: the session API's bound
from ..core.audit import check_user_id, security_event
from ..core.config import Settings
from ..core.events import Device
from ..core.exceptions import (
    BackendUnavailable,
    ConfigurationError,
    CookieConflict,
    InvalidPage,
    OriginForbidden,
    RateLimited,
    SessionLimitReached,
)
from ..core.limits import AddressLimits, LoginLimits
from ..core.origins import OriginRule, is_unsafe_method
from ..core.paging import PageCursor, page_size
from ..core.policy import Policy
from ..core.tabs import (
    TAB_FORM_FIELD,
    TAB_HEADER,
    TabStatus,
    make_tab_token,
    new_tab_key,
    tab_status,
    verify_tab_token,
)
from ..core.tokens import CookieSigner, new_session_id, public_id, user_tag
from ..live import asgi
from ..live.endpoint import register_websocket
from ..live.gates import SocketGates
from ..live.hub import Hub
from . import hosts, rawhttp
from .responses import ended_response, error_response, retry_after
from .routes import create_blueprint, own_origin
from .sessions import COOKIE_CONFLICT, ServerSession, ServerSessionInterface, UnavailableSession
from .shared_limits import DeploymentLimits

__all__ = ["SessionInfo", "SessionList", "SessionWatch", "TabStatus"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

REASON_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


def _check_user_id(user_id: object) -> None:
    try:
        check_user_id(user_id)
    except ValueError:
        security_event("login_refused", logging.WARNING, reason="bad_user_id")
        raise


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One of a user's sessions, as the sessions API shows it (no secrets)."""

    id: str
    user: str | None
    browser: str
    os: str
    place: str
    created: int
    last_seen: int
    expires_at: int
    live_tabs: int
    current: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "current": self.current,
            "browser": self.browser,
            "os": self.os,
            "place": self.place,
            "created": self.created,
            "last_seen": self.last_seen,
            "expires_at": self.expires_at,
            "live_tabs": self.live_tabs,
        }


@dataclass(frozen=True, slots=True)
class SessionList:
    """One page of a user's sessions (:meth:`SessionWatch.list_sessions`), oldest
    first; ``next_cursor`` asks for the next page, ``None`` when this is the last."""

    sessions: list[SessionInfo]
    next_cursor: str | None


class SessionWatch:
    """Server-enforced sessions, tab claims and live push for a Quart app.

    Args:
        app: the app, or ``None`` to call :meth:`init_app` later.
        backend: a backend URL (``memory://``, ``redis://…``) or a backend object.
        policy: the :class:`Policy` to enforce.
        clock: seconds since the epoch (injectable for tests).
        place_resolver: ``ip -> "City, Country"`` for device descriptions (GeoIP).
        **options: any :class:`~sessionwatch.core.config.Settings` field; each can also be
            set as ``app.config["SESSIONWATCH_<NAME>"]`` (the keyword wins).

    Raises:
        ConfigurationError: an option, the backend URL or the secret key is invalid.
    """

    def __init__(
        self,
        app: Quart | None = None,
        *,
        backend: str | Backend | None = None,
        policy: Policy | None = None,
        clock: Callable[[], float] | None = None,
        place_resolver: devices.PlaceResolver | None = None,
        **options: Any,
    ) -> None:
        if backend is not None and not isinstance(backend, str):
            self._backend_object: Backend | None = backend
        else:
            self._backend_object = None
            if backend is not None:
                options["backend"] = backend
        self._options = options
        self.policy = policy or Policy()
        self.clock = clock or time.time
        self.place_resolver = place_resolver
        self.settings = Settings.resolve(options, {})
        self._backend: Backend | None = self._backend_object
        self._signer: CookieSigner | None = None
        self.app: Quart | None = None
        self.blueprint: Blueprint | None = None
        self.claim_path = ""  # set by init_app
        self.hub: Hub | None = None  # the live-push hub (set by init_app)
        self.gates: SocketGates | None = None  # the WebSocket door's (set by init_app)
        self.address_limits: AddressLimits | None = None  # the gates' (set by init_app)
        self.login_limits = self._login_limits()  # set again by init_app
        self.origins = OriginRule.from_settings(self.settings)  # set again by init_app
        # Called on every tab claim served (the service counts them).
        self.on_claim: Callable[[], None] | None = None
        if app is not None:
            self.init_app(app)

    # -- set-up ----------------------------------------------------------------------

    def init_app(self, app: Quart) -> None:
        """Install the session interface, routes and start-up/shut-down hooks."""
        self.settings = Settings.resolve(self._options, app.config)
        if self._backend_object is None:
            self._backend = backend_from_url(
                self.settings.backend,
                key_prefix=self.settings.key_prefix,
                clock=self.clock,
                durable_ends=self.settings.durable_ends,
                durable_ends_timeout=self.settings.durable_ends_timeout,
            )
        keys: list[str | bytes] = []
        keys.extend(self.settings.secret_keys)
        if not keys:
            keys.extend(app.config.get("SECRET_KEY_FALLBACKS") or [])
            if app.config.get("SECRET_KEY"):
                keys.append(app.config["SECRET_KEY"])
        self._signer = CookieSigner(keys)
        self.timeouts = Timeouts(
            idle=int(self.settings.idle_timeout * 1000),
            absolute=int(self.settings.absolute_timeout * 1000),
            refresh=int(self.settings.refresh_every * 1000),
            tombstone=int(self.settings.tombstone_ttl * 1000),
        )
        self.origins = OriginRule.from_settings(self.settings)
        self.login_limits = self._login_limits()
        self.deployment_limits = DeploymentLimits(self.backend, self.settings)
        interface = ServerSessionInterface(self)
        app.session_interface = interface  # type: ignore[assignment]
        app.extensions["sessionwatch"] = self
        app.register_error_handler(BackendUnavailable, self._backend_unavailable)
        app.register_error_handler(SessionLimitReached, self._limit_reached)
        app.register_error_handler(OriginForbidden, self._origin_forbidden)
        app.register_error_handler(RateLimited, self._rate_limited)
        app.register_error_handler(CookieConflict, self._cookie_conflict)
        app.register_error_handler(InvalidPage, self._invalid_page)
        app.while_serving(self._serving)
        hub = Hub(
            self.backend,
            self.settings,
            self.timeouts,
            self.now_ms,
            exclusive_tabs=self._exclusive_tabs,
        )
        self.hub = hub
        gates = self.gates = SocketGates(self.settings)
        self.address_limits = gates.address_limits  # new sessions here, sockets at the door
        self.blueprint = create_blueprint(self)
        register_websocket(
            self.blueprint, hub, gates, self.current_session, self.origins, self.client_address
        )
        origins = self.origins
        self.blueprint.record_once(
            lambda state: asgi.install(state, hub, gates, interface, origins)
        )
        handlers: dict[type[Exception], Callable[..., Any]] = {
            BackendUnavailable: self._backend_unavailable,
            RateLimited: self._rate_limited,
            CookieConflict: self._cookie_conflict,
        }
        self.blueprint.record_once(lambda state: rawhttp.install(state, self, interface, handlers))
        app.register_blueprint(self.blueprint, url_prefix=self.settings.url_prefix)
        hosts.install(app)  # before Quart binds its URL map to a Host it cannot encode
        self.claim_path = f"{self.settings.url_prefix}/claim"
        self.app = app
        devices.warm_up()

    async def _serving(self) -> Any:
        # Never fails for an unreachable backend: a worker (re)started during an
        # outage serves 503 until it is back (backends/connector.py).
        connector = BackendConnector(self.backend)
        await connector.start()
        if self.gates is not None:
            self.gates.start()
        if self.hub is not None:
            await self.hub.start()
        try:
            yield
        finally:
            if self.hub is not None:
                await self.hub.stop()
            if self.gates is not None:
                self.gates.stop()
            await connector.stop()
            await self.backend.disconnect()

    def _exclusive_tabs(self) -> bool:
        # Read on every use: the policy may be replaced while the app runs.
        return self.policy.exclusive_tabs

    async def _backend_unavailable(self, error: BackendUnavailable) -> Response:
        logger.error("backend unavailable: %s", error)
        return error_response(503, "backend_unavailable")

    async def _limit_reached(self, error: SessionLimitReached) -> Response:
        return error_response(403, "session_limit_reached", limit=error.limit)

    async def _origin_forbidden(self, error: OriginForbidden) -> Response:
        return error_response(403, "origin_forbidden")

    async def _cookie_conflict(self, error: CookieConflict) -> Response:
        return ended_response(COOKIE_CONFLICT)

    async def _invalid_page(self, error: InvalidPage) -> Response:
        return error_response(400, "bad_page", str(error))

    def _login_limits(self) -> LoginLimits:
        return LoginLimits(
            per_user=self.settings.max_logins_per_user_per_second,
            per_address=self.settings.max_logins_per_address_per_second,
        )

    async def _rate_limited(self, error: RateLimited) -> Response:
        response = error_response(429, "rate_limited")
        response.headers["Retry-After"] = retry_after(error.retry_after)
        return response

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            raise RuntimeError("SessionWatch.init_app(app) has not been called")
        return self._backend

    @property
    def signer(self) -> CookieSigner:
        if self._signer is None:
            raise RuntimeError("SessionWatch.init_app(app) has not been called")
        return self._signer

    def now_ms(self) -> int:
        """The injectable clock, in epoch milliseconds."""
        return int(self.clock() * 1000)

    # -- request helpers -------------------------------------------------------------

    @staticmethod
    def _connection() -> Any:
        if has_request_context():
            return request
        if has_websocket_context():
            return websocket
        raise RuntimeError("sessionwatch needs a request or WebSocket context here")

    def request_is_secure(self) -> bool:
        """True when the current request came over HTTPS/WSS."""
        return self._connection().scheme in ("https", "wss")

    def client_address(self) -> str | None:
        """The client's IP: the peer, or the proxy-appended ``X-Forwarded-For`` entry
        when ``trust_forwarded_for`` is set (only behind a proxy you run)."""
        connection = self._connection()
        return devices.client_address(
            connection.remote_addr,
            connection.headers.get("X-Forwarded-For"),
            trust_forwarded_for=self.settings.trust_forwarded_for,
        )

    def foreign_request(self) -> str | None:
        """Why the current request was sent by a page of a foreign origin, or ``None``:
        its ``Origin`` is not allowed (the app's own origin, or ``allowed_origins``), or,
        without ``Origin``, ``Sec-Fetch-Site`` says ``cross-site`` or ``same-site`` (a
        sibling subdomain is same-site but not same-origin)."""
        headers = self._connection().headers
        origin = headers.get("Origin")
        own = own_origin() if origin is not None else ""
        return self.origins.foreign(origin, headers.get("Sec-Fetch-Site"), own)

    def refuse_foreign(self, action: str) -> None:
        """Raise :class:`OriginForbidden` (answered 403 ``origin_forbidden``) when the
        current request comes from a foreign page (see :meth:`foreign_request`)."""
        why = self.foreign_request()
        if why is not None:
            security_event("origin_refused", logging.WARNING, action=action, why=why)
            raise OriginForbidden(why)

    def describe_request(self) -> Device:
        """The :class:`Device` of the current request."""
        return self.describe(self._connection().headers.get("User-Agent"), self.client_address())

    def describe(self, user_agent: str | None, address: str | None) -> Device:
        """The :class:`Device` of a request with this User-Agent from ``address``."""
        return devices.describe_device(
            user_agent, address, self.now_ms(), resolver=self.place_resolver
        )

    def current_session(self) -> ServerSession:
        """The request's :class:`ServerSession`; raises :class:`BackendUnavailable`
        when the backend could not be reached while opening it."""
        session = quart_session._get_current_object()  # type: ignore[attr-defined]
        if isinstance(session, UnavailableSession):
            raise session.error
        if not isinstance(session, ServerSession):
            raise RuntimeError("the app's session interface is not sessionwatch's")
        return session

    # -- sessions ----------------------------------------------------------------------

    def new_record(
        self, session_id: str, user: str | None, data: str, device: Device | None = None
    ) -> SessionRecord:
        """A fresh record for ``session_id`` on ``device`` (default: this request's)."""
        now = self.now_ms()
        device = device or self.describe_request()
        return SessionRecord(
            id=public_id(session_id),
            user=user,
            created=now,
            seen=now,
            absolute_expiry=now + self.timeouts.absolute,
            gen=0,
            tab_key=new_tab_key(),
            device={"browser": device.browser, "os": device.os, "place": device.place},
            data=data,
        )

    async def start_session(self, session: ServerSession, data: str = "") -> SessionRecord:
        """Store a new anonymous session for the request and send its cookie.

        Raises:
            RateLimited: the client's address started ``max_new_sessions_per_second``
                sessions already (answered 429 ``rate_limited`` with ``Retry-After``).
        """
        return await self.start_session_for(
            session, data, self._connection().headers.get("User-Agent"), self.client_address()
        )

    async def start_session_for(
        self, session: ServerSession, data: str, user_agent: str | None, address: str | None
    ) -> SessionRecord:
        """:meth:`start_session` for a request with this User-Agent from ``address``.

        Raises:
            CookieConflict: the request carries copies of several live sessions (a new
                session's cookie would replace the user's).
        """
        if session.conflict:
            raise CookieConflict(COOKIE_CONFLICT)
        limits = self.address_limits
        if limits is not None and not limits.new_session(address, time.monotonic()):
            security_event("rate_limited", logging.WARNING, limit="new_sessions", address=address)
            raise RateLimited(limits.session_retry_after(address))
        await self.deployment_limits.new_session(address)  # every worker's and host's
        session_id = new_session_id()
        record = self.new_record(session_id, None, data, self.describe(user_agent, address))
        await self.backend.create(record, timeouts=self.timeouts, now=record.created)
        session.bind(session_id, record)
        return record

    async def login(self, user_id: str, *, revoke_others: bool = False) -> list[str]:
        """Sign the current session in as ``user_id``.

        Rotates the session id (against fixation) keeping the data, rotates the tab key
        (every tab token issued before is refused; the calling tab's new token goes out
        in the answer's ``X-SessionWatch-Tab`` header), records the device, adds the
        session to the user's index and applies the policy — one atomic step. Returns
        the public ids of sessions evicted by the limit. With ``revoke_others``, every
        other session of the user is revoked too.

        Raises:
            InvalidUserId: ``user_id`` is empty, too long, not a string, or holds
                control or separator characters (a ``ValueError``).
            OriginForbidden: the request comes from a foreign page (login CSRF;
                answered 403 ``origin_forbidden``).
            SessionLimitReached: the policy is ``deny`` and the user is at the limit
                (nothing changed).
            RateLimited: the user or the client's address signed in too often
                (``max_logins_per_*_per_second``; answered 429 ``rate_limited``).
            BackendUnavailable: the backend cannot be reached.
        """
        _check_user_id(user_id)
        self.refuse_foreign("login")
        session = self.current_session()
        serializer = ServerSessionInterface.serializer
        data = serializer.dumps(dict(session)) if session else ""
        session_id, record, evicted = await self.rotate_login(
            session.record, user_id, data, self.describe_request(), address=self.client_address()
        )
        session.bind(session_id, record)
        session.issued_tab = make_tab_token(record.tab_key, record.gen)
        if revoke_others:
            await self.revoke_user(user_id, except_current=True, reason="signed_out_elsewhere")
        return evicted

    async def rotate_login(
        self,
        old: SessionRecord | None,
        user_id: str,
        data: str,
        device: Device,
        *,
        address: str | None = None,
    ) -> tuple[str, SessionRecord, list[str]]:
        """Store a new session of ``user_id`` replacing ``old`` (carrying its claim) and
        apply the policy and the ``max_sessions_per_user`` ceiling, atomically. Returns
        the new session id, its record and the public ids the limit evicted. Raises
        like :meth:`login` (but checks no Origin: the session API calls it server to
        server); ``address`` is the browser's, for the sign-in rate per address. The
        caller hands the calling tab ``make_tab_token(record.tab_key, record.gen)``."""
        _check_user_id(user_id)
        wait = self.login_limits.sign_in(user_id, address, time.monotonic())
        if wait is not None:
            security_event(
                "rate_limited", logging.WARNING, limit="logins", user=user_id, address=address
            )
            raise RateLimited(wait)
        await self.deployment_limits.sign_in(user_id, address)  # every worker's and host's
        session_id = new_session_id(user_tag(user_id))  # the user's slot on a Cluster
        record = self.new_record(session_id, user_id, data, device)
        # The sign-in is the calling tab's claim, under a new tab key and the next
        # generation: no token issued before it (a planted session's, say) is accepted
        # afterwards. The backend stores them as given.
        by = {**record.device, "at": record.created, "same_browser": True}
        record = replace(record, gen=(old.gen if old is not None else 0) + 1, claimed_by=by)
        evicted = await self.backend.login(
            old.id if old is not None else None,
            record,
            limit=self.policy.session_limit(user_id),
            deny=self.policy.on_limit == "deny",
            timeouts=self.timeouts,
            now=record.created,
            ceiling=self.settings.max_sessions_per_user,
        )
        security_event(
            "login",
            session=record.id,
            user=user_id,
            rotated_from=old.id if old is not None else None,
            evicted=evicted,
        )
        return session_id, record, evicted

    async def logout(self) -> None:
        """End the current session everywhere and clear its cookie.

        Raises:
            OriginForbidden: the request comes from a foreign page (logout CSRF;
                answered 403 ``origin_forbidden``).
        """
        self.refuse_foreign("logout")
        session = self.current_session()
        if session.record is not None:
            await self.backend.end(
                session.record.id, "logged_out", timeouts=self.timeouts, now=self.now_ms()
            )
            security_event("logout", session=session.record.id)
        session.unbind()

    async def revoke_session(
        self, session_id: str, *, reason: str = "revoked", user_id: str | None = None
    ) -> bool:
        """Revoke the session with public id ``session_id`` (only if it belongs to
        ``user_id``, when given). Its tabs are told ``revoked{reason}`` and closed.
        Returns whether a live session was revoked."""
        _check_reason(reason)
        ended = await self.backend.end(
            session_id,
            "revoked",
            timeouts=self.timeouts,
            now=self.now_ms(),
            user=user_id,
            detail=reason,
        )
        if ended:
            security_event("revoke", session=session_id, reason=reason)
        return ended

    async def revoke_user(
        self, user_id: str, *, except_current: bool = False, reason: str = "revoked"
    ) -> int:
        """Revoke every session of ``user_id`` (but the current one with
        ``except_current``). Returns how many were revoked."""
        _check_reason(reason)
        keep = None
        if except_current:
            keep = self.current_session().public_id
        count = await self.backend.end_user(
            user_id, except_id=keep, detail=reason, timeouts=self.timeouts, now=self.now_ms()
        )
        security_event("revoke_user", user=user_id, sessions=count, reason=reason)
        return count

    async def list_sessions(
        self, user_id: str, *, cursor: str | None = None, limit: str | int | None = None
    ) -> SessionList:
        """One page of the user's live sessions, oldest first, with their live tab
        counts: at most ``limit`` (default 50, at most 100) after ``cursor`` (the
        ``next_cursor`` of the page before; ``None``: the first page).

        Raises:
            InvalidPage: ``cursor`` or ``limit`` is malformed (answered 400 ``bad_page``).
        """
        after = PageCursor.decode(cursor) if cursor is not None else None
        now = self.now_ms()
        page = await self.backend.list_sessions(
            user_id, timeouts=self.timeouts, now=now, after=after, limit=page_size(limit)
        )
        records = page.records
        live = await self.backend.count_presence([r.id for r in records], now=now)
        current = None
        if has_request_context() or has_websocket_context():
            session = quart_session._get_current_object()  # type: ignore[attr-defined]
            if isinstance(session, ServerSession):
                current = session.public_id
        infos = [
            SessionInfo(
                id=r.id,
                user=r.user,
                browser=str(r.device.get("browser", "")),
                os=str(r.device.get("os", "")),
                place=str(r.device.get("place", "")),
                created=r.created,
                last_seen=r.seen,
                expires_at=r.expires_at(self.timeouts.idle),
                live_tabs=live.get(r.id, 0),
                current=r.id == current,
            )
            for r in records
        ]
        return SessionList(infos, page.next.encode() if page.next is not None else None)

    # -- tabs ----------------------------------------------------------------------------

    async def claim_tab(self) -> tuple[str, Claim]:
        """Claim the current tab (starting a session if needed): the newest claim wins.
        Returns the token and the claim. A pending session (``POST /claim``) is loaded
        by the claim itself: one backend round trip."""
        return await self.claim_session(
            self.current_session(),
            self._connection().headers.get("User-Agent"),
            self.client_address(),
        )

    async def claim_session(
        self, session: ServerSession, user_agent: str | None, address: str | None
    ) -> tuple[str, Claim]:
        """:meth:`claim_tab` for ``session`` and a request with this User-Agent from
        ``address`` (the Quart route and the raw HTTP path share it)."""
        for _ in range(2):
            session_id = session.public_id
            if session_id is None:
                session_id = (await self.start_session_for(session, "", user_agent, address)).id
            result = await self.backend.claim(
                session_id,
                self.describe(user_agent, address),
                exclusive=self.policy.exclusive_tabs,
                timeouts=self.timeouts,
                now=self.now_ms(),
            )
            if isinstance(result, Claim):
                if session.pending is not None:
                    record = result.record
                    data = (
                        ServerSessionInterface.serializer.loads(record.data) if record.data else {}
                    )
                    session.adopt(record, data)
                else:
                    session.record = result.record
                return make_tab_token(result.tab_key, result.gen), result
            if session.pending is not None:  # what open_session would have said
                security_event(
                    "cookie_refused", session=session_id, reason=result.ended or "unknown"
                )
                session.ended = result.ended
            # Ended (before or since the request began): start afresh once.
            session.unbind()
        raise BackendUnavailable("could not claim a tab: the session ended twice")

    def tab_status(self, record: SessionRecord, token: str | None) -> TabStatus:
        """Whether ``token`` is the current tab of ``record`` (constant-time MAC check,
        then the supersede rule of :mod:`sessionwatch.core.tabs`)."""
        if not token:
            return "missing"
        gen = verify_tab_token(token, record.tab_key)
        return tab_status(gen, record.gen, exclusive=self.policy.exclusive_tabs)

    async def request_tab_token(self) -> str | None:
        """The tab token of the current request (header, else form field)."""
        token = request.headers.get(TAB_HEADER)
        if token is None and request.mimetype in (
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ):
            form = await request.form
            token = form.get(TAB_FORM_FIELD)
        return token

    async def check_active_tab(self) -> Response | None:
        """``None`` when the request comes from the session's active tab, else the
        403/401/409/503 answer (403 ``origin_forbidden`` first: an unsafe request from a
        foreign page, see :meth:`foreign_request`). Costs no backend round trip beyond
        opening the session."""
        if is_unsafe_method(request.method):
            why = self.foreign_request()
            if why is not None:  # valid token or not: a foreign page sent it
                security_event("origin_refused", logging.WARNING, path=request.path, why=why)
                return error_response(403, "origin_forbidden")
        session = self.current_session()
        if session.record is None:
            return ended_response(session.ended)
        token = await self.request_tab_token()
        status = self.tab_status(session.record, token)
        if status == "active":
            return None
        if status == "superseded":
            return error_response(409, "tab_superseded", by=session.record.claimed_by)
        if status == "invalid":
            security_event("tab_refused", logging.WARNING, session=session.record.id)
        return error_response(409, f"tab_{status}")

    def active_tab_required(
        self, view: Callable[P, Awaitable[R]]
    ) -> Callable[P, Awaitable[R | Response]]:
        """Decorator: accept the request only from the session's active tab.

        The token (header ``X-SessionWatch-Tab`` or form field ``_sessionwatch_tab``)
        is also the CSRF protection of the route."""

        @functools.wraps(view)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            refusal = await self.check_active_tab()
            if refusal is not None:
                return refusal
            return await current_app.ensure_async(view)(*args, **kwargs)

        return wrapper

    def protect_blueprint(self, blueprint: Blueprint) -> None:
        """Require the active tab for every request routed to ``blueprint``."""
        blueprint.before_request(self.check_active_tab)


def _check_reason(reason: str) -> None:
    if not isinstance(reason, str) or not REASON_RE.fullmatch(reason):
        raise ConfigurationError(f"reason must match {REASON_RE.pattern}, got {reason!r}")
