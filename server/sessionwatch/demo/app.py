"""The demo application factory and its views.

A demo, not a product: anyone signs in as anyone with the password ``demo`` and any
signed-in user changes the policy. ``sessionwatch demo`` serves it on loopback; the
production service (``sessionwatch serve``, :mod:`sessionwatch.service.app`) has none of
it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import secrets
from typing import Any
from urllib.parse import urlsplit

from quart import Quart, jsonify, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response as WerkzeugResponse

from .. import (
    BackendUnavailable,
    BoundedJSONProvider,
    Code,
    InvalidUserId,
    PendingLoginRefused,
    Policy,
    SecurityHeaders,
    SessionChoiceRequired,
    SessionLimitReached,
    SessionWatch,
    Settings,
    policy_from_env,
    settings_from_env,
)
from .admin import register_admin
from .policy import DemoPolicy

__all__ = [
    "ADMIN_PASSWORD_ENV",
    "DEMO_PASSWORD",
    "INSECURE_COOKIE_SETTING",
    "STEP_UP_AGE",
    "STEP_UP_AMOUNT",
    "cookie_dropped",
    "create_app",
    "create_demo_app",
]

logger = logging.getLogger(__name__)

DEMO_PASSWORD = "demo"  # noqa: S105 (the documented password of every demo account)
# The admin page's password (demo/admin.py); `sessionwatch demo` makes one when unset.
ADMIN_PASSWORD_ENV = "DEMO_ADMIN_PASSWORD"  # noqa: S105 (the name of a variable)
_MAX_USERNAME = 64
# A transfer above this many demo coins needs a sign-in (or re-authentication) from the
# last STEP_UP_AGE seconds: the step-up of docs/policies.md.
STEP_UP_AMOUNT = 1000
STEP_UP_AGE = 300
# The pages load only their own scripts and styles (no inline code), talk only to their
# own origin (fetch and WebSocket), and may not be framed: a page from elsewhere cannot
# overlay it (clickjacking "Use here" or "Sign out other sessions").
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {  # every answer, JSON included
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",  # not embeddable by other sites
}
PAGE_HEADERS = {
    "X-Frame-Options": "DENY",  # for browsers without frame-ancestors
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Over HTTPS only (a browser ignores it over http): a year, subdomains included.
HSTS = "max-age=31536000; includeSubDomains"


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def _json_body() -> dict[str, Any] | None:
    """The request's JSON object (``{}`` without a body), ``None`` when the body is not
    one: malformed, or nested deeper than the app's JSON provider allows."""
    if not await request.get_data():
        return {}
    body = await request.get_json(force=True, silent=True)
    return body if isinstance(body, dict) else None


def _bad_request(message: str) -> Any:
    return jsonify({"error": Code.BAD_REQUEST, "message": message}), 400


# The setting that lets a session cookie through plain HTTP (for development only).
INSECURE_COOKIE_SETTING = "SESSIONWATCH_COOKIE_SECURE=false"


def _loopback(host: str) -> bool:
    """Whether ``host`` (a Host header: name or address, maybe a port) is this machine
    as browsers see it: localhost, *.localhost, 127.0.0.0/8 or ::1."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")]
    elif name.count(":") == 1:
        name = name.rsplit(":", 1)[0]
    name = name.rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def cookie_dropped(scheme: str, host: str, *, secure: bool, forwarded_proto: str | None) -> bool:
    """Whether the browser will drop the ``Secure`` session cookie, so that a sign-in
    silently returns to the login page: the page came over plain HTTP to a host that is
    not loopback (browsers keep Secure cookies over HTTP only for localhost). A TLS
    proxy's ``X-Forwarded-Proto: https`` is believed here, where it only silences a
    warning."""
    if not secure or scheme != "http":
        return False
    if forwarded_proto and forwarded_proto.split(",")[0].strip().lower() == "https":
        return False
    return not _loopback(host)


def _password_ok(password: str) -> bool:
    return hmac.compare_digest(password.encode("utf-8", "replace"), DEMO_PASSWORD.encode())


def create_demo_app() -> Quart:
    """The demo for one worker of ``sessionwatch demo``: settings and the starting policy
    from the environment (``SESSIONWATCH_*``), the key from ``DEMO_SECRET_KEY`` (which
    the command sets, to one fresh key for all its workers; never ``SECRET_KEY``, so a
    production key never signs a demo session)."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    return create_app(
        settings_from_env(),
        secret_key=os.environ.get("DEMO_SECRET_KEY"),
        policy=policy_from_env(),
        admin_password=os.environ.get(ADMIN_PASSWORD_ENV),
    )


def create_app(
    settings: Settings | None = None,
    *,
    secret_key: str | None = None,
    policy: Policy | None = None,
    admin_password: str | None = None,
) -> Quart:
    """The demo app, configured from ``settings`` (default: the environment), starting
    with ``policy``. Without ``secret_key`` it signs with a key made for this process:
    sessions end when it stops. ``/admin`` signs in with ``admin_password`` (none: a
    password made for this process and logged)."""
    settings = settings or settings_from_env()
    app = Quart(__name__)
    app.json = BoundedJSONProvider(app)  # request.get_json: ValueError past 32 levels
    app.config["SECRET_KEY"] = secret_key or secrets.token_urlsafe(32)
    options = {name: getattr(settings, name) for name in settings.__dataclass_fields__}
    options["reauth_url"] = options.get("reauth_url") or "/reauth"
    options["presence_events"] = True  # the sessions table's "Live tabs", pushed
    watch = SessionWatch(app, policy=policy, **options)
    if not admin_password:
        admin_password = secrets.token_urlsafe(12)
        logger.info("demo admin page: /admin, password %s", admin_password)
    register_admin(app, watch, admin_password)

    @app.get("/healthz")
    async def healthz() -> Any:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Any:
        try:
            await asyncio.wait_for(watch.backend.ping(), 2.0)
        except (TimeoutError, BackendUnavailable):
            return jsonify({"status": "unavailable", "error": Code.BACKEND_UNAVAILABLE}), 503
        return jsonify({"status": "ok"})

    warned: set[str] = set()

    def insecure_cookie() -> str | None:
        """The setting to name on the login page when this request's sign-in cannot
        work (the browser drops the Secure cookie); logged once per host and worker."""
        if not cookie_dropped(
            request.scheme,
            request.host,
            secure=watch.settings.cookie_secure,
            forwarded_proto=request.headers.get("X-Forwarded-Proto"),
        ):
            return None
        if request.host not in warned and len(warned) < 100:
            warned.add(request.host)
            logger.warning(
                "sign-in cannot work at http://%s: the session cookie is Secure and browsers "
                "drop Secure cookies over plain HTTP except on localhost. Serve HTTPS (or "
                "put a TLS proxy in front), open http://localhost, or for development only "
                "set %s",
                request.host,
                INSECURE_COOKIE_SETTING,
            )
        return INSECURE_COOKIE_SETTING

    # Around the app, not an app-wide after_request hook: such a hook would send
    # POST /claim and GET /state through Quart's whole request handling (web/rawhttp.py).
    security: Any = SecurityHeaders(
        app.asgi_app,
        every=SECURITY_HEADERS,
        pages=PAGE_HEADERS,
        https={"Strict-Transport-Security": HSTS},
    )
    app.asgi_app = security  # type: ignore[method-assign]

    @app.get("/")
    async def home() -> Any:
        user = watch.current_user()
        if not user:
            return redirect(url_for("login_form"))
        return await render_template(
            "home.html",
            user=user,
            policy=DemoPolicy.of(watch.policy),
            prefix=watch.settings.url_prefix,
            step_up_amount=STEP_UP_AMOUNT,
            step_up_minutes=STEP_UP_AGE // 60,
        )

    @app.get("/login")
    async def login_form() -> Any:
        return await render_template(
            "login.html",
            error=None,
            next=_safe_next(request.args.get("next")),
            insecure_cookie=insecure_cookie(),
            sso=watch.sso is not None,
            prefix=watch.settings.url_prefix,
        )

    @app.post("/login")
    async def login() -> Any:
        form = await request.form
        username = str(form.get("username", "")).strip()
        target = _safe_next(form.get("next"))
        if (
            not username
            or len(username) > _MAX_USERNAME
            or not _password_ok(str(form.get("password", "")))
        ):
            return await render_template(
                "login.html",
                error="Unknown user or wrong password (it is “demo”).",
                next=target,
                username=username[:_MAX_USERNAME],
                insecure_cookie=insecure_cookie(),
            ), 401
        try:
            await watch.login(
                username,
                revoke_others=form.get("revoke_others") == "1",
                remember=form.get("remember") == "1",
            )
        except InvalidUserId:
            return await render_template(
                "login.html", error="User names cannot contain control characters.", next=target
            ), 400
        except SessionChoiceRequired as asked:
            return await render_template("choose.html", asked=asked, next=target), 409
        except SessionLimitReached as exc:
            return await render_template(
                "login.html",
                error=f"You already have {exc.limit} active session(s). Sign out elsewhere first.",
                next=target,
                username=username,  # kept: the user signs out elsewhere, then tries again
                insecure_cookie=insecure_cookie(),
            ), 403
        session["user"] = username
        insecure_cookie()  # logged even when nobody looks at the login page again
        return redirect(target)

    @app.post("/login/choose")
    async def choose() -> Any:
        """The chooser's answer (on_limit="ask"): sign out the chosen device, sign in."""
        form = await request.form
        target = _safe_next(form.get("next"))
        try:
            await watch.complete_login(str(form.get("pending", "")), form.getlist("evict"))
        except SessionChoiceRequired as asked:  # a device signed in meanwhile
            return await render_template("choose.html", asked=asked, next=target), 409
        except (PendingLoginRefused, ValueError):
            return await render_template(
                "login.html",
                error="That sign-in expired or was already used. Sign in again.",
                next=target,
                insecure_cookie=insecure_cookie(),
            ), 400
        record = watch.current_session().record
        session["user"] = record.user if record is not None else None
        return redirect(target)

    @app.get("/reauth")
    async def reauth_form() -> Any:
        user = watch.current_user()
        if not user:
            return redirect(url_for("login_form", next=_safe_next(request.args.get("next"))))
        return await render_template(
            "reauth.html",
            user=user,
            next=_safe_next(request.args.get("next")),
            revoke_others=request.args.get("revoke_others") == "1",
            error=None,
        )

    @app.post("/reauth")
    async def reauth() -> Any:
        """Re-authenticate: rotate this session's id and sign out every other session,
        the answer to "Not you?" (the last claimer may be the attacker); or, with
        ``step_up`` (the client's "confirm it's you"), record the fresh proof only."""
        form = await request.form
        user = watch.current_user()
        target = _safe_next(form.get("next"))
        revoke_others = form.get("step_up") != "1"
        if not user:
            return redirect(url_for("login_form"))
        if not _password_ok(str(form.get("password", ""))):
            return await render_template(
                "reauth.html",
                user=user,
                next=target,
                revoke_others=revoke_others,
                error="Wrong password.",
            ), 401
        if revoke_others:
            await watch.login(user, revoke_others=True)
        else:
            await watch.reauthenticated()
        return redirect(target)

    @app.post("/logout")
    async def logout() -> WerkzeugResponse:
        # A session from the identity provider signs out there too (RP-initiated logout).
        return redirect(await watch.logout() or url_for("login_form"))

    @app.post("/api/transfer")
    @watch.active_tab_required
    async def transfer() -> Any:
        body = await _json_body()
        if body is None:
            return _bad_request("the body must be a JSON object")
        amount = body.get("amount", 10)
        if (
            isinstance(amount, bool)
            or not isinstance(amount, (int, float))
            or not 0 < amount <= 1_000_000
        ):
            return _bad_request("amount must be between 0 and 1,000,000")
        if amount > STEP_UP_AMOUNT:  # a large transfer: confirm it's you (step-up)
            stale = watch.check_recent_login(STEP_UP_AGE)
            if stale is not None:
                return stale
        return jsonify({"ok": True, "message": f"Transferred {amount:g} demo coins."})

    @app.post("/policy")
    @watch.active_tab_required
    async def set_policy() -> Any:
        user = watch.current_user()
        if not user:
            return jsonify({"error": Code.NOT_SIGNED_IN, "message": "Sign in first."}), 401
        body = await _json_body() if request.is_json else await request.form
        if body is None:
            return _bad_request("the body must be a JSON object")
        try:
            chosen = DemoPolicy.from_form(body)
        except ValueError as exc:
            return _bad_request(str(exc))
        watch.policy = chosen.to_policy()  # this process's (docs/deployment.md)
        logger.info("demo policy set to %s by %s", chosen, user)
        return jsonify(
            {"one_tab": chosen.one_tab, "devices": chosen.devices, "on_limit": chosen.on_limit}
        )

    return app
