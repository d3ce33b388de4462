"""Operations endpoints: liveness, readiness and Prometheus metrics.

``register_ops(app, watch, metrics=True)`` adds ``GET /healthz`` (the process is
alive), ``GET /readyz`` (the backend answers) and, with ``metrics``, ``GET /metrics``.
Metrics are opt-in for library users and on in the service. With several worker
processes set ``PROMETHEUS_MULTIPROC_DIR`` (the CLI does) so any worker's
``/metrics`` reports all of them.

Exposure: a 503 from ``/readyz`` says ``backend_unavailable`` and no more unless
``readyz_detail`` (the backend's error names internal hosts and ports); with
``metrics_token``, ``/metrics`` answers only ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from typing import TYPE_CHECKING, Any

from quart import Quart, Response, jsonify, request

from ..core.codes import Code
from ..core.exceptions import BackendUnavailable
from ..web.responses import error_response
from .background import background
from .metrics import Metrics

if TYPE_CHECKING:
    from ..web.extension import SessionWatch

__all__ = ["register_ops"]

logger = logging.getLogger(__name__)

_READY_TIMEOUT = 2.0
_SYNC_EVERY = 1.0


def register_ops(
    app: Quart,
    watch: SessionWatch,
    *,
    metrics: bool = False,
    metrics_token: str | None = None,
    readyz_detail: bool = False,
) -> None:
    """Add ``/healthz``, ``/readyz`` and (with ``metrics``) ``/metrics`` to ``app``.

    Args:
        metrics: serve ``/metrics``.
        metrics_token: require ``Authorization: Bearer <metrics_token>`` for it.
        readyz_detail: show the backend's error text in a 503 from ``/readyz``.
    """
    expected = f"Bearer {metrics_token}".encode() if metrics_token else None

    @app.get("/healthz")
    async def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Any:
        try:
            await asyncio.wait_for(watch.backend.ping(), _READY_TIMEOUT)
        except (TimeoutError, BackendUnavailable) as exc:
            logger.warning("readiness: backend unavailable: %s", exc)
            body = {"status": "unavailable", "error": str(Code.BACKEND_UNAVAILABLE)}
            if readyz_detail:
                body["message"] = str(exc)
            return jsonify(body), 503
        hub = watch.hub
        listening = hub.stats().get("connected", True) if hub is not None else True
        return jsonify({"status": "ok", "pubsub": "connected" if listening else "reconnecting"})

    if metrics:
        collector = Metrics(watch)
        watch.on_claim = collector.claimed
        if watch.hub is not None:
            watch.hub.on_push = collector.observe_push

        @app.get("/metrics")
        async def metrics_endpoint() -> Response:
            if expected is not None:
                given = request.headers.get("Authorization", "").encode("latin-1", "replace")
                if not hmac.compare_digest(given, expected):
                    refusal = error_response(401, Code.UNAUTHORIZED)
                    refusal.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
                    return refusal
            body, content_type = collector.render()
            return Response(body, content_type=content_type)

        @app.while_serving
        async def sync_metrics() -> Any:
            try:
                async with background(collector.sync_forever(_SYNC_EVERY), "sessionwatch-metrics"):
                    yield
            finally:
                collector.process_exit(os.getpid())
