"""Forward-auth for reverse proxies: ``GET {url_prefix}/verify`` and ``/refusal``.

nginx (``auth_request``), Traefik (``ForwardAuth``) and Caddy (``forward_auth``) ask
``/verify`` before they forward a request to the upstream app. It applies the rules of
``@active_tab_required`` to the *original* request, named by the headers of the proxy
the deployment names (``SESSIONWATCH_FORWARD_AUTH``, default ``nginx``):

- nginx: ``X-Original-Method`` and ``X-Original-URI`` (set in the auth location);
- Traefik and Caddy: ``X-Forwarded-Method`` and ``X-Forwarded-Uri`` (sent by default).

The request never picks the style: Traefik and Caddy pass a client's own
``X-Original-Method: GET`` through, and when its mere presence switched to nginx's
headers a stale tab, a missing session and a foreign origin all passed (issue 22).
Without the configured style's method header the answer is 400 (fail closed).

``?require=`` picks the rule, per location in the proxy's configuration:
``auto`` (default: safe methods need a session, unsafe ones the active tab and an
allowed origin), ``session`` (a session; an allowed origin for unsafe methods), ``tab``
(the active tab, whatever the method) or ``none`` (never refuses; only says who it is).

``?max_age=<seconds>`` adds step-up, per location too: the session's sign-in (or last
``watch.reauthenticated()``) must be at most that old, else 401 ``reauth_required``
with ``max_age`` (a navigation, with the ``reauth_url`` setting: a 303 there, through
``/refusal`` behind nginx). Anything but 1 to 86400 digits (or several values) is a 400:
a bad configuration fails closed; an empty value is no step-up (the documented nginx
location passes its optional capture). The proxy's configuration sets it, never the
client (the auth request's URL is the configuration's).

A pass is ``204`` with ``X-SessionWatch-User`` (percent-encoded UTF-8, empty when
anonymous), ``X-SessionWatch-Session`` (public id) and ``X-SessionWatch-Tab-Status``.
The decision is the engine's (:func:`~sessionwatch.engine.check_request`, through
``SessionWatch.check_request``), on the facts of the original request: this module only
reads the configured proxy's headers into them and writes the answer in that proxy's
form. The host and scheme the browser used are ``X-Forwarded-Host`` and
``X-Forwarded-Proto`` from a proxy named in ``--forwarded-allow-ips`` only
(:mod:`.proxies`); from any other peer the request's own ``Host`` and scheme count.

A refusal is the JSON (or HTML page) of a protected route — except that nginx turns
any status but 2xx, 401 and 403 into a 500. With nginx's headers every refusal other
than a 401 is therefore answered 403, and every refusal carries
``X-SessionWatch-Refusal`` (its JSON: status, code, fields): the documented nginx
configuration sends such requests to ``/refusal`` (``error_page`` + a named location),
which answers that status and body without touching the backend — so a stale tab gets
409 ``tab_superseded`` and a backend outage 503 through nginx too. One backend round
trip per verification (opening the session).

``GET /verify`` is answered on raw ASGI (:func:`sessionwatch.web.rawhttp.add_route`,
as ``/claim`` and ``/state`` are) whenever Quart would run nothing but this view for it:
the same facts, the same session, the same decision and the same answer, byte for byte,
without Quart's request machinery (tests/web/test_doors_agree.py compares both doors).
Anything else (``HEAD``, an app with hooks of its own, a non-empty ``?max_age=``, a
request with a remember cookie) is Quart's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote

from quart import Blueprint, Response, request

from ..core import jsonlimits
from ..core.codes import Code
from ..core.config import is_local_path
from ..core.exceptions import ConfigurationError
from ..core.refusals import Refusal
from ..engine import (
    MAX_REAUTH_AGE,
    Pass,
    RequestFacts,
    Requirement,
    check_request,
    parse_max_age,
)
from ..web import rawhttp
from ..web.responses import error_response, reauth_response
from ..web.sessions import ServerSession
from .proxies import FORWARDED_HOST

if TYPE_CHECKING:
    from ..web.extension import SessionWatch

__all__ = [
    "REFUSAL_HEADER",
    "SET_COOKIE_HEADERS",
    "create_forward_auth_blueprint",
    "refusal_from_header",
]

REFUSAL_HEADER: Final = "X-SessionWatch-Refusal"
# A remember cookie restores a session inside /verify (docs/policies.md, "Remember-me"):
# the cookies it sets must reach the browser through the proxy. Besides Set-Cookie
# (Traefik's addAuthCookiesToResponse takes those), each goes out alone under its own name
# here (empty when there is none), which nginx's auth_request_set can capture (it cannot
# pick one of several Set-Cookie lines) and Caddy's forward_auth can copy onto the answer
# (its copy_headers writes a placeholder's own text for a header that is missing).
SET_COOKIE_HEADERS: Final = {
    "session": "X-SessionWatch-Set-Session",
    "remember": "X-SessionWatch-Set-Remember",
}
# Per proxy: the headers naming the original request's method and URI.
_ORIGINAL_HEADERS: Final = {
    "nginx": ("X-Original-Method", "X-Original-URI"),
    "traefik": ("X-Forwarded-Method", "X-Forwarded-Uri"),
    "caddy": ("X-Forwarded-Method", "X-Forwarded-Uri"),
}
REQUIREMENTS: Final[tuple[Requirement, ...]] = ("auto", "session", "tab", "none")
_METHOD_RE: Final = re.compile(r"[A-Z][A-Z-]{0,19}")
# What /refusal may render: the refusals /verify gives, nothing else.
_REFUSAL_CODES: Final = {
    401: {
        Code.NO_SESSION,
        Code.EXPIRED,
        Code.REVOKED,
        Code.COOKIE_CONFLICT,
        Code.NOT_SIGNED_IN,
        Code.REAUTH_REQUIRED,
    },
    403: {Code.ORIGIN_FORBIDDEN},
    409: {Code.TAB_SUPERSEDED, Code.TAB_INVALID, Code.TAB_MISSING},
    503: {Code.BACKEND_UNAVAILABLE},
}
_MAX_REFUSAL: Final = 2048
_MAX_URI: Final = 2048
_BY_FIELDS: Final = {"browser", "os", "place", "at", "same_browser"}


def refusal_header(refusal: Refusal) -> str:
    """``X-SessionWatch-Refusal``: the refusal's status, code and fields as JSON."""
    value = {"status": refusal.status, "error": str(refusal.code), **refusal.fields}
    return json.dumps(value, separators=(",", ":"))


def refusal_from_header(raw: str | None) -> Refusal | None:
    """Parse and check ``X-SessionWatch-Refusal``; ``None`` when it is not one of the
    refusals /verify gives (it comes back from the proxy, so it is input)."""
    if not raw or len(raw) > _MAX_REFUSAL:
        return None
    try:
        value = jsonlimits.loads(raw)
    except ValueError:  # malformed or nested too deeply
        return None
    if not isinstance(value, dict):
        return None
    status, code = value.get("status"), value.get("error")
    if type(status) is not int or code not in _REFUSAL_CODES.get(status, ()):
        return None
    fields: dict[str, Any] = {}
    reason = value.get("reason")
    if code == Code.REVOKED and reason in ("revoked", "evicted"):
        fields["reason"] = reason
    max_age = value.get("max_age")
    if code == Code.REAUTH_REQUIRED:
        if type(max_age) is not int or not 1 <= max_age <= MAX_REAUTH_AGE:
            return None
        fields["max_age"] = max_age
    by = value.get("by")
    if code == Code.TAB_SUPERSEDED and isinstance(by, dict):
        fields["by"] = {
            k: v
            for k, v in by.items()
            if k in _BY_FIELDS and isinstance(v, (str, int, bool)) and len(str(v)) <= 200
        }
    return Refusal(status, Code(str(code)), fields)


def original_facts(
    facts: RequestFacts, header: Callable[[str], str | None], scope: Any, proxy: str
) -> RequestFacts | str:
    """The facts of the request the proxy asks about: the method and URI from the
    configured ``proxy``'s headers (``header(name)``: the request's first line of it),
    the rest (cookies, ``Origin``, ``Sec-Fetch-Site``, tab token, address) as for any
    request (``facts``); or a message saying which header is missing or bad."""
    method_header = _ORIGINAL_HEADERS[proxy][0]
    method = header(method_header)
    if method is None:
        return (
            f"verify needs the original method in {method_header}: "
            f"SESSIONWATCH_FORWARD_AUTH is {proxy}"
        )
    if not _METHOD_RE.fullmatch(method):
        return f"{method_header} is not an HTTP method"
    host = scope.get(FORWARDED_HOST)  # set for a trusted proxy's requests only
    return facts._replace(
        method=method,
        path=original_uri(header, proxy),
        forwarded_host=host if isinstance(host, str) else None,
    )


def original_uri(header: Callable[[str], str | None], proxy: str) -> str:
    """The original request's URI, from the configured ``proxy``'s header (bounded)."""
    return (header(_ORIGINAL_HEADERS[proxy][1]) or "")[:_MAX_URI]


Check = Callable[[RequestFacts, Requirement], Pass | Refusal]


def verification(
    facts: RequestFacts,
    header: Callable[[str], str | None],
    scope: Any,
    requirement: str,
    *,
    proxy: str,
    check: Check,
) -> Pass | Refusal | str:
    """The one decision of both doors of ``/verify``: a message for a 400 (the
    configured proxy's headers missing or bad, then an unknown ``require``), else the
    engine's answer (``check``: :func:`~sessionwatch.engine.check_request` with the
    request's session) on the original request's facts (:func:`original_facts`)."""
    original = original_facts(facts, header, scope, proxy)
    if isinstance(original, str):
        return original
    if requirement not in REQUIREMENTS:
        return f"require must be one of {', '.join(REQUIREMENTS)}"
    return check(original, requirement)


def pass_headers(outcome: Pass) -> list[tuple[str, str]]:
    """The headers of a pass: who it is, for the upstream app."""
    record = outcome.record
    user = record.user if record is not None else None
    return [
        ("X-SessionWatch-User", quote(user or "", safe="@._-+~")),
        ("X-SessionWatch-Session", record.id if record is not None else ""),
        ("X-SessionWatch-Tab-Status", outcome.tab),
    ]


def step_up_asked(given: list[str]) -> bool:
    """Whether the ``max_age`` arguments ``given`` ask for step-up (an empty one, the
    documented nginx location's empty capture, does not)."""
    return bool(given) and given != [""]


def cookie_headers(cookies: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The :data:`SET_COOKIE_HEADERS` of an answer that sets ``cookies`` (``("session" |
    "remember", Set-Cookie value)``): every one, empty when none (Caddy copies each)."""
    values = dict(cookies)
    return [(header, values.get(kind, "")) for kind, header in SET_COOKIE_HEADERS.items()]


def refusal_status(refusal: Refusal, *, nginx: bool) -> int:
    """The status a refusal is answered with: nginx's ``auth_request`` passes only 401
    and 403 on (``error_page`` restores the rest from the refusal header)."""
    return 403 if nginx and refusal.status != 401 else refusal.status


# A pass, as Quart's ``Response(b"", status=204)`` starts it.
_EMPTY: Final = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0")]


def raw_verify(watch: SessionWatch, proxy: str) -> rawhttp.RawView:
    """``GET /verify`` on raw ASGI: the Quart view's decision and answer. Step-up
    (``?max_age=``) is the view's: its answer may be a redirect, and it reads the clock
    through the extension."""
    nginx = proxy == "nginx"

    async def answer(request: rawhttp.RawRequest) -> rawhttp.Answer | None:
        requirement = request.arg("require", "auto")
        max_age = request.args("max_age")
        if requirement is None or max_age is None:
            return None  # a query string Quart refuses: its answer
        if step_up_asked(max_age):
            return None  # the view's (before anything was read)
        facts = request.facts()
        session = await request.open_session(facts)
        live = isinstance(session, ServerSession)  # else the backend was unreachable
        record = session.record if isinstance(session, ServerSession) else None
        ended = session.ended if isinstance(session, ServerSession) else None

        def check(original: RequestFacts, requirement: Requirement) -> Pass | Refusal:
            return check_request(
                original,
                record,
                ended,
                origins=watch.origins,
                exclusive=watch.policy.exclusive_tabs,  # it may be replaced while serving
                requirement=requirement,
                unavailable=not live,
            )

        def header(name: str) -> str | None:
            return request.headers.get(name.lower().encode())

        try:
            outcome = verification(
                facts, header, request.scope, requirement, proxy=proxy, check=check
            )
            cookies = cookie_headers(request.cookies_to_set(session, facts))
            if isinstance(outcome, str):
                status, headers, body = request.error(400, Code.BAD_REQUEST, outcome)
                result = (status, [*headers, *cookies], body)
            elif isinstance(outcome, Pass):
                headers = [*_EMPTY, *pass_headers(outcome), *cookies]
                result = (204, [*headers, ("Cache-Control", "no-store")], b"")
            else:
                status, headers, body = request.error(
                    refusal_status(outcome, nginx=nginx), outcome.code, **outcome.fields
                )
                refused = (REFUSAL_HEADER, refusal_header(outcome))
                result = (status, [*headers, refused, *cookies], body)
        except Exception as exc:
            result = request.failed(exc)
        return await request.finish(session, facts, result)

    return answer


def create_forward_auth_blueprint(watch: SessionWatch) -> Blueprint:
    """``/verify`` and ``/refusal``, bound to ``watch`` (mount under ``url_prefix``)."""
    bp = Blueprint("sessionwatch_forward_auth", __name__)

    proxy = watch.settings.forward_auth
    nginx = proxy == "nginx"

    def refuse(refusal: Refusal) -> Response:
        status = refusal_status(refusal, nginx=nginx)
        response = error_response(status, refusal.code, **refusal.fields)
        response.headers[REFUSAL_HEADER] = refusal_header(refusal)
        return response

    def step_up() -> Refusal | str | None:
        """The step-up refusal of ``?max_age=`` (``None``: none asked or passed), or
        why the parameter is bad."""
        given = request.args.getlist("max_age")
        if not step_up_asked(given):
            return None
        if len(given) > 1:
            return "max_age must be given once"
        try:
            window = parse_max_age(given[0])
        except ConfigurationError as error:
            return str(error)
        return watch.recent_login_refusal(window)

    def passed(outcome: Pass) -> Response:
        response = Response(b"", status=204)
        response.headers.update(pass_headers(outcome))
        return response

    def answer(outcome: Pass | Refusal, path: str) -> Response:
        """The check's answer, then step-up's (``?max_age=``) for a request that passed."""
        if not isinstance(outcome, Pass):
            return refuse(outcome)
        stale = step_up()
        if isinstance(stale, str):
            return error_response(400, Code.BAD_REQUEST, stale)
        if stale is None:
            return passed(outcome)
        if nginx:  # a 401 passes auth_request; /refusal redirects a navigation
            return refuse(stale)
        response = reauth_response(stale, watch.settings.reauth_url, path)
        response.headers[REFUSAL_HEADER] = refusal_header(stale)
        return response

    @bp.route("/verify", methods=["GET", "HEAD"])
    async def verify() -> Response:
        outcome = verification(
            watch.request_facts(),
            request.headers.get,
            request.scope,
            request.args.get("require", "auto"),
            proxy=proxy,
            check=watch.check_request,
        )
        if isinstance(outcome, str):
            response = error_response(400, Code.BAD_REQUEST, outcome)
        else:
            response = answer(outcome, original_uri(request.headers.get, proxy))
        response.headers.update(cookie_headers(watch.cookies_to_set()))
        return response

    @bp.route("/refusal", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    async def refusal() -> Response:
        """The answer of a refusal that nginx had to carry as 401/403 (no backend use)."""
        found = refusal_from_header(request.headers.get(REFUSAL_HEADER))
        if found is None:
            return error_response(
                400, Code.BAD_REQUEST, f"{REFUSAL_HEADER} is missing or not a refusal of /verify"
            )
        # The page's link is a GET: it reloads a refused page; a refused form post
        # (its route may take POST only) leads to the start page instead.
        again = request.headers.get("X-Original-URI", "")
        if request.headers.get("X-Original-Method") != "GET" or not is_local_path(again):
            again = "/"
        if found.code == Code.REAUTH_REQUIRED:
            return reauth_response(found, watch.settings.reauth_url, again)
        return error_response(found.status, found.code, again=again, **found.fields)

    @bp.after_request
    async def no_store(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        return response

    raw_answer = raw_verify(watch, proxy)
    bp.record_once(
        lambda state: rawhttp.add_route(state, "/verify", "GET", "verify", no_store, raw_answer)
    )
    return bp
