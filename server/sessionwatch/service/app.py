"""The deployable service: the demo app with operations endpoints and metrics on,
configured from the environment (12-factor). ASGI servers load
``sessionwatch.service.app:create_service_app()`` in every worker process
(``create_hypercorn_app()`` under hypercorn).

The service's own environment variables (the CLI sets them from its flags):

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
from typing import Any

from quart import Quart

from ..core.config import settings_from_env
from .demo import create_app
from .forward_auth import create_forward_auth_blueprint
from .proxies import TrustedProxies
from .session_api import create_session_api_blueprint

__all__ = [
    "create_hypercorn_app",
    "create_service_app",
    "register_proxy_endpoints",
    "trust_proxies",
]

_FALSE = ("0", "false", "no", "off")


def _flag(name: str, default: str) -> bool:
    return os.environ.get(name, default).strip().lower() not in _FALSE


def create_service_app() -> Quart:
    """The demo app for one worker: ``SECRET_KEY``, ``REDIS_URL`` and
    ``SESSIONWATCH_*`` come from the environment; metrics are on unless
    ``SESSIONWATCH_SERVICE_METRICS=0``."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    app = create_app(
        settings_from_env(),
        secret_key=os.environ.get("SECRET_KEY"),
        metrics=_flag("SESSIONWATCH_SERVICE_METRICS", "1"),
        metrics_token=os.environ.get("SESSIONWATCH_SERVICE_METRICS_TOKEN") or None,
        readyz_detail=_flag("SESSIONWATCH_SERVICE_READYZ_DETAIL", "0"),
    )
    register_proxy_endpoints(app)
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
    under ``{url_prefix}/api/v1`` (off until ``SESSIONWATCH_API_KEYS`` is set)."""
    watch = app.extensions["sessionwatch"]
    prefix = watch.settings.url_prefix
    app.register_blueprint(create_forward_auth_blueprint(watch), url_prefix=prefix)
    app.register_blueprint(create_session_api_blueprint(watch), url_prefix=prefix + "/api/v1")


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
