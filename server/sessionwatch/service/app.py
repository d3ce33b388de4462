"""The production service: the extension's browser endpoints and client assets,
forward-auth, the session API and the operations endpoints, configured from the
environment (12-factor). Nothing here checks passwords or changes the policy: users sign
in through the upstream app and the session API, or, with ``SESSIONWATCH_OIDC_*`` set,
through the identity provider (docs/sso.md); the policy comes from the environment. The demo is another app (:mod:`sessionwatch.demo`, ``sessionwatch demo``).

ASGI servers load ``sessionwatch.service.app:create_service_app()`` in every worker
process (``create_hypercorn_app()`` under hypercorn). It reads ``SECRET_KEY`` (required,
at least 32 bytes), ``REDIS_URL``, the ``SESSIONWATCH_*`` settings and policy, and the
service's own variables (the CLI sets them from its flags):

- ``SESSIONWATCH_SERVICE_METRICS``: ``0`` turns ``/metrics`` off.
- ``SESSIONWATCH_SERVICE_METRICS_TOKEN``: ``/metrics`` answers only requests with
  ``Authorization: Bearer <token>`` (401 ``unauthorized`` otherwise).
- ``SESSIONWATCH_SERVICE_READYZ_DETAIL``: ``1`` adds the backend's error text to a 503
  from ``/readyz`` (off: it can name internal hosts and ports).
- ``SESSIONWATCH_SERVICE_FORWARDED_ALLOW_IPS``: addresses of the proxies whose
  ``X-Forwarded-Proto`` / ``X-Forwarded-For`` are believed (comma-separated IPs or
  networks, ``*`` for any); from anyone else those headers are ignored.
- ``SESSIONWATCH_SERVICE_HEADER_TIMEOUT``: seconds to send a request's headers.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

from quart import Quart

from ..core.config import settings_from_env
from ..core.exceptions import BackendUnavailable, ConfigurationError
from ..core.policy import policy_from_env
from ..web.extension import SessionWatch
from ..web.headers import SecurityHeaders
from ..web.jsonprovider import BoundedJSONProvider
from .admin_api import create_admin_api_blueprint
from .forward_auth import create_forward_auth_blueprint
from .ops import register_ops
from .proxies import TrustedProxies
from .session_api import create_session_api_blueprint

__all__ = [
    "SECRET_KEY_MIN_BYTES",
    "check_secret_keys",
    "create_hypercorn_app",
    "create_service_app",
    "register_proxy_endpoints",
    "trust_proxies",
]

_FALSE = ("0", "false", "no", "off")
SECRET_KEY_MIN_BYTES: Final = 32
MAKE_A_KEY: Final = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
# Placeholders from documentation and examples: long enough, known to everyone.
_EXAMPLE_SECRETS: Final = frozenset(
    {"a long random secret", "change-me", "changeme", "secret", "your-secret-key"}
)
# Fewer distinct characters than this is a pattern ("xxxx…", "0123…0123"), not a key.
_MIN_DISTINCT: Final = 8
# Every answer: the service serves JSON and JavaScript, never pages to frame.
SERVICE_HEADERS: Final = {"X-Content-Type-Options": "nosniff"}
# Over HTTPS only (a browser ignores it over http): a year, subdomains included.
HSTS: Final = "max-age=31536000; includeSubDomains"


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() not in _FALSE


def check_secret_keys(environ: Mapping[str, str]) -> list[str]:
    """The signing keys of ``environ``, newest last: ``SESSIONWATCH_SECRET_KEYS`` when set
    (rotation), else ``SECRET_KEY``.

    Raises:
        ConfigurationError: a key is missing, shorter than 32 bytes, or a placeholder;
            one line naming the variable and how to make a key.
    """
    rotation = environ.get("SESSIONWATCH_SECRET_KEYS", "").strip()
    name = "SESSIONWATCH_SECRET_KEYS" if rotation else "SECRET_KEY"
    keys = [k.strip() for k in rotation.split(",") if k.strip()] if rotation else []
    if not rotation:
        keys = [environ["SECRET_KEY"]] if environ.get("SECRET_KEY") else []
    if not keys:
        raise ConfigurationError(
            f"SECRET_KEY is not set: the service signs session cookies with it; "
            f"make one with {MAKE_A_KEY}"
        )
    for key in keys:
        if len(key.encode("utf-8", "replace")) < SECRET_KEY_MIN_BYTES:
            raise ConfigurationError(
                f"{name} must be at least {SECRET_KEY_MIN_BYTES} bytes; make one with {MAKE_A_KEY}"
            )
        if key.strip().lower() in _EXAMPLE_SECRETS or len(set(key)) < _MIN_DISTINCT:
            raise ConfigurationError(
                f"{name} is a placeholder, not a secret; make one with {MAKE_A_KEY}"
            )
    return keys


class ServiceQuart(Quart):
    """Quart, but an unreachable backend at start-up is not logged with a traceback:
    the ASGI server reports the failed start with its message ("Redis unreachable:
    ...") and exits; the traceback only buried that line."""

    def log_exception(
        self,
        exception_info: tuple[type[BaseException], BaseException, TracebackType]
        | tuple[None, None, None],
    ) -> None:
        if isinstance(exception_info[1], BackendUnavailable):
            return
        super().log_exception(exception_info)


def create_service_app() -> Quart:
    """The service for one worker, configured from the environment: the extension's
    endpoints under ``url_prefix``, forward-auth, the session API, ``/healthz``,
    ``/readyz`` and (unless ``SESSIONWATCH_SERVICE_METRICS=0``) ``/metrics``.

    Raises:
        ConfigurationError: a setting, the policy or the secret key is bad.
    """
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    keys = check_secret_keys(os.environ)
    settings = settings_from_env()
    app = ServiceQuart(__name__, static_folder=None)  # no files of its own to serve
    app.json = BoundedJSONProvider(app)  # request.get_json: ValueError past 32 levels
    app.config["SECRET_KEY"] = keys[-1]
    options = {name: getattr(settings, name) for name in settings.__dataclass_fields__}
    watch = SessionWatch(app, policy=policy_from_env(), **options)
    register_ops(
        app,
        watch,
        metrics=_flag("SESSIONWATCH_SERVICE_METRICS", "1"),
        metrics_token=os.environ.get("SESSIONWATCH_SERVICE_METRICS_TOKEN") or None,
        readyz_detail=_flag("SESSIONWATCH_SERVICE_READYZ_DETAIL", "0"),
    )
    register_proxy_endpoints(app)
    # Around the app, not an after_request hook (see sessionwatch.web.headers).
    headers: Any = SecurityHeaders(
        app.asgi_app, every=SERVICE_HEADERS, pages={}, https={"Strict-Transport-Security": HSTS}
    )
    app.asgi_app = headers  # type: ignore[method-assign]
    proxies = os.environ.get("SESSIONWATCH_SERVICE_FORWARDED_ALLOW_IPS", "").strip()
    if proxies:
        trust_proxies(app, proxies)
    app.before_serving(tune_gc)
    return app


def trust_proxies(app: Quart, proxies: str) -> None:
    """Believe ``X-Forwarded-Proto`` / ``X-Forwarded-For`` only from ``proxies``
    (comma-separated IPs or networks, ``*`` for any), around Quart's ASGI handling (HTTP
    and WebSocket alike) under either server. See :mod:`sessionwatch.service.proxies`."""
    middleware: Any = TrustedProxies(app.asgi_app, proxies)
    app.asgi_app = middleware  # type: ignore[method-assign]


def create_hypercorn_app() -> Quart:
    """:func:`create_service_app` for a hypercorn worker: its WebSocket handshake
    refuses permessage-deflate and its message buffer stays bounded (see
    :mod:`sessionwatch.service.servers`)."""
    from .servers import harden_hypercorn

    harden_hypercorn()
    return create_service_app()


def register_proxy_endpoints(app: Quart) -> None:
    """Serve what a reverse proxy and its upstream app use (docs/any-stack.md):
    ``{url_prefix}/verify`` and ``/refusal`` for forward-auth, and the session API
    under ``{url_prefix}/api/v1`` (off until ``SESSIONWATCH_API_KEYS`` is set) and its
    admin scope under ``{url_prefix}/api/v1/admin`` (off until ``SESSIONWATCH_ADMIN_KEYS``
    is set)."""
    watch = app.extensions["sessionwatch"]
    prefix = watch.settings.url_prefix
    app.register_blueprint(create_forward_auth_blueprint(watch), url_prefix=prefix)
    app.register_blueprint(create_session_api_blueprint(watch), url_prefix=prefix + "/api/v1")
    app.register_blueprint(create_admin_api_blueprint(watch), url_prefix=prefix + "/api/v1/admin")


# Young collections every 10,000 net allocations instead of 700: objects of requests
# in flight get time to die before they are promoted, so the long-lived generation
# grows slowly and full collections are rare (docs/performance.md, finding 2).
GC_THRESHOLDS = (10_000, 10, 10)


async def tune_gc() -> None:
    """Garbage collection for a long-running worker holding thousands of sockets.

    A worker with 5,000 sockets tracks about a million objects and a full collection
    stopped it for 0.8-1 s. ``gc.freeze()`` takes everything that exists at start-up
    (modules, the app) out of every later collection, and fewer promotions make the
    full collections rare. Reference cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
