"""Single sign-on through an OpenID provider: the Quart door (docs/sso.md).

Under ``{url_prefix}/oidc``:

- ``GET /login?next=/path``: starts the authorization code flow with PKCE (S256), a
  ``state`` and a ``nonce``, kept in the browser's server-side session;
- ``GET /callback``: checks ``state``, redeems the code, checks the ID token
  (signature, iss, aud, azp, exp, iat, nonce) and signs the session in as the
  ``oidc_user_claim`` of the token, linked to the provider's ``sid`` and ``sub``;
- ``POST /logout``: ends the session here, then sends the browser to the provider's
  ``end_session_endpoint`` (RP-initiated logout) when it signed in there;
- ``POST /backchannel-logout``: the provider's logout token (Back-Channel Logout 1.0):
  200 with ``Cache-Control: no-store`` once the named sessions ended, 400 with the
  OAuth error body for any invalid token (nothing ended), 501 when the logout could
  not be carried out (the backend or the provider's keys unreachable).

Needs the ``oidc`` extra; imported only when ``oidc_issuer`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit

from quart import Blueprint, Response, jsonify, redirect, request

from ..core.audit import security_event
from ..core.codes import Code
from ..core.config import Settings
from ..core.exceptions import (
    BackendUnavailable,
    InvalidUserId,
    ProviderTokenInvalid,
    ProviderUnavailable,
)
from ..core.oidc import (
    MAX_LOGOUT_BODY,
    ProviderIdentity,
    check_id_token,
    check_logout_token,
    pkce_challenge,
    random_secret,
)
from ..engine import SessionEngine
from ..engine.provider import ProviderClient
from ..engine.provider_sessions import ProviderSessions
from .responses import error_response
from .routes import own_origin

if TYPE_CHECKING:
    from .sessions import ServerSession


class SSOHost(Protocol):
    """What single sign-on needs of the extension (which wires it)."""

    settings: Settings
    clock: Callable[[], float]

    @property
    def engine(self) -> SessionEngine: ...

    def current_session(self) -> ServerSession: ...

    async def logout(self) -> str | None: ...

    async def sign_in_from_provider(self, user_id: str, provider: ProviderIdentity) -> Any: ...


__all__ = ["FLOWS_KEY", "SSOHost", "SingleSignOn", "create_sso_blueprint", "safe_next"]

logger = logging.getLogger(__name__)

# The session data key of the sign-ins in flight (by state).
FLOWS_KEY: Final = "_sessionwatch_sso_flows"
FLOW_LIFETIME: Final = 600  # seconds a sign-in may take at the provider
MAX_FLOWS: Final = 4  # sign-ins in flight per session (several tabs), the oldest dropped


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _oauth_error(status: int, code: Code, description: str) -> Response:
    """The OAuth 2.0 error body (RFC 6749 §5.2) of a back-channel answer."""
    response = jsonify({"error": str(code), "error_description": description})
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


class SingleSignOn:
    """The relying party of one app: its provider, its links, its routes.

    Built by :class:`~sessionwatch.SessionWatch` when ``oidc_issuer`` is set; reached
    as ``watch.sso``. ``provider`` takes an httpx ``transport`` in tests.
    """

    def __init__(self, watch: SSOHost, *, transport: Any = None) -> None:
        settings = watch.settings
        self.watch = watch
        self.settings = settings
        self.provider = ProviderClient(
            settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret,
            algorithms=settings.oidc_algorithms,
            timeout=settings.oidc_timeout,
            transport=transport,
        )
        self.sessions = ProviderSessions(watch.engine)

    @property
    def skew(self) -> int:
        return int(self.settings.oidc_clock_skew)

    def now(self) -> int:
        """The extension's (injectable) clock in whole seconds, as JWT times are."""
        return int(self.watch.clock())

    def redirect_uri(self) -> str:
        configured = self.settings.oidc_redirect_uri
        return configured or own_origin() + self.settings.url_prefix + "/oidc/callback"

    # -- sign-in ---------------------------------------------------------------------

    async def start(self, session: ServerSession, next_path: str) -> str:
        """The provider's authorization URL for a new sign-in of ``session``."""
        metadata = await self.provider.metadata()
        state, nonce, verifier = random_secret(), random_secret(), random_secret()
        now = self.now()
        flows = {
            key: flow
            for key, flow in dict(session.get(FLOWS_KEY) or {}).items()
            if isinstance(flow, dict) and flow.get("at", 0) > now - FLOW_LIFETIME
        }
        flows[state] = {"nonce": nonce, "verifier": verifier, "next": next_path, "at": now}
        session[FLOWS_KEY] = dict(list(flows.items())[-MAX_FLOWS:])
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.oidc_client_id,
                "redirect_uri": self.redirect_uri(),
                "scope": " ".join(self.settings.oidc_scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        endpoint = str(metadata["authorization_endpoint"])
        return endpoint + ("&" if "?" in endpoint else "?") + query

    async def finish(
        self, session: ServerSession, state: str, code: str, iss: str | None = None
    ) -> str:
        """Complete the sign-in ``state`` names: redeem ``code``, check the ID token,
        sign the session in. Returns the path to go to next.

        Raises:
            ProviderTokenInvalid: unknown or expired state, a refused code or ID token.
            ProviderUnavailable: the provider did not answer in time.
        """
        flows = dict(session.get(FLOWS_KEY) or {})
        flow = flows.pop(state, None) if state else None
        session[FLOWS_KEY] = flows
        if not isinstance(flow, dict) or flow.get("at", 0) <= self.now() - FLOW_LIFETIME:
            raise ProviderTokenInvalid("unknown or expired sign-in (state)")
        if iss is not None and iss != self.provider.issuer:  # RFC 9207: no mix-up
            raise ProviderTokenInvalid("the answer comes from another issuer (iss)")
        answer = await self.provider.redeem(code, str(flow["verifier"]), self.redirect_uri())
        id_token = str(answer["id_token"])
        claims = await self.provider.verify(id_token)
        identity = check_id_token(
            claims,
            issuer=self.provider.issuer,
            client_id=self.settings.oidc_client_id,
            nonce=str(flow["nonce"]),
            now=self.now(),
            skew=self.skew,
        )
        user = claims.get(self.settings.oidc_user_claim)
        if not isinstance(user, str):
            raise ProviderTokenInvalid(f"the ID token has no {self.settings.oidc_user_claim}")
        del session[FLOWS_KEY]
        identity = ProviderIdentity(identity.issuer, identity.subject, identity.session, id_token)
        await self.watch.sign_in_from_provider(user, identity)
        return safe_next(str(flow.get("next") or "/"))

    async def end_session_url(self, identity: ProviderIdentity) -> str | None:
        """Where to send the browser to sign out at the provider too (RP-initiated
        logout), or ``None`` when the provider has no ``end_session_endpoint`` or
        cannot be reached (the session here has ended either way)."""
        try:
            endpoint = (await self.provider.metadata()).get("end_session_endpoint")
        except ProviderUnavailable as exc:
            logger.warning("no RP-initiated logout: %s", exc)
            return None
        if not isinstance(endpoint, str):
            return None
        query = {"client_id": self.settings.oidc_client_id}
        if identity.id_token:
            query["id_token_hint"] = identity.id_token
        if self.settings.oidc_post_logout_redirect_uri:
            query["post_logout_redirect_uri"] = self.settings.oidc_post_logout_redirect_uri
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(query)

    # -- back-channel logout ---------------------------------------------------------

    async def backchannel_logout(self, body: bytes, content_type: str | None) -> int:
        """Validate a back-channel logout request and end the sessions it names;
        returns how many ended. Raises :class:`ProviderTokenInvalid` (400),
        :class:`ProviderUnavailable` or :class:`BackendUnavailable` (501)."""
        if len(body) > MAX_LOGOUT_BODY:
            raise ProviderTokenInvalid(f"the request body is larger than {MAX_LOGOUT_BODY} bytes")
        if (content_type or "").split(";")[0].strip().lower() != (
            "application/x-www-form-urlencoded"
        ):
            raise ProviderTokenInvalid("the body is not application/x-www-form-urlencoded")
        try:
            form = parse_qs(body.decode("ascii"), strict_parsing=True, max_num_fields=8)
        except (ValueError, UnicodeError):
            raise ProviderTokenInvalid("the body is not a valid form") from None
        tokens = form.get("logout_token", [])
        if len(tokens) != 1:
            raise ProviderTokenInvalid("exactly one logout_token is required")
        claims = await self.provider.verify(tokens[0])
        checked = check_logout_token(
            claims,
            issuer=self.provider.issuer,
            client_id=self.settings.oidc_client_id,
            now=self.now(),
            skew=self.skew,
        )
        return await self.sessions.log_out(checked)


def _go(url: str) -> Any:
    """A redirect no cache keeps (each carries a one-time state or ends a session)."""
    response = redirect(url)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _bounded_body(limit: int) -> bytes:
    """The request body, read no further than ``limit + 1`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return b"\0" * (limit + 1)  # refused without reading it
    body = bytearray()
    async for chunk in request.body:
        body += chunk
        if len(body) > limit:
            break
    return bytes(body)


def create_sso_blueprint(watch: SSOHost, sso: SingleSignOn) -> Blueprint:
    """The routes of :mod:`sessionwatch.web.oidc` (mounted at ``{url_prefix}/oidc``)."""
    bp = Blueprint("sessionwatch_sso", __name__)

    @bp.get("/login")
    async def login() -> Any:
        session = watch.current_session()
        try:
            url = await sso.start(session, safe_next(request.args.get("next")))
        except ProviderUnavailable as exc:
            logger.error("sign-in not started: %s", exc)
            return error_response(503, Code.PROVIDER_UNAVAILABLE)
        return _go(url)

    @bp.get("/callback")
    async def callback() -> Any:
        session = watch.current_session()
        error = request.args.get("error")
        if error is not None:
            security_event("sso_refused", logging.WARNING, reason="provider_error")
            again = sso.settings.url_prefix + "/oidc/login"
            return error_response(400, Code.SIGN_IN_FAILED, again=again)
        try:
            args = request.args
            target = await sso.finish(
                session, args.get("state", ""), args.get("code", ""), args.get("iss")
            )
        except ProviderUnavailable as exc:
            logger.error("sign-in not completed: %s", exc)
            return error_response(503, Code.PROVIDER_UNAVAILABLE)
        except (ProviderTokenInvalid, InvalidUserId) as exc:
            security_event("sso_refused", logging.WARNING, reason=str(exc)[:120])
            return error_response(400, Code.SIGN_IN_FAILED)
        return _go(target)

    @bp.post("/logout")
    async def logout() -> Any:
        form = await request.form
        return _go(await watch.logout() or safe_next(form.get("next")))

    @bp.post("/backchannel-logout")
    async def backchannel_logout() -> Response:
        body = await _bounded_body(MAX_LOGOUT_BODY)
        try:
            ended = await sso.backchannel_logout(body, request.headers.get("Content-Type"))
        except ProviderTokenInvalid as exc:
            security_event("provider_logout_refused", logging.WARNING, reason=str(exc)[:120])
            return _oauth_error(400, Code.INVALID_REQUEST, str(exc))
        except (ProviderUnavailable, BackendUnavailable) as exc:
            logger.error("back-channel logout failed: %s", exc)
            return _oauth_error(501, Code.LOGOUT_FAILED, "the logout could not be carried out")
        response = Response("", status=200)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-SessionWatch-Ended"] = str(ended)
        return response

    return bp
