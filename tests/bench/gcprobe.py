"""Where the event loop stalls: garbage collections and loop lags, per process.

A :class:`Probe` times every collection through ``gc.callbacks`` (generation, duration,
objects collected) and runs a loop-lag watcher (a 5 ms sleep that comes back late);
:func:`create_probed_app` installs one in every worker of the service (``--service-
factory tests.bench.gcprobe:create_probed_app``, the app built by
``SW_BENCH_INNER_FACTORY``, the service's by default) and writes its events
to ``SW_BENCH_PROBE_DIR/<pid>.jsonl`` once a second; :class:`ProbedTabHolder`
is the load generator's tab holder with one, read over its pipe. All times are
``time.monotonic()`` (CLOCK_MONOTONIC, one clock for every process of the machine), so
the driver (:mod:`tests.bench.stalls`) can split them by its own phases.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import json
import os
import time
from pathlib import Path
from typing import Any

from .claimer import Claimer
from .tabs import TabHolder

__all__ = ["Probe", "ProbedClaimer", "ProbedTabHolder", "create_probed_app", "summarize"]

LAG_TICK = 0.005  # the watcher's sleep
LAG_REPORTED = 0.002  # a wake-up later than this is logged


class Probe:
    """Collections and loop lags of this process (events: ``("gc", start, ms, gen,
    collected)`` and ``("lag", start, ms)``)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._began = self._began_cpu = 0.0
        self._watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    def stop(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self._on_gc)
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def take(self) -> list[tuple[Any, ...]]:
        events, self.events = self.events, []
        return events

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.monotonic()
            self._began_cpu = time.thread_time()
        else:
            wall = (time.monotonic() - self._began) * 1000
            cpu = (time.thread_time() - self._began_cpu) * 1000
            self.events.append(
                ("gc", self._began, wall, info["generation"], info["collected"], cpu)
            )

    async def _watch(self) -> None:
        while True:
            began, began_cpu = time.monotonic(), time.thread_time()
            await asyncio.sleep(LAG_TICK)
            late = time.monotonic() - began - LAG_TICK
            if late > LAG_REPORTED:
                cpu = (time.thread_time() - began_cpu) * 1000
                self.events.append(("lag", began, late * 1000, cpu))


def create_probed_app() -> Any:
    """The app of ``SW_BENCH_INNER_FACTORY`` (``module:function``, the service
    by default) with a :class:`Probe` writing to ``SW_BENCH_PROBE_DIR``."""
    inner = os.environ.get("SW_BENCH_INNER_FACTORY", "sessionwatch.service.app:create_service_app")
    module, _, name = inner.partition(":")
    app = getattr(importlib.import_module(module), name)()
    out = Path(os.environ["SW_BENCH_PROBE_DIR"])
    probe = Probe()
    tasks: list[asyncio.Task[None]] = []

    async def flush_forever() -> None:
        path = out / f"{os.getpid()}.jsonl"
        while True:
            await asyncio.sleep(1.0)
            events = probe.take()
            hub = app.extensions["sessionwatch"].hub
            events.append(("sockets", time.monotonic(), len(hub.sockets())))
            events.append(("count", time.monotonic(), *gc.get_count()))
            with path.open("a") as f:
                f.writelines(json.dumps(e) + "\n" for e in events)

    @app.before_serving
    async def start_probe() -> None:
        probe.start()
        tasks.append(asyncio.get_running_loop().create_task(flush_forever()))

    @app.after_serving
    async def stop_probe() -> None:
        probe.stop()
        for task in tasks:
            task.cancel()

    return app


class ProbedTabHolder(TabHolder):
    """The tab holder with a :class:`Probe` (``probe_start``, ``probe_take``);
    ``quiet=False`` measures it as it was before its quiet garbage collection."""

    def __init__(self) -> None:
        super().__init__()
        self.probe = Probe()

    async def probe_start(self, quiet: bool = True) -> None:
        self.quiet_gc = quiet
        self.probe.start()

    async def probe_take(self) -> list[tuple[Any, ...]]:
        return self.probe.take()


class ProbedClaimer(Claimer):
    """The claimer with a :class:`Probe` (``probe_start``, ``probe_take``)."""

    def __init__(self) -> None:
        super().__init__()
        self.probe = Probe()

    async def probe_start(self) -> None:
        self.probe.start()

    async def probe_take(self) -> list[tuple[Any, ...]]:
        return self.probe.take()


def summarize(events: list[tuple[Any, ...]], began: float, ended: float) -> dict[str, Any]:
    """Within [began, ended): per generation, collections (count, total wall ms, largest
    wall ms, total CPU ms: wall far above CPU is a process waiting for a core); loop lags
    (count, total ms, largest ms), those over 5 ms, those overlapping a collection
    (count, ms) and those where the loop was busy (its CPU over the lag's window at
    least 70 % of the window: the process ran, against waiting for a core)."""
    inside = [e for e in events if began <= e[1] < ended]
    out: dict[str, Any] = {}
    gcs = [e for e in inside if e[0] == "gc"]
    for gen in (0, 1, 2):
        ms = [e[2] for e in gcs if e[3] == gen]
        cpu = sum(e[5] for e in gcs if e[3] == gen)
        out[f"gen{gen}"] = (
            len(ms),
            round(sum(ms), 1),
            round(max(ms, default=0.0), 1),
            round(cpu, 1),
        )
    lags = [e for e in inside if e[0] == "lag"]
    spans = [(e[1], e[1] + e[2] / 1000) for e in gcs if e[2] >= 1.0]
    by_gc = [
        lag
        for lag in lags
        if any(s < lag[1] + LAG_TICK + lag[2] / 1000 and e > lag[1] for s, e in spans)
    ]
    out["lags"] = (
        len(lags),
        round(sum(e[2] for e in lags), 1),
        round(max((e[2] for e in lags), default=0.0), 1),
    )
    out["lags_over_5ms"] = sum(1 for e in lags if e[2] > 5.0)
    out["lags_with_gc"] = (len(by_gc), round(sum(e[2] for e in by_gc), 1))
    busy = [e for e in lags if e[3] >= 0.7 * (e[2] + LAG_TICK * 1000)]
    out["lags_busy"] = (len(busy), round(sum(e[2] for e in busy), 1))
    return out
