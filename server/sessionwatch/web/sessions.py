"""Server-side sessions behind Quart's ``session``.

The cookie holds only the signed session id; data lives in the backend. Opening a
session is one backend round trip (read, expiry check and, when due, the idle refresh
happen in one atomic step), so a protected request costs exactly one. A cookie that is
forged, malformed, oversized or names a session that is gone is never adopted: the
request gets a fresh, empty session and a security log line records why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

from quart.json.tag import TaggedJSONSerializer
from quart.sessions import SessionInterface, SessionMixin
from quart.wrappers import BaseRequestWebsocket
from quart.wrappers import Response as QuartResponse
from werkzeug.http import dump_cookie
from werkzeug.wrappers import Response as WerkzeugResponse

from ..backends.base import EndReason, Lookup, SessionRecord
from ..core.audit import security_event, security_log
from ..core.config import Settings
from ..core.exceptions import BackendUnavailable
from ..core.refusals import BACKEND_UNAVAILABLE
from ..core.tabs import TAB_HEADER
from ..core.tokens import CookieSigner, public_id
from ..engine import SessionEngine
from .bypass import nothing_before_view
from .responses import refusal_response

if TYPE_CHECKING:
    from quart import Quart

__all__ = [
    "MAX_COOKIE_COPIES",
    "ServerSession",
    "ServerSessionInterface",
    "UnavailableSession",
    "security_log",
]

# Copies of the session cookie looked at in one request, and genuine ones loaded.
MAX_COOKIE_COPIES = 8
MAX_GENUINE_COPIES = 3

logger = logging.getLogger(__name__)


async def _become_unavailable(response: QuartResponse | WerkzeugResponse) -> None:
    """Turn an answer already made into ``503 backend_unavailable`` (the request's
    changes could not all be stored: it is answered as failed, fail closed)."""
    failed = refusal_response(BACKEND_UNAVAILABLE)
    response.status_code = 503
    response.headers.pop("Location", None)
    response.set_data(await failed.get_data())
    response.headers["Content-Type"] = failed.headers["Content-Type"]


CookieAction = Literal["set", "clear"] | None


class ServerSession(dict[str, Any], SessionMixin):
    """The request's session: a dict of app data plus the server-side record.

    Attributes:
        record: the live record, ``None`` for a session not stored yet.
        ended: why the presented cookie was not adopted (``"expired"``, ``"revoked"``,
            ``"evicted"``, ``"logged_out"``), or ``None``.
        pending: the public id of a genuine cookie whose record is not loaded yet (only
            on ``POST {url_prefix}/claim``, whose claim loads it; see
            :meth:`ServerSessionInterface.may_defer`), else ``None``.
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        record: SessionRecord | None = None,
        ended: EndReason | None = None,
        stored_data: str = "",
        refused: bool = False,
        pending: str | None = None,
    ) -> None:
        super().__init__(data or {})
        self.session_id = session_id
        self.record = record
        self.ended = ended
        self.stored_data = stored_data  # serialised data as loaded, to detect changes
        self.pending = pending
        # The calling tab's token when the request signed in (sent as a header).
        self.issued_tab: str | None = None
        # A refused cookie is cleared unless the request starts a new session.
        self.cookie_action: CookieAction = "clear" if refused else None
        self.modified = False
        self.accessed = False

    @property
    def new(self) -> bool:  # type: ignore[override]
        return self.record is None and self.pending is None

    @property
    def public_id(self) -> str | None:
        """The public id of the stored session, if any (loaded or pending)."""
        return self.record.id if self.record is not None else self.pending

    def adopt(self, record: SessionRecord, data: dict[str, Any]) -> None:
        """Load a pending session from a record read by another operation (a claim)."""
        self.update(data)
        self.record = record
        self.stored_data = record.data
        self.pending = None

    def claimed(self, record: SessionRecord) -> None:
        """Take the record a claim returned (loading a pending session from it)."""
        if self.pending is not None:
            data = ServerSessionInterface.serializer.loads(record.data) if record.data else {}
            self.adopt(record, data)
        else:
            self.record = record

    def bind(self, session_id: str, record: SessionRecord) -> None:
        """Point this session at a (new) stored record and send its cookie."""
        self.session_id = session_id
        self.record = record
        self.stored_data = record.data
        self.ended = None
        self.cookie_action = "set"

    def unbind(self) -> None:
        """Forget the stored record, drop the data and clear the cookie."""
        self.clear()
        self.session_id = None
        self.record = None
        self.pending = None
        self.stored_data = ""
        self.cookie_action = "clear"


class UnavailableSession(SessionMixin):
    """Stands in when the backend cannot be reached: any use raises
    :class:`BackendUnavailable` (answered 503), so nothing reads an empty session as
    "signed out" and nothing is written over real data."""

    new = False
    modified = False
    accessed = False

    def __init__(self, error: BackendUnavailable) -> None:
        self.error = error

    def _fail(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise self.error

    __getitem__ = __setitem__ = __delitem__ = __contains__ = _fail
    get = pop = setdefault = update = clear = keys = values = items = _fail

    def __iter__(self) -> Iterator[str]:
        raise self.error

    def __len__(self) -> int:
        raise self.error


class SessionHost(Protocol):
    """What the session interface needs of the extension (which wires it)."""

    settings: Settings
    claim_path: str

    @property
    def engine(self) -> SessionEngine: ...

    @property
    def signer(self) -> CookieSigner: ...

    def request_is_secure(self) -> bool: ...

    async def start_session(self, session: ServerSession, data: str = "") -> SessionRecord: ...


class ServerSessionInterface(SessionInterface):
    """Quart's session interface backed by a :class:`~sessionwatch.SessionWatch`."""

    serializer = TaggedJSONSerializer()

    def __init__(self, host: SessionHost) -> None:
        self.host = host

    # -- cookie attributes ---------------------------------------------------------

    def cookie_name(self, app: Quart, secure_request: bool) -> str:
        """``__Host-<name>`` over HTTPS when the cookie qualifies (Secure, Path=/,
        no Domain), else ``<name>``."""
        name = self.get_cookie_name(app)
        if (
            secure_request
            and self.get_cookie_secure(app)
            and self.get_cookie_domain(app) is None
            and self.get_cookie_path(app) == "/"
            and not name.startswith(("__Host-", "__Secure-"))
        ):
            return "__Host-" + name
        return name

    def get_cookie_secure(self, app: Quart) -> bool:
        return self.host.settings.cookie_secure

    def get_cookie_samesite(self, app: Quart) -> str:
        configured = app.config.get("SESSION_COOKIE_SAMESITE")
        return configured or self.host.settings.cookie_samesite

    # -- open / save ----------------------------------------------------------------

    async def open_session(self, app: Quart, request: BaseRequestWebsocket) -> SessionMixin:
        secure = request.scheme in ("https", "wss")
        values = request.cookies.getlist(self.cookie_name(app, secure))
        return await self.open_cookies(values, defer=bool(values) and self.may_defer(app, request))

    async def open_cookies(self, values: list[str], *, defer: bool) -> SessionMixin:
        """The session of a request carrying the session cookie ``values`` (every copy
        of the name, in order). With ``defer`` a single genuine cookie is not loaded but
        left pending for the claim (see :meth:`may_defer`). Shared by Quart's
        :meth:`open_session` and the raw HTTP path (:mod:`sessionwatch.web.rawhttp`)."""
        if not values:
            return ServerSession()
        candidates = self.genuine_ids(values)
        if not candidates:
            return ServerSession(refused=True)
        if len(candidates) == 1 and defer:
            session_id = candidates[0]
            return ServerSession(session_id=session_id, pending=public_id(session_id))
        ended: EndReason | None = None
        for session_id in candidates:
            pid = public_id(session_id)
            try:
                found = await self.load(pid)
            except BackendUnavailable as exc:
                return UnavailableSession(exc)
            if found.record is not None:
                record = found.record
                data = self.serializer.loads(record.data) if record.data else {}
                return ServerSession(
                    data, session_id=session_id, record=record, stored_data=record.data
                )
            security_event(
                "cookie_refused", logging.INFO, session=pid, reason=found.ended or "unknown"
            )
            ended = ended or found.ended
        return ServerSession(ended=ended, refused=True)

    def genuine_ids(self, values: list[str]) -> list[str]:
        """The distinct session ids of the genuine copies among ``values`` (a request
        may carry several cookies of the name: one tossed by a sibling subdomain next to
        the real one), in order, at most :data:`MAX_COOKIE_COPIES` looked at. Every copy
        is verified; the first genuine, live one is used and none is deleted."""
        ids: list[str] = []
        for raw in values[:MAX_COOKIE_COPIES]:
            if len(raw) > self.host.settings.max_cookie_length:
                security_event(
                    "cookie_refused", logging.WARNING, reason="oversized", bytes=len(raw)
                )
                continue
            session_id = self.host.signer.unsign(raw)
            if session_id is None:
                security_event("cookie_refused", logging.WARNING, reason="bad_signature")
            elif session_id not in ids:
                ids.append(session_id)
        if len(values) > 1:
            security_event(
                "cookie_duplicates", logging.WARNING, copies=len(values), genuine=len(ids)
            )
        return ids[:MAX_GENUINE_COPIES]

    def session_id(self, raw: str) -> str | None:
        """The session id a cookie value carries, or ``None`` (oversized, forged or
        malformed; :meth:`open_session` logs which)."""
        if len(raw) > self.host.settings.max_cookie_length:
            return None
        return self.host.signer.unsign(raw)

    async def load(self, pid: str) -> Lookup:
        """Load session ``pid`` (refreshing its idle expiry when due)."""
        return await self.host.engine.load(pid)

    def may_defer(self, app: Quart, request: BaseRequestWebsocket) -> bool:
        """True for ``POST {url_prefix}/claim`` when nothing can read the session before
        the view: no app-wide or blueprint ``before_request`` or URL value preprocessor,
        no ``request_started`` receiver. The claim then loads the session in its own
        round trip instead of a load before it (one round trip instead of two)."""
        if request.method != "POST" or request.path != self.host.claim_path:
            return False
        return nothing_before_view(app, "sessionwatch")

    async def save_session(
        self, app: Quart, session: SessionMixin, response: QuartResponse | WerkzeugResponse | None
    ) -> None:
        if not isinstance(session, ServerSession):
            return
        try:
            await self.store(session)
        except BackendUnavailable as exc:
            if response is None:
                raise
            # This runs after the app's error handlers: answer 503 here, as any other
            # backend failure is answered, instead of letting Quart turn it into a 500.
            logger.error("backend unavailable while saving the session: %s", exc)
            await _become_unavailable(response)
        if response is None:  # a WebSocket: data saved, no cookie to send
            return
        for name, value in self.answer_headers(app, session, self.host.request_is_secure()):
            if name == "Vary":
                response.vary.add(value)
            elif name == "Set-Cookie":
                response.headers.add(name, value)
            else:
                response.headers[name] = value

    async def store(self, session: ServerSession) -> None:
        """Store the session's data when the request changed it (see :meth:`_save_data`).

        Raises:
            BackendUnavailable: it could not be stored (the answer becomes a 503).
        """
        if session.pending is not None:
            # Never loaded (the claim answered before claiming, e.g. 415): nothing was
            # read, so nothing can have changed; data written blind is not merged.
            if session:
                security_event("data_not_saved", logging.WARNING, session=session.pending)
            return
        await self._save_data(session)

    def answer_headers(
        self, app: Quart, session: ServerSession, secure_request: bool
    ) -> list[tuple[str, str]]:
        """The headers the answer gets for ``session`` once stored: ``Vary: Cookie``,
        the tab token issued at sign-in and the ``Set-Cookie`` that sets or clears the
        cookie, as ``response.set_cookie`` / ``delete_cookie`` write it. Shared by
        :meth:`save_session` and the raw HTTP path (:mod:`sessionwatch.web.rawhttp`)."""
        if session.pending is not None:
            return [("Vary", "Cookie")]
        headers: list[tuple[str, str]] = []
        if session.record is not None or session.cookie_action is not None:
            headers.append(("Vary", "Cookie"))  # the answer depends on who asks: never share it
        if session.issued_tab is not None and session.record is not None:
            headers.append((TAB_HEADER, session.issued_tab))
        if session.cookie_action is None:
            return headers
        name = self.cookie_name(app, secure_request)
        attributes: dict[str, Any] = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "httponly": self.get_cookie_httponly(app),
            "samesite": self.get_cookie_samesite(app),
            "max_size": app.config["MAX_COOKIE_SIZE"],
        }
        if session.cookie_action == "clear" or session.session_id is None:
            cookie = dump_cookie(name, "", max_age=0, expires=0, **attributes)
        else:
            cookie = dump_cookie(
                name,
                self.host.signer.sign(session.session_id),
                partitioned=self.get_cookie_partitioned(app),
                **attributes,
            )
        headers.append(("Set-Cookie", cookie))
        return headers

    async def _save_data(self, session: ServerSession) -> None:
        """Write the app data when it changed (nested changes included)."""
        data = self.serializer.dumps(dict(session)) if session else ""
        if session.record is None:
            if data:
                await self.host.start_session(session, data)
            return
        if data == session.stored_data:
            return
        stored = await self.host.engine.save_data(session.record.id, data)
        if stored:
            session.stored_data = data
        else:
            # Revoked or expired while this request ran: the data goes nowhere and the
            # cookie is cleared, rather than resurrecting the session.
            security_event("ended_during_request", session=session.record.id)
            session.unbind()
