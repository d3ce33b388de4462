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

A pass is ``204`` with ``X-SessionWatch-User`` (percent-encoded UTF-8, empty when
anonymous), ``X-SessionWatch-Session`` (public id) and ``X-SessionWatch-Tab-Status``.
A refusal is the JSON (or HTML page) of a protected route — except that nginx turns
any status but 2xx, 401 and 403 into a 500. With nginx's headers every refusal other
than a 401 is therefore answered 403, and every refusal carries
``X-SessionWatch-Refusal`` (its JSON: status, code, fields): the documented nginx
configuration sends such requests to ``/refusal`` (``error_page`` + a named location),
which answers that status and body without touching the backend — so a stale tab gets
409 ``tab_superseded`` and a backend outage 503 through nginx too. One backend round
trip per verification (opening the session).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import quote

from quart import Blueprint, Response, request

from ..core import jsonlimits
from ..core.audit import security_event
from ..core.exceptions import BackendUnavailable
from ..core.origins import is_unsafe_method, own_origin_of
from ..core.tabs import TAB_HEADER
from ..web.responses import ended_error, error_response

if TYPE_CHECKING:
    from ..web.extension import SessionWatch

__all__ = ["REFUSAL_HEADER", "Refusal", "create_forward_auth_blueprint"]

logger = logging.getLogger("sessionwatch")

REFUSAL_HEADER: Final = "X-SessionWatch-Refusal"
# Per proxy: the headers naming the original request's method and URI.
_ORIGINAL_HEADERS: Final = {
    "nginx": ("X-Original-Method", "X-Original-URI"),
    "traefik": ("X-Forwarded-Method", "X-Forwarded-Uri"),
    "caddy": ("X-Forwarded-Method", "X-Forwarded-Uri"),
}
Requirement = Literal["auto", "session", "tab", "none"]
REQUIREMENTS: Final[tuple[Requirement, ...]] = ("auto", "session", "tab", "none")
_METHOD_RE: Final = re.compile(r"[A-Z][A-Z-]{0,19}")
# What /refusal may render: the refusals /verify gives, nothing else.
_REFUSAL_CODES: Final = {
    401: {"no_session", "expired", "revoked", "cookie_conflict"},
    403: {"origin_forbidden"},
    409: {"tab_superseded", "tab_invalid", "tab_missing"},
    503: {"backend_unavailable"},
}
_MAX_REFUSAL: Final = 2048
_BY_FIELDS: Final = {"browser", "os", "place", "at", "same_browser"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request may not pass: an HTTP status, a stable code and extra JSON fields."""

    status: int
    code: str
    fields: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "error": self.code, **self.fields}

    @classmethod
    def from_header(cls, raw: str | None) -> Refusal | None:
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
        if code == "revoked" and reason in ("revoked", "evicted"):
            fields["reason"] = reason
        by = value.get("by")
        if code == "tab_superseded" and isinstance(by, dict):
            fields["by"] = {
                k: v
                for k, v in by.items()
                if k in _BY_FIELDS and isinstance(v, (str, int, bool)) and len(str(v)) <= 200
            }
        return cls(status, str(code), fields)


def _ended(ended: str | None) -> Refusal:
    """The 401 refusal of a session that is gone (as ``responses.ended_response``)."""
    code, fields = ended_error(ended)
    return Refusal(401, code, fields)


@dataclass(frozen=True, slots=True)
class OriginalRequest:
    """The request the proxy asks about, from its forwarded headers."""

    method: str
    uri: str
    nginx: bool  # nginx's header style: refusals other than 401 are answered 403
    origin: str | None
    own_origin: str
    tab: str | None
    fetch_site: str | None = None


def original_request(proxy: str) -> OriginalRequest | str:
    """The proxied request as ``proxy`` (the configured one) names it, or a message
    saying which header is missing or bad."""
    headers = request.headers
    method_header, uri_header = _ORIGINAL_HEADERS[proxy]
    method = headers.get(method_header)
    uri = headers.get(uri_header, "")
    if method is None:
        return (
            f"verify needs the original method in {method_header}: "
            f"SESSIONWATCH_FORWARD_AUTH is {proxy}"
        )
    if not _METHOD_RE.fullmatch(method):
        return f"{method_header} is not an HTTP method"
    host = headers.get("X-Forwarded-Host") or request.host
    proto = headers.get("X-Forwarded-Proto") or request.scheme
    scheme = proto.split(",")[0].strip().lower()
    return OriginalRequest(
        method=method,
        uri=uri[:2048],
        nginx=proxy == "nginx",
        origin=headers.get("Origin"),
        own_origin=own_origin_of(scheme, host.split(",")[0].strip()),
        tab=headers.get(TAB_HEADER),
        fetch_site=headers.get("Sec-Fetch-Site"),
    )


def create_forward_auth_blueprint(watch: SessionWatch) -> Blueprint:
    """``/verify`` and ``/refusal``, bound to ``watch`` (mount under ``url_prefix``)."""
    bp = Blueprint("sessionwatch_forward_auth", __name__)

    def refuse(refusal: Refusal, original: OriginalRequest | None) -> Response:
        status = refusal.status
        if original is not None and original.nginx and status != 401:
            status = 403  # auth_request passes 401 and 403 on; error_page restores it
        response = error_response(status, refusal.code, **refusal.fields)
        response.headers[REFUSAL_HEADER] = json.dumps(refusal.to_json(), separators=(",", ":"))
        return response

    def check(original: OriginalRequest, requirement: Requirement) -> Refusal | Response:
        session = watch.current_session()  # the one round trip happened opening it
        record = session.record
        unsafe = is_unsafe_method(original.method)
        if requirement == "none":
            tab_needed = False
        elif record is None:
            return _ended(session.ended)
        else:
            tab_needed = requirement == "tab" or (requirement == "auto" and unsafe)
        if unsafe and requirement != "none":
            # The protected routes' rule (SessionWatch.foreign_request): a foreign
            # Origin, or without one, Sec-Fetch-Site cross-site or same-site.
            cross = original.origin is None and original.fetch_site in ("cross-site", "same-site")
            if cross or not watch.origins.allows(original.origin, original.own_origin):
                security_event(
                    "origin_refused",
                    logging.WARNING,
                    action="verify",
                    origin=original.origin,
                    fetch_site=original.fetch_site,
                    method=original.method,
                    uri=original.uri,
                )
                return Refusal(403, "origin_forbidden")
        status = "none"
        if record is not None:
            status = watch.tab_status(record, original.tab)
            if tab_needed and status != "active":
                if status == "superseded":
                    return Refusal(409, "tab_superseded", {"by": record.claimed_by})
                if status == "invalid":
                    security_event("tab_refused", logging.WARNING, session=record.id, verify=True)
                return Refusal(409, f"tab_{status}")
        response = Response(b"", status=204)
        user = record.user if record is not None else None
        response.headers["X-SessionWatch-User"] = quote(user or "", safe="@._-+~")
        response.headers["X-SessionWatch-Session"] = record.id if record is not None else ""
        response.headers["X-SessionWatch-Tab-Status"] = status
        return response

    @bp.route("/verify", methods=["GET", "HEAD"])
    async def verify() -> Response:
        requirement = request.args.get("require", "auto")
        original = original_request(watch.settings.forward_auth)
        if isinstance(original, str):
            return error_response(400, "bad_request", original)
        if requirement not in REQUIREMENTS:
            return error_response(
                400, "bad_request", f"require must be one of {', '.join(REQUIREMENTS)}"
            )
        try:
            outcome = check(original, requirement)
        except BackendUnavailable as exc:
            logger.error("verify: backend unavailable: %s", exc)
            outcome = Refusal(503, "backend_unavailable")
        if isinstance(outcome, Refusal):
            return refuse(outcome, original)
        return outcome

    @bp.route("/refusal", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
    async def refusal() -> Response:
        """The answer of a refusal that nginx had to carry as 401/403 (no backend use)."""
        found = Refusal.from_header(request.headers.get(REFUSAL_HEADER))
        if found is None:
            return error_response(
                400, "bad_request", f"{REFUSAL_HEADER} is missing or not a refusal of /verify"
            )
        # The page's link is a GET: it reloads a refused page; a refused form post
        # (its route may take POST only) leads to the start page instead.
        again = request.headers.get("X-Original-URI", "")
        if (
            request.headers.get("X-Original-Method") != "GET"
            or not again.startswith("/")
            or again.startswith("//")
            or "\\" in again
        ):
            again = "/"
        return error_response(found.status, found.code, again=again, **found.fields)

    @bp.after_request
    async def no_store(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        return response

    return bp
