"""The deployable service: the demo app with operations endpoints and metrics on,
configured from the environment (12-factor). ASGI servers load
``sessionwatch.service.app:create_service_app()`` in every worker process.
"""

from __future__ import annotations

import gc
import logging
import os

from quart import Quart

from ..core.config import settings_from_env
from .demo import create_app
from .forward_auth import create_forward_auth_blueprint
from .session_api import create_session_api_blueprint

__all__ = ["create_service_app", "register_proxy_endpoints"]


def create_service_app() -> Quart:
    """The demo app for one worker: ``SECRET_KEY``, ``REDIS_URL`` and
    ``SESSIONWATCH_*`` come from the environment; metrics are on unless
    ``SESSIONWATCH_SERVICE_METRICS=0``."""
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s",
    )
    metrics = os.environ.get("SESSIONWATCH_SERVICE_METRICS", "1").lower() not in (
        "0",
        "false",
        "no",
        "off",
    )
    app = create_app(settings_from_env(), secret_key=os.environ.get("SECRET_KEY"), metrics=metrics)
    register_proxy_endpoints(app)
    app.before_serving(tune_gc)
    return app


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
