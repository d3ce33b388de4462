"""Prometheus metrics through prometheus-client, multi-process aware.

Each worker keeps its own metric objects; with ``PROMETHEUS_MULTIPROC_DIR`` set they
live in shared files and any worker's ``/metrics`` reports the sum over all live
workers. Hub counters are copied from ``hub.stats()`` once a second (never on the hot
path); claims and push latency are observed where they happen.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from ..web.extension import SessionWatch

__all__ = ["Metrics"]

logger = logging.getLogger(__name__)

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def _multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics:
    """The service's metrics for one worker process."""

    def __init__(self, watch: SessionWatch) -> None:
        self._watch = watch
        self.registry = CollectorRegistry()
        reg = self.registry
        self.sockets = Gauge(
            "sessionwatch_sockets",
            "Connected WebSockets.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.sessions = Gauge(
            "sessionwatch_sessions_connected",
            "Sessions with at least one connected tab (per worker, summed).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.pubsub_connected = Gauge(
            "sessionwatch_pubsub_connected",
            "1 when every worker's pub/sub listener is connected.",
            registry=reg,
            multiprocess_mode="livemin",
        )
        self.opening_queued = Gauge(
            "sessionwatch_sockets_opening_queued",
            "Handshakes waiting for their turn to open (max_opening_sockets).",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.opening_refused = Counter(
            "sessionwatch_sockets_opening_refused",
            "Handshakes refused 503 busy after waiting their whole turn.",
            registry=reg,
        )
        self.claims = Counter("sessionwatch_claims", "Tab claims served.", registry=reg)
        self.takeovers = Counter(
            "sessionwatch_takeovers",
            "Notices that ended a tab's or session's turn, by reason.",
            ["reason"],
            registry=reg,
        )
        self.reconnects = Counter(
            "sessionwatch_pubsub_reconnects", "Pub/sub reconnections.", registry=reg
        )
        self.state_lost = Counter(
            "sessionwatch_state_lost",
            "Times the backend's stored state was found lost (a new epoch).",
            registry=reg,
        )
        self.dropped = Counter(
            "sessionwatch_slow_sockets_closed", "Sockets closed for not keeping up.", registry=reg
        )
        self.push_latency = Histogram(
            "sessionwatch_push_latency_seconds",
            "From receiving an event on pub/sub to its frame being written to the socket.",
            registry=reg,
            buckets=_LATENCY_BUCKETS,
        )
        self.hook_calls = Counter(
            "sessionwatch_hook_calls",
            "Event hook calls (docs/audit.md), by outcome: ok or failed (it raised).",
            ["outcome"],
            registry=reg,
        )
        self.hook_redeliveries = Counter(
            "sessionwatch_hook_redeliveries",
            "Trail records delivered again: their first reader never acknowledged them.",
            registry=reg,
        )
        self.hook_lag = Gauge(
            "sessionwatch_hook_lag_seconds",
            "From a change to its hook's call, for the last record delivered (max of workers).",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self._seen: dict[str, float] = {}

    def claimed(self) -> None:
        self.claims.inc()

    def observe_push(self, seconds: float) -> None:
        self.push_latency.observe(seconds)

    def _delta(self, key: str, value: float) -> float:
        previous = self._seen.get(key, 0.0)
        self._seen[key] = value
        return max(value - previous, 0.0)

    def sync(self) -> None:
        """Copy the hub's figures into the metrics."""
        hub = self._watch.hub
        if hub is None:
            return
        stats: dict[str, Any] = hub.stats()
        if self._watch.gates is not None:  # the WebSocket door's openings
            stats.update(self._watch.gates.stats())
        self.sockets.set(stats.get("sockets", 0))
        self.sessions.set(stats.get("sessions", 0))
        self.pubsub_connected.set(1 if stats.get("connected", False) else 0)
        self.opening_queued.set(stats.get("opening_queued", 0))
        self.opening_refused.inc(self._delta("opening_refused", stats.get("opening_refused", 0)))
        self.reconnects.inc(self._delta("reconnects", stats.get("reconnects", 0)))
        self.dropped.inc(self._delta("dropped_slow", stats.get("dropped_slow", 0)))
        self.state_lost.inc(self._delta("state_lost", stats.get("state_lost", 0)))
        hooks = self._watch.hooks.stats()
        self.hook_calls.labels(outcome="ok").inc(self._delta("hooks_ok", hooks["delivered"]))
        self.hook_calls.labels(outcome="failed").inc(self._delta("hooks_failed", hooks["failed"]))
        self.hook_redeliveries.inc(self._delta("hooks_again", hooks["redelivered"]))
        self.hook_lag.set(hooks["lag"])
        for reason, count in (stats.get("delivered") or {}).items():
            if reason in ("superseded", "evicted", "revoked", "logged_out", "expired"):
                self.takeovers.labels(reason=reason).inc(self._delta(f"delivered:{reason}", count))

    async def sync_forever(self, every: float) -> None:
        while True:
            try:
                self.sync()
            except Exception:  # a metrics bug must never take the worker down, nor hide
                logger.exception("metrics sync failed")
            await asyncio.sleep(every)

    def render(self) -> tuple[bytes, str]:
        """The exposition text (all workers' figures in multi-process mode)."""
        self.sync()
        if _multiprocess():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @staticmethod
    def process_exit(pid: int) -> None:
        """Let the live gauges of an exiting worker go."""
        if _multiprocess():
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
