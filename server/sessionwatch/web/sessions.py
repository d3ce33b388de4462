"""Server-side sessions behind Quart's ``session``.

The cookie holds only the signed session id; data lives in the backend. Opening a
session is one backend round trip (read, expiry check and, when due, the idle refresh
happen in one atomic step), so a protected request costs exactly one. A cookie that is
forged, malformed, oversized or names a session that is gone is never adopted: the
request gets a fresh, empty session and a security log line records why. Copies of the
cookie naming several live sessions adopt none (401 ``cookie_conflict``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, NoReturn, Protocol, cast

from quart.json.tag import TaggedJSONSerializer
from quart.sessions import SessionInterface, SessionMixin
from quart.wrappers import BaseRequestWebsocket
from quart.wrappers import Response as QuartResponse
from werkzeug.http import dump_cookie
from werkzeug.wrappers import Response as WerkzeugResponse

from ..backends.base import EndReason, Lookup, SessionRecord
from ..core.audit import security_event, security_log
from ..core.codes import Code
from ..core.config import Settings
from ..core.exceptions import BackendUnavailable
from ..core.refusals import BACKEND_UNAVAILABLE
from ..core.tabs import TAB_HEADER
from ..core.tokens import CookieSigner, public_id
from ..engine import SessionEngine, client_address
from .bypass import nothing_before_view
from .responses import refusal_response

if TYPE_CHECKING:
    from quart import Quart

__all__ = [
    "COOKIE_CONFLICT",
    "MAX_COOKIE_COPIES",
    "ServerSession",
    "ServerSessionInterface",
    "SessionCookie",
    "UnavailableSession",
    "copies_named",
    "security_log",
]

# Copies of the session cookie verified in one request, and genuine ones loaded (in one
# batch). More is refused as a conflict, never cut: see genuine_ids. A sibling subdomain
# can put one copy per path prefix of the request's path ahead of the user's (three for
# /_sessionwatch/state); a browser keeps at most ~180 cookies per site.
MAX_COOKIE_COPIES = 64
MAX_GENUINE_COPIES = 8
# ServerSession.ended when several live sessions were presented (401 cookie_conflict).
COOKIE_CONFLICT: Final = Code.COOKIE_CONFLICT

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
# Why the presented cookie(s) were not adopted: the session ended, or several live ones.
NotAdopted = EndReason | Literal[Code.COOKIE_CONFLICT]


class ServerSession(dict[str, Any], SessionMixin):
    """The request's session: a dict of app data plus the server-side record.

    Attributes:
        record: the live record, ``None`` for a session not stored yet.
        ended: why the presented cookie was not adopted (``"expired"``, ``"revoked"``,
            ``"evicted"``, ``"logged_out"``, or ``"cookie_conflict"``: copies of several
            live sessions, see :attr:`conflict`), or ``None``.
        pending: the public id of a genuine cookie whose record is not loaded yet (only
            on ``POST {url_prefix}/claim``, whose claim loads it; see
            :meth:`ServerSessionInterface.may_defer`), else ``None``.
        several: the request carried several copies of the cookie: it is never cleared
            (which copy is the user's is unknown; a new one may still be set).
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        record: SessionRecord | None = None,
        ended: NotAdopted | None = None,
        stored_data: str = "",
        refused: bool = False,
        pending: str | None = None,
        several: bool = False,
    ) -> None:
        super().__init__(data or {})
        self.session_id = session_id
        self.record = record
        self.ended = ended
        self.stored_data = stored_data  # serialised data as loaded, to detect changes
        self.pending = pending
        self.several = several
        # The calling tab's token when the request signed in (sent as a header).
        self.issued_tab: str | None = None
        # A refused cookie is cleared unless the request starts a new session.
        self.cookie_action: CookieAction = "clear" if refused else None
        # The remember cookie (docs/policies.md, "Remember-me"): its next value to set,
        # or "" to clear it; None leaves it as it is.
        self.remember: str | None = None
        self.modified = False
        self.accessed = False

    @property
    def new(self) -> bool:  # type: ignore[override]
        return self.record is None and self.pending is None

    @property
    def conflict(self) -> bool:
        """Copies of several live sessions were presented: none is used, and no session
        may be started either (its cookie would replace the user's)."""
        return self.ended == COOKIE_CONFLICT

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

    def restored(self, session_id: str, record: SessionRecord, remember: str) -> None:
        """Point this session at one a remember cookie restored, and send both cookies."""
        data = ServerSessionInterface.serializer.loads(record.data) if record.data else {}
        self.update(data)
        self.bind(session_id, record)
        self.remember = remember

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


class SessionCookie(NamedTuple):
    """The session cookie as an answer sets it: ``value`` is empty when it clears it."""

    name: str
    value: str
    header: str  # the Set-Cookie value


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


def copies_named(headers: list[str], name: str) -> int:
    """How many times ``Cookie`` header values ``headers`` name the cookie ``name``,
    parsable or not: a copy no parser accepts (a lone ``"``) is still a copy someone
    set, so a request with it beside another never clears either."""
    return sum(
        1
        for header in headers
        for pair in header.split(";")
        if pair.split("=", 1)[0].strip() == name
    )


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

    def remember_cookie_name(self, app: Quart, secure_request: bool) -> str:
        """The remember cookie's name: ``__Host-<name>`` over HTTPS with Secure cookies
        (it is always Path=/ without Domain), else ``<name>``."""
        name = self.host.settings.remember_cookie_name
        if secure_request and self.get_cookie_secure(app):
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
        name = self.cookie_name(app, secure)
        values = request.cookies.getlist(name)
        named = copies_named(request.headers.getlist("Cookie"), name)
        session = await self.open_cookies(
            values, defer=bool(values) and self.may_defer(app, request), named=named
        )
        remember = request.cookies.get(self.remember_cookie_name(app, secure))
        if remember and request.scheme in ("http", "https"):  # a handshake sets no cookie
            return await self.restore(session, remember, request)
        return session

    async def restore(
        self, session: SessionMixin, cookie: str, request: BaseRequestWebsocket
    ) -> SessionMixin:
        """``session``, or, when it holds no live session (none presented, or ended), a
        new one a remember cookie restores (docs/policies.md, "Remember-me"): the first
        request after a browser restart signs the user in again, silently."""
        if not isinstance(session, ServerSession) or session.record is not None:
            return session
        if session.pending is not None or session.conflict or session.several:
            return session
        host = self.host
        address = client_address(
            request.remote_addr,
            request.headers.getlist("X-Forwarded-For"),
            trust_forwarded_for=host.settings.trust_forwarded_for,
        )
        try:
            restored = await host.engine.restore(cookie, request.headers.get("User-Agent"), address)
        except BackendUnavailable as exc:
            return UnavailableSession(exc)
        if restored.session_id is not None and restored.record is not None:
            session.restored(restored.session_id, restored.record, restored.cookie or "")
        elif restored.clear:
            session.remember = ""
        return session

    async def open_cookies(self, values: list[str], *, defer: bool, named: int = 0) -> SessionMixin:
        """The session of a request carrying the session cookie ``values`` (every copy
        of the name, in order). With ``defer`` a single genuine cookie is not loaded but
        left pending for the claim (see :meth:`may_defer`). Shared by Quart's
        :meth:`open_session` and the raw HTTP path (:mod:`sessionwatch.web.rawhttp`).

        Several copies (a sibling subdomain can toss its own next to the user's, and a
        browser sends those on longer paths first): every copy is verified and every
        genuine one loaded, never only the first few; the one live session among them is
        used, copies of several live ones are a conflict (none used, none started), and a
        request with several copies clears none of them (it cannot tell which one is the
        user's). docs/security.md, "Copies of the session cookie", says why. ``named``:
        how many times the request's ``Cookie`` headers name the cookie
        (:func:`copies_named`), malformed copies the parser dropped included."""
        if not values:
            return ServerSession()
        several = max(len(values), named) > 1
        candidates = self.genuine_ids(values)
        if candidates is None:
            return ServerSession(ended=COOKIE_CONFLICT, several=several)
        if not candidates:
            return ServerSession(refused=True, several=several)
        if len(candidates) == 1 and defer:
            session_id = candidates[0]
            pid = public_id(session_id)
            return ServerSession(session_id=session_id, pending=pid, several=several)
        try:
            found = await self.load_all([public_id(session_id) for session_id in candidates])
        except BackendUnavailable as exc:
            return UnavailableSession(exc)
        live = [
            (sid, lookup.record)
            for sid, lookup in zip(candidates, found, strict=True)
            if lookup.record
        ]
        if len(live) > 1:
            security_event(
                "cookie_conflict",
                logging.WARNING,
                copies=len(values),
                sessions=[record.id for _, record in live],
            )
            return ServerSession(ended=COOKIE_CONFLICT, several=several)
        if live:
            session_id, record = live[0]
            data = self.serializer.loads(record.data) if record.data else {}
            return ServerSession(
                data, session_id=session_id, record=record, stored_data=record.data, several=several
            )
        for session_id, lookup in zip(candidates, found, strict=True):
            security_event(
                "cookie_refused",
                logging.INFO,
                session=public_id(session_id),
                reason=lookup.ended or "unknown",
            )
        ended = next((lookup.ended for lookup in found if lookup.ended), None)
        return ServerSession(ended=ended, refused=True, several=several)

    def genuine_ids(self, values: list[str]) -> list[str] | None:
        """The distinct session ids of the genuine copies among ``values``, in order;
        ``None`` when there are more copies than :data:`MAX_COOKIE_COPIES` or more
        genuine ids than :data:`MAX_GENUINE_COPIES`. Over a bound the request is refused
        (``cookie_conflict``) rather than cut short: a cut would let copies placed before
        the user's push it out of view."""
        if len(values) > MAX_COOKIE_COPIES:
            security_event("cookie_conflict", logging.WARNING, copies=len(values))
            return None
        ids: list[str] = []
        for raw in values:
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
        if len(ids) > MAX_GENUINE_COPIES:
            security_event("cookie_conflict", logging.WARNING, genuine=len(ids))
            return None
        return ids

    def session_id(self, raw: str) -> str | None:
        """The session id a cookie value carries, or ``None`` (oversized, forged or
        malformed; :meth:`open_session` logs which)."""
        if len(raw) > self.host.settings.max_cookie_length:
            return None
        return self.host.signer.unsign(raw)

    async def load(self, pid: str) -> Lookup:
        """Load session ``pid`` (refreshing its idle expiry when due)."""
        return await self.host.engine.load(pid)

    async def load_all(self, pids: list[str]) -> list[Lookup]:
        """Load every session of ``pids`` at once (concurrent loads share the round
        trip on the pipelined connection), in order.

        Raises:
            BackendUnavailable: any of them could not be loaded.
        """
        if len(pids) == 1:
            return [await self.load(pids[0])]
        found = await asyncio.gather(*(self.load(pid) for pid in pids), return_exceptions=True)
        for result in found:
            if isinstance(result, BaseException):
                raise result
        return cast("list[Lookup]", found)

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
        if session.pending is not None or session.conflict:
            # Never loaded (the claim answered before claiming, e.g. 415): nothing was
            # read, so nothing can have changed; data written blind is not merged. In a
            # conflict a new session's cookie would replace the user's.
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
        if (
            session.record is not None
            or session.cookie_action is not None
            or session.remember is not None
        ):
            headers.append(("Vary", "Cookie"))  # the answer depends on who asks: never share it
        if session.issued_tab is not None and session.record is not None:
            headers.append((TAB_HEADER, session.issued_tab))
        headers += [
            ("Set-Cookie", value) for _, value in self.cookies_to_set(app, session, secure_request)
        ]
        return headers

    def cookies_to_set(
        self, app: Quart, session: ServerSession, secure_request: bool
    ) -> list[tuple[str, str]]:
        """The ``Set-Cookie`` values of :meth:`answer_headers`, as ``("session" |
        "remember", value)``."""
        cookies = []
        if session.remember is not None:
            cookie = self.remember_cookie(app, secure_request, session.remember or None)
            cookies.append(("remember", cookie.header))
        if session.pending is not None or session.cookie_action is None:
            return cookies
        if session.cookie_action == "clear" and session.several:
            return cookies  # several copies: clearing would hit the user's as likely as not
        value = None if session.cookie_action == "clear" else session.session_id
        cookies.append(("session", self.session_cookie(app, secure_request, value).header))
        return cookies

    def remember_cookie(self, app: Quart, secure_request: bool, value: str | None) -> SessionCookie:
        """The remember cookie set to ``value`` (a signed token; ``None``: cleared):
        HttpOnly, Path=/, no Domain, Secure and SameSite as the session cookie, kept
        for the family's lifetime."""
        name = self.remember_cookie_name(app, secure_request)
        attributes: dict[str, Any] = {
            "path": "/",
            "secure": self.get_cookie_secure(app),
            "httponly": True,
            "samesite": self.get_cookie_samesite(app),
        }
        if value is None:
            return SessionCookie(
                name, "", dump_cookie(name, "", max_age=0, expires=0, **attributes)
            )
        lifetime = int(self.host.settings.remember_lifetime)
        return SessionCookie(name, value, dump_cookie(name, value, max_age=lifetime, **attributes))

    def session_cookie(
        self, app: Quart, secure_request: bool, session_id: str | None
    ) -> SessionCookie:
        """The session cookie that sets it to the signed ``session_id`` (``None``:
        clears it), its ``Set-Cookie`` value as ``response.set_cookie`` /
        ``delete_cookie`` write it. The one source of the cookie's name and attributes:
        the extension's answers and the session API's relayed cookie both use it."""
        name = self.cookie_name(app, secure_request)
        attributes: dict[str, Any] = {
            "domain": self.get_cookie_domain(app),
            "path": self.get_cookie_path(app),
            "secure": self.get_cookie_secure(app),
            "httponly": self.get_cookie_httponly(app),
            "samesite": self.get_cookie_samesite(app),
            "max_size": app.config["MAX_COOKIE_SIZE"],
        }
        if session_id is None:
            return SessionCookie(
                name, "", dump_cookie(name, "", max_age=0, expires=0, **attributes)
            )
        value = self.host.signer.sign(session_id)
        partitioned = self.get_cookie_partitioned(app)
        header = dump_cookie(name, value, partitioned=partitioned, **attributes)
        return SessionCookie(name, value, header)

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
