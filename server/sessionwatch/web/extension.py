"""The Quart extension: wires settings, backend, engine, hub and doors together.

It is the composition root of the library and the Quart door: it reads a request into
:class:`~sessionwatch.engine.RequestFacts`, asks the :class:`~sessionwatch.engine.SessionEngine`
and writes its answer. No rule is stated here (docs/architecture.md).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

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
from quart.wrappers import BaseRequestWebsocket

from ..backends import Backend, backend_from_url
from ..backends.base import Claim, SessionRecord, Timeouts
from ..backends.connector import BackendConnector
from ..core import devices
from ..core.audit import MAX_USER_ID as MAX_USER_ID  # public: the session API's bound
from ..core.audit import security_event
from ..core.config import Settings, is_local_path
from ..core.events import Device
from ..core.exceptions import BackendUnavailable, ConfigurationError, OriginForbidden
from ..core.limits import AddressLimits, LoginLimits
from ..core.oidc import SSO_IDENTITY_KEY, ProviderIdentity
from ..core.origins import OriginRule
from ..core.policy import Policy
from ..core.refusals import BACKEND_UNAVAILABLE, REFUSED_ERRORS, Refusal, refusal_for
from ..core.remember import RememberSigner
from ..core.tabs import TAB_FORM_FIELD, TAB_HEADER, TabStatus, make_tab_token
from ..core.tokens import CookieSigner
from ..core.trail import AuditSettings
from ..engine import (
    Pass,
    RequestFacts,
    Requirement,
    SessionEngine,
    SessionInfo,
    SessionList,
    check_recent_login,
    check_request,
    parse_max_age,
)
from ..engine.audit_feed import DEFAULT_FEED_SIZE, AuditFeed, audit_feed
from ..engine.hooks import Hook, Hooks
from ..engine.provider_sessions import ProviderSessions
from ..engine.roster import Roster, UserSessions, roster
from ..engine.shared_limits import DeploymentLimits
from ..live.gates import SocketGates
from ..live.hub import Hub
from . import hosts, rawhttp, rawwebsocket
from .requestfacts import facts_of_connection
from .responses import reauth_response, refusal_response
from .routes import create_blueprint
from .sessions import ServerSession, ServerSessionInterface, UnavailableSession
from .websocket import register_websocket

if TYPE_CHECKING:
    from .oidc import SingleSignOn

__all__ = [
    "AuditFeed",
    "Roster",
    "SessionInfo",
    "SessionList",
    "SessionWatch",
    "TabStatus",
    "UserSessions",
]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


class SessionWatch:
    """Server-enforced sessions, tab claims and live push for a Quart app.

    Args:
        app: the app, or ``None`` to call :meth:`init_app` later.
        backend: a backend URL (``memory://``, ``redis://…``) or a backend object.
        policy: the :class:`Policy` to enforce (read at every use).
        clock: seconds since the epoch (injectable for tests).
        place_resolver: ``ip -> "City, Country"`` for device descriptions (GeoIP).
        sso_transport: an httpx transport to the OpenID provider (tests; default: the
            network).
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
        sso_transport: Any = None,
        **options: Any,
    ) -> None:
        if backend is not None and not isinstance(backend, str):
            self._backend_object: Backend | None = backend
        else:
            self._backend_object = None
            if backend is not None:
                options["backend"] = backend
        self._options = options
        self._policy = policy or Policy()
        self.clock = clock or time.time
        self.place_resolver = place_resolver
        self.settings = Settings.resolve(options, {})
        self._backend: Backend | None = self._backend_object
        self._signer: CookieSigner | None = None
        self._engine: SessionEngine | None = None
        self._interface: ServerSessionInterface | None = None
        self._on_claim: Callable[[], None] | None = None
        self.app: Quart | None = None
        self.blueprint: Blueprint | None = None
        self.claim_path = ""  # set by init_app
        self.hub: Hub | None = None  # the live-push hub (set by init_app)
        self.gates: SocketGates | None = None  # the WebSocket door's (set by init_app)
        self.origins = OriginRule.from_settings(self.settings)  # set again by init_app
        self.sso: SingleSignOn | None = None  # single sign-on (set by init_app when configured)
        self._sso_transport = sso_transport
        self.hooks = Hooks()  # @watch.on(...): the event hooks (backend set by init_app)
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
                audit=AuditSettings.of(self.settings),
            )
        self.hooks.backend = self.backend
        self.hooks.reclaim_after = self.settings.hook_reclaim_after
        keys: list[str | bytes] = []
        keys.extend(self.settings.secret_keys)
        if not keys:
            keys.extend(app.config.get("SECRET_KEY_FALLBACKS") or [])
            if app.config.get("SECRET_KEY"):
                keys.append(app.config["SECRET_KEY"])
        self._signer = CookieSigner(keys)
        self.timeouts = Timeouts.from_settings(self.settings)
        self.origins = OriginRule.from_settings(self.settings)
        hub = Hub(
            self.backend,
            self.settings,
            self.timeouts,
            self.now_ms,
            exclusive_tabs=self._exclusive_tabs,
        )
        self.hub = hub
        gates = self.gates = SocketGates(self.settings)
        self._engine = SessionEngine(
            self.backend,
            timeouts=self.timeouts,
            policy=self._policy,
            now_ms=self.now_ms,
            address_limits=gates.address_limits,  # new sessions here, sockets at the door
            login_limits=LoginLimits(
                per_user=self.settings.max_logins_per_user_per_second,
                per_address=self.settings.max_logins_per_address_per_second,
            ),
            max_sessions_per_user=self.settings.max_sessions_per_user,
            place_resolver=self.place_resolver,
            deployment_limits=DeploymentLimits(self.backend, self.settings),
            remember=RememberSigner(keys),
            remember_lifetime=int(self.settings.remember_lifetime * 1000),
            remember_grace=int(self.settings.remember_grace * 1000),
        )
        self._engine.on_claim = self._on_claim
        interface = self._interface = ServerSessionInterface(self)
        app.session_interface = interface  # type: ignore[assignment]
        app.extensions["sessionwatch"] = self
        for kind in REFUSED_ERRORS:
            app.register_error_handler(kind, self._refused)
        app.while_serving(self._serving)
        self.blueprint = create_blueprint(self)
        register_websocket(self.blueprint, self, hub, gates)
        self.blueprint.record_once(
            lambda state: rawwebsocket.install(state, self, hub, gates, interface)
        )
        handlers: dict[type[Exception], Callable[..., Any]] = dict.fromkeys(
            REFUSED_ERRORS, self._refused
        )
        self.blueprint.record_once(lambda state: rawhttp.install(state, self, interface, handlers))
        app.register_blueprint(self.blueprint, url_prefix=self.settings.url_prefix)
        if self.settings.oidc_issuer:
            self._install_sso(app)
        hosts.install(app)  # before Quart binds its URL map to a Host it cannot encode
        self.claim_path = f"{self.settings.url_prefix}/claim"
        self.app = app
        devices.warm_up()

    def _install_sso(self, app: Quart) -> None:
        try:
            from .oidc import SingleSignOn, create_sso_blueprint
        except ImportError as exc:
            raise ConfigurationError(
                f"oidc_issuer is set but the oidc extra is missing ({exc}): "
                "pip install 'sessionwatch[oidc]'"
            ) from None
        self.sso = SingleSignOn(self, transport=self._sso_transport)
        app.register_blueprint(
            create_sso_blueprint(self, self.sso), url_prefix=self.settings.url_prefix + "/oidc"
        )

    async def _serving(self) -> Any:
        # Never fails for an unreachable backend: a worker (re)started during an
        # outage serves 503 until it is back (backends/connector.py).
        connector = BackendConnector(self.backend)
        await connector.start()
        if self.gates is not None:
            self.gates.start()
        if self.hub is not None:
            await self.hub.start()
        await self.hooks.start()
        try:
            yield
        finally:
            await self.hooks.stop()
            if self.hub is not None:
                await self.hub.stop()
            if self.gates is not None:
                self.gates.stop()
            await connector.stop()
            await self.backend.disconnect()
            if self.sso is not None:
                await self.sso.provider.aclose()

    def on(self, event: str) -> Callable[[Hook], Hook]:
        """Decorator: call the function once per ``event`` across the deployment
        (``superseded``, ``signed_in``, ``evicted``, ``limit_denied``, ``revoked``,
        ``logged_out``, ``expired``) with its :class:`~sessionwatch.AuditRecord`, at
        least once (``record.id`` de-duplicates), never delaying a request or a push
        (docs/audit.md)::

            @watch.on("signed_in")
            async def alert(record: AuditRecord) -> None:
                if record.new_place:
                    await notify(record.user, record.place)
        """
        return self.hooks.on(event)

    async def _refused(self, error: Exception) -> Response:
        """The app-wide handler of :data:`~sessionwatch.core.refusals.REFUSED_ERRORS`."""
        if isinstance(error, BackendUnavailable):
            logger.error("backend unavailable: %s", error)
        refusal = refusal_for(error)
        if refusal is None:  # registered only for the table's errors
            raise error
        return refusal_response(refusal)

    @property
    def engine(self) -> SessionEngine:
        """The session engine (every session operation; set by :meth:`init_app`)."""
        if self._engine is None:
            raise RuntimeError("SessionWatch.init_app(app) has not been called")
        return self._engine

    def _exclusive_tabs(self) -> bool:
        # Read on every use: the policy may be replaced while the app runs.
        return self.policy.exclusive_tabs

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

    @property
    def policy(self) -> Policy:
        """The session policy; assigning a new one takes effect at the next request."""
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._policy = policy
        if self._engine is not None:
            self._engine.policy = policy

    @property
    def on_claim(self) -> Callable[[], None] | None:
        """Called on every tab claim served (the service counts them)."""
        return self._on_claim

    @on_claim.setter
    def on_claim(self, callback: Callable[[], None] | None) -> None:
        self._on_claim = callback
        if self._engine is not None:
            self._engine.on_claim = callback

    @property
    def address_limits(self) -> AddressLimits | None:
        """The per-address limits (new sessions here, sockets in the hub)."""
        return self.engine.address_limits

    def now_ms(self) -> int:
        """The injectable clock, in epoch milliseconds."""
        return int(self.clock() * 1000)

    # -- the request as facts --------------------------------------------------------

    @staticmethod
    def _connection() -> BaseRequestWebsocket:
        # The objects behind the proxies: reading a request into facts touches a dozen
        # attributes, each a proxy lookup otherwise (on every protected request).
        if has_request_context():
            return request._get_current_object()  # type: ignore[attr-defined, no-any-return]
        if has_websocket_context():
            return websocket._get_current_object()  # type: ignore[attr-defined, no-any-return]
        raise RuntimeError("sessionwatch needs a request or WebSocket context here")

    def request_is_secure(self) -> bool:
        """True when the current request came over HTTPS/WSS."""
        return self._connection().scheme in ("https", "wss")

    def request_facts(self, tab: str | None = None) -> RequestFacts:
        """The :class:`RequestFacts` of the current request or handshake."""
        connection = self._connection()
        if self._interface is None:
            raise RuntimeError("SessionWatch.init_app(app) has not been called")
        secure = connection.scheme in ("https", "wss")
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        name = self._interface.cookie_name(app, secure)
        return facts_of_connection(
            connection, name, trust_forwarded_for=self.settings.trust_forwarded_for, tab=tab
        )

    def client_address(self) -> str | None:
        """The client's IP: the peer, or the last ``X-Forwarded-For`` hop when
        ``trust_forwarded_for`` is set (only behind a proxy you run)."""
        return self.request_facts().address

    def foreign_request(self) -> str | None:
        """Why the current request was sent by a page of a foreign origin, or ``None``
        (:meth:`~sessionwatch.core.origins.OriginRule.foreign`)."""
        facts = self.request_facts()
        return self.origins.foreign(facts.origin, facts.fetch_site, facts.own_origin)

    def refuse_foreign(self, action: str) -> None:
        """Raise :class:`OriginForbidden` (answered 403 ``origin_forbidden``) when the
        current request comes from a foreign page (see :meth:`foreign_request`)."""
        why = self.foreign_request()
        if why is not None:
            security_event("origin_refused", logging.WARNING, action=action, why=why)
            raise OriginForbidden(why)

    def describe_request(self) -> Device:
        """The :class:`Device` of the current request."""
        facts = self.request_facts()
        return self.engine.describe(facts.user_agent, facts.address)

    def current_session(self) -> ServerSession:
        """The request's :class:`ServerSession`; raises :class:`BackendUnavailable`
        when the backend could not be reached while opening it."""
        session = quart_session._get_current_object()  # type: ignore[attr-defined]
        if isinstance(session, UnavailableSession):
            raise session.error
        if not isinstance(session, ServerSession):
            raise RuntimeError("the app's session interface is not sessionwatch's")
        return session

    def cookies_to_set(self) -> list[tuple[str, str]]:
        """The ``Set-Cookie`` values the current answer will carry, as ``("session" |
        "remember", value)``: for a door that must relay them through a proxy
        (forward-auth's ``/verify``)."""
        session = quart_session._get_current_object()  # type: ignore[attr-defined]
        if self._interface is None or not isinstance(session, ServerSession):
            return []
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        return self._interface.cookies_to_set(app, session, self.request_is_secure())

    def current_user(self) -> str | None:
        """The user the request's session is signed in as (``None``: anonymous). Read
        this rather than a copy in the session data: a session a remember cookie
        restored starts without the app's data."""
        record = self.current_session().record
        return record.user if record is not None else None

    # -- sessions (each one engine operation) ------------------------------------------

    async def start_session(self, session: ServerSession, data: str = "") -> SessionRecord:
        """Store a new anonymous session for the request and send its cookie.

        Raises:
            RateLimited: the client's address started ``max_new_sessions_per_second``
                sessions already (answered 429 ``rate_limited`` with ``Retry-After``).
            CookieConflict: the request carries copies of several live sessions (a new
                session's cookie would replace the user's; answered 401).
        """
        facts = self.request_facts()
        session_id, record = await self.engine.open(
            data, facts.user_agent, facts.address, conflict=session.conflict
        )
        session.bind(session_id, record)
        return record

    async def login(
        self,
        user_id: str,
        *,
        revoke_others: bool = False,
        provider: ProviderIdentity | None = None,
        remember: bool = False,
    ) -> list[str]:
        """Sign the current session in as ``user_id``.

        Rotates the session id (against fixation) keeping the data, rotates the tab key
        (every tab token issued before is refused; the calling tab's new token goes out
        in the answer's ``X-SessionWatch-Tab`` header), records the device, adds the
        session to the user's index and applies the policy — one atomic step. Returns
        the public ids of sessions evicted by the limit. With ``revoke_others``, every
        other session of the user is revoked too. With ``provider`` (an identity an
        OpenID provider vouched for, docs/sso.md), the session records it and is linked
        to the provider's ``sid`` and ``sub``: their back-channel logout ends it.
        With ``remember``, the answer also sets
        the remember cookie of a new token family, which signs the browser in again once
        the session is gone (docs/policies.md, "Remember-me"); without, a remember cookie
        the browser had is cleared (its family ended with the session it replaced).

        Raises:
            InvalidUserId: ``user_id`` is empty, too long, not a string, or holds
                control or separator characters (a ``ValueError``; answered 400
                ``bad_user_id``).
            OriginForbidden: the request comes from a foreign page (login CSRF;
                answered 403 ``origin_forbidden``).
            SessionLimitReached: the policy is ``deny`` and the user is at the limit
                (nothing changed).
            SessionChoiceRequired: the policy is ``ask`` and the user is at the limit:
                the session stays anonymous, with a pending sign-in (``.pending``,
                bound to this browser's session, single use, ``ask_timeout``) that
                :meth:`complete_login` finishes with the sessions the user chose from
                ``.sessions``. Unhandled: 409 ``session_choice_required``.
            RateLimited: the user or the client's address signed in too often
                (``max_logins_per_*_per_second``; answered 429 ``rate_limited``).
            BackendUnavailable: the backend cannot be reached.
        """
        self.refuse_foreign("login")
        return await self._login(
            user_id, revoke_others=revoke_others, provider=provider, remember=remember
        )

    async def sign_in_from_provider(self, user_id: str, provider: ProviderIdentity) -> list[str]:
        """:meth:`login` for the OpenID callback (web/oidc.py), which arrives from the
        provider's page: its defence against login CSRF is the ``state`` bound to this
        browser's session, not the origin (a navigation from the provider is same-site
        or cross-site by nature)."""
        return await self._login(user_id, revoke_others=False, provider=provider, remember=False)

    async def _login(
        self,
        user_id: str,
        *,
        revoke_others: bool,
        provider: ProviderIdentity | None,
        remember: bool,
    ) -> list[str]:
        engine = self.engine
        session = self.current_session()
        facts = self.request_facts()
        if provider is not None:
            session[SSO_IDENTITY_KEY] = provider.to_json()
        else:
            session.pop(SSO_IDENTITY_KEY, None)  # a password sign-in is not the provider's
        data = ServerSessionInterface.serializer.dumps(dict(session)) if session else ""
        if session.record is None and self.policy.on_limit == "ask":
            # A pending sign-in is bound to the browser's session: give it one first.
            await self.start_session(session, data)
        device = engine.describe(facts.user_agent, facts.address)
        session_id, record, evicted = await engine.login(
            session.record, user_id, data, device, address=facts.address
        )
        self._signed_in(session, session_id, record)
        if provider is not None:
            await self._link(record, provider, session)
        if revoke_others:
            await engine.revoke_user(  # the new session ends the others: their records name it
                user_id,
                except_id=record.id,
                reason="signed_out_elsewhere",
                actor=f"session:{record.id}",
            )
        await self._remember_or_forget(session, record, remember)
        return evicted

    async def _remember_or_forget(
        self, session: ServerSession, record: SessionRecord, remember: bool
    ) -> None:
        """A sign-in's remember cookie: a new family's, else the browser's old one is
        cleared (its family ended with the session the sign-in replaced)."""
        if remember:
            session.remember = await self.engine.remember(record) or ""
        elif self._has_remember_cookie():
            session.remember = ""

    @staticmethod
    def _signed_in(session: ServerSession, session_id: str, record: SessionRecord) -> None:
        session.bind(session_id, record)
        session.issued_tab = make_tab_token(record.tab_key, record.gen)

    async def complete_login(
        self, pending: str, evict: Sequence[str] = (), *, remember: bool = False
    ) -> list[str]:
        """Finish a sign-in that :meth:`login` left pending under ``on_limit="ask"``
        (:class:`~sessionwatch.SessionChoiceRequired`): sign out the sessions ``evict``
        (their public ids, from ``SessionChoiceRequired.sessions``) the user chose and
        sign this session in, as :meth:`login` does — one atomic step that checks the
        limit again (devices may have signed in or out meanwhile; an id that is not a
        live session of the user is ignored). The chosen sessions' tabs are told
        ``evicted{by}``. Returns the evicted public ids. ``remember`` as in :meth:`login`.

        Raises:
            PendingLoginRefused: ``pending`` is unknown, expired, completed already, or
                was issued to another browser's session (nothing changed; answered 400
                ``pending_login_unknown``, 410 ``_expired``, 409 ``_used``, 403
                ``_foreign``).
            SessionChoiceRequired: the sessions left are still at the limit (nothing
                changed; the same pending sign-in with the sessions as they are now).
            OriginForbidden: the request comes from a foreign page.
            ValueError: ``evict`` is not a list of at most 100 session ids.
        """
        self.refuse_foreign("login")
        session = self.current_session()
        data = ServerSessionInterface.serializer.dumps(dict(session)) if session else ""
        session_id, record, evicted = await self.engine.complete_login(
            session.record, pending, evict, data, self.describe_request()
        )
        self._signed_in(session, session_id, record)
        await self._remember_or_forget(session, record, remember)
        return evicted

    async def reauthenticated(self) -> None:
        """Record that the current session's user just proved who they are again (the
        app checked the password): routes under :meth:`recent_login_required` pass
        for their ``max_age`` from now. Nothing else changes: the session id, its
        data, its tabs and their tokens stay as they are.

        Raises:
            OriginForbidden: the request comes from a foreign page.
            PermissionError: the session is not signed in.
        """
        self.refuse_foreign("reauthenticate")
        record = self.current_session().record
        if record is None or record.user is None:
            raise PermissionError("reauthenticated() needs a signed-in session")
        await self.engine.reauthenticated(record.id)

    def recent_login_required(
        self, *, max_age: int = 300, reauth_url: str | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R | Response]]]:
        """Decorator (step-up): accept the request only when the session's user signed
        in or re-authenticated (:meth:`reauthenticated`) within ``max_age`` seconds.
        Otherwise a fetch gets ``401 {"error": "reauth_required", "max_age": n}`` (the
        browser client prompts "confirm it's you") and a navigation a 303 to
        ``reauth_url`` (default: the ``reauth_url`` setting) with ``?next=`` this path,
        or the 401 page without one. A gone session is refused as on any protected
        route, an anonymous one 401 ``not_signed_in``. It checks nothing else: stack
        it under :meth:`active_tab_required` for the tab and the origin.

        Raises:
            ConfigurationError: ``max_age`` is not 1 to 86400 seconds, or
                ``reauth_url`` is not a local path (at decoration).
        """
        window = parse_max_age(max_age)
        if reauth_url is not None and reauth_url and not is_local_path(reauth_url):
            raise ConfigurationError(f"reauth_url must be a local path, got {reauth_url!r}")

        def decorate(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | Response]]:
            @functools.wraps(view)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Response:
                refused = self.check_recent_login(window, reauth_url=reauth_url)
                if refused is not None:
                    return refused
                return await current_app.ensure_async(view)(*args, **kwargs)

            return wrapper

        return decorate

    def check_recent_login(self, max_age: int, *, reauth_url: str | None = None) -> Response | None:
        """:meth:`recent_login_required` inside a view, for a step-up that depends on
        the request (a transfer above an amount): ``None`` when the sign-in is recent
        enough, else the answer to return (401 ``reauth_required`` or the 303)."""
        refusal = self.recent_login_refusal(parse_max_age(max_age))
        if refusal is None:
            return None
        page = self.settings.reauth_url if reauth_url is None else reauth_url
        return reauth_response(refusal, page, request.full_path.rstrip("?"))

    def recent_login_refusal(self, max_age: int) -> Refusal | None:
        """The step-up decision for the current request's session (see
        :func:`~sessionwatch.engine.check_recent_login`); ``None``: it may pass."""
        try:
            session = self.current_session()
        except BackendUnavailable:
            return BACKEND_UNAVAILABLE
        return check_recent_login(session.record, session.ended, max_age, self.now_ms())

    async def _link(
        self, record: SessionRecord, provider: ProviderIdentity, session: ServerSession
    ) -> None:
        # Fail closed: a session the provider's logout could not find must not live.
        try:
            await ProviderSessions(self.engine).link(
                record.id, provider, until=record.absolute_expiry
            )
        except BackendUnavailable:
            try:
                await self.engine.logout(record.id, via="sso_link_failed")
            finally:
                session.unbind()
            raise

    def _has_remember_cookie(self) -> bool:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        if self._interface is None:
            return False
        name = self._interface.remember_cookie_name(app, self.request_is_secure())
        return name in self._connection().cookies

    async def logout(self) -> str | None:
        """End the current session everywhere and clear its cookie. Returns, for a
        session signed in through the OpenID provider, the provider's end-session URL
        to send the browser to (RP-initiated logout, docs/sso.md); else ``None``.

        Raises:
            OriginForbidden: the request comes from a foreign page (logout CSRF;
                answered 403 ``origin_forbidden``).
        """
        self.refuse_foreign("logout")
        session = self.current_session()
        identity = ProviderIdentity.from_json(session.get(SSO_IDENTITY_KEY))
        if session.record is not None:
            await self.engine.logout(session.record.id)  # its remember-me family too
        session.unbind()
        if self._has_remember_cookie():
            session.remember = ""
        if identity is None or self.sso is None:
            return None
        return await self.sso.end_session_url(identity)

    async def revoke_session(
        self,
        session_id: str,
        *,
        reason: str = "revoked",
        user_id: str | None = None,
        actor: str | None = None,
    ) -> bool:
        """Revoke the session with public id ``session_id`` (only if it belongs to
        ``user_id``, when given). Its tabs are told ``revoked{reason}`` and closed.
        Returns whether a live session was revoked. ``actor``: who revoked it (an
        admin), for the audit line."""
        return await self.engine.revoke_session(
            session_id, reason=reason, user_id=user_id, actor=actor or "app"
        )

    async def revoke_user(
        self,
        user_id: str,
        *,
        except_current: bool = False,
        reason: str = "revoked",
        actor: str | None = None,
    ) -> int:
        """Revoke every session of ``user_id`` (but the current one with
        ``except_current``). Returns how many were revoked. ``actor``: who asked (an
        admin), for the audit line."""
        keep = self.current_session().public_id if except_current else None
        actor = actor or (f"session:{keep}" if keep else "app")  # the trail's: who ended them
        return await self.engine.revoke_user(user_id, except_id=keep, reason=reason, actor=actor)

    async def list_every_user(
        self, *, cursor: str | None = None, limit: str | int | None = None
    ) -> Roster:
        """A page of users (about ``limit``, default 50, at most 100) with their first
        live sessions, for admin tools (docs/admin.md); follow ``next_cursor`` until
        ``None``. Each page's cost is bounded whatever the deployment holds.

        Raises:
            InvalidPage: ``cursor`` or ``limit`` is malformed.
        """
        return await roster(self.engine, cursor=cursor, limit=limit)

    async def audit_feed(
        self, *, cursor: str | None = None, count: str | int = DEFAULT_FEED_SIZE
    ) -> AuditFeed:
        """The audit trail for an admin page to poll (docs/audit.md): without
        ``cursor`` the newest ``count`` records (default 50, at most 500), with one the
        records after it (at most ``count`` per stream shard); oldest first, with the
        opaque cursor to pass next time. Records hold no secret.

        Raises:
            InvalidPage: ``cursor`` or ``count`` is malformed (answered 400 ``bad_page``).
        """
        return await audit_feed(self.backend, cursor=cursor, count=count)

    async def list_sessions(
        self, user_id: str, *, cursor: str | None = None, limit: str | int | None = None
    ) -> SessionList:
        """One page of the user's live sessions, oldest first, with their live tab
        counts: at most ``limit`` (default 50, at most 100) after ``cursor`` (the
        ``next_cursor`` of the page before; ``None``: the first page).

        Raises:
            InvalidPage: ``cursor`` or ``limit`` is malformed (answered 400 ``bad_page``).
        """
        current = None
        if has_request_context() or has_websocket_context():
            session = quart_session._get_current_object()  # type: ignore[attr-defined]
            if isinstance(session, ServerSession):
                current = session.public_id
        return await self.engine.list_sessions(user_id, current=current, cursor=cursor, limit=limit)

    # -- tabs ----------------------------------------------------------------------------

    async def claim_tab(self) -> tuple[str, Claim]:
        """Claim the current tab (starting a session if needed): the newest claim wins.
        Returns the token and the claim. A pending session (``POST /claim``) is loaded
        by the claim itself: one backend round trip."""
        facts = self.request_facts()
        return await self.engine.claim(self.current_session(), facts.user_agent, facts.address)

    def tab_status(self, record: SessionRecord, token: str | None) -> TabStatus:
        """Whether ``token`` is the current tab of ``record``."""
        return self.engine.tab_status(record, token)

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
        engine's refusal (:func:`~sessionwatch.engine.check_request`: 403 foreign
        origin, 401 gone session, 409 tab, 503 backend). Costs no backend round trip
        beyond opening the session."""
        outcome = self.check_request(self.request_facts(await self.request_tab_token()))
        return None if isinstance(outcome, Pass) else refusal_response(outcome)

    def check_request(
        self, facts: RequestFacts, requirement: Requirement = "tab"
    ) -> Pass | Refusal:
        """The engine's decision on ``facts`` with the current request's session (as
        opened; an unreachable backend is a 503 after the origin check): every door in
        a Quart request (the decorators, forward-auth) asks here."""
        try:
            session = self.current_session()
        except BackendUnavailable:
            record, ended, unavailable = None, None, True
        else:
            record, ended, unavailable = session.record, session.ended, False
        return check_request(
            facts,
            record,
            ended,
            origins=self.origins,
            exclusive=self._policy.exclusive_tabs,
            requirement=requirement,
            unavailable=unavailable,
        )

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
