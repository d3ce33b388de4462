"""The deployable service: the demo app with operations endpoints and metrics on,
configured from the environment (12-factor). ASGI servers load
``sessionwatch.service:create_service_app()`` in every worker process.
"""

from __future__ import annotations

import logging
import os

from quart import Quart

from .config import settings_from_env
from .demo import create_app

__all__ = ["create_service_app"]


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
    return create_app(settings_from_env(), secret_key=os.environ.get("SECRET_KEY"), metrics=metrics)
