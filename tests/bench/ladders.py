"""Reading the takeover ladders of a results dict (``runner.run``'s JSON): the steps of
every run grouped by implementation, tab count and rate, their medians over runs and the
worker CPU each claim cost. Shared by the report, the targets and the charts; pure (no
I/O, no matplotlib), so the targets can be tested on a hand-made dict."""

from __future__ import annotations

import math
from typing import Any

from .stats import spread

__all__ = [
    "KINDS",
    "MODES",
    "NAMES",
    "by_rate",
    "cpu_ms_per_claim",
    "highest_passing",
    "idle_cores",
    "kernel_ms_per_claim",
    "ladder_rates",
    "median",
    "run_count",
    "tab_counts",
]

# sessionwatch, then its peers (tests/bench/peers/) in the report's and the charts' order.
KINDS = ("sw", "sio", "node", "channels", "floor")
NAMES = {
    "sw": "sessionwatch",
    "sio": "python-socketio",
    "node": "Socket.IO (Node)",
    "channels": "Django Channels",
    "floor": "floor",
}
MODES = ("http", "direct")

Steps = dict[float, list[dict[str, Any]]]


def by_rate(results: dict[str, Any], kind: str, tabs: int, mode: str) -> Steps:
    """Every run's step at each offered rate (a rate is missing from a run whose ladder
    stopped below it)."""
    out: Steps = {}
    for entry in results.get("takeover", []):
        if entry["kind"] == kind and entry["tabs"] == tabs:
            for run in entry["modes"].get(mode, []):
                for step in run:
                    out.setdefault(float(step["rate"]), []).append(step)
    return out


def run_count(results: dict[str, Any], kind: str, tabs: int, mode: str) -> int:
    """How many ladders were run (0: this implementation, tab count or mode did not run)."""
    for entry in results.get("takeover", []):
        if entry["kind"] == kind and entry["tabs"] == tabs:
            return len(entry["modes"].get(mode, []))
    return 0


def tab_counts(results: dict[str, Any]) -> list[int]:
    """The takeover tab counts of the run: the preset's (a count whose scenario failed
    still counts) and any other measured."""
    preset = results.get("meta", {}).get("preset_values") or {}
    measured = {entry["tabs"] for entry in results.get("takeover", [])}
    if not measured:
        return []  # scenarios 1-2 were not run
    return sorted(set(preset.get("tabs") or ()) | measured)


def ladder_rates(results: dict[str, Any], tabs: int, mode: str) -> list[float]:
    """The rates of the ladder: the preset's (so a rate no ladder reached still counts),
    plus any measured one it does not list."""
    preset = results.get("meta", {}).get("preset_values") or {}
    rates = {float(r) for r in preset.get("http_rates" if mode == "http" else "direct_rates", ())}
    for kind in KINDS:
        rates |= set(by_rate(results, kind, tabs, mode))
    return sorted(rates)


def median(steps: list[dict[str, Any]] | None, key: str) -> float | None:
    """The median over runs of one figure of a step (``None`` when no run measured it)."""
    value: float | None = spread([s.get(key) for s in steps or []])["median"]
    return value


def highest_passing(results: dict[str, Any], kind: str, tabs: int, mode: str) -> float | None:
    """The highest rate that passed (p99 ≤ 5 ms, nothing lost) in a majority of runs."""
    runs = run_count(results, kind, tabs, mode)
    best = None
    for rate, steps in by_rate(results, kind, tabs, mode).items():
        if sum(1 for s in steps if s["passed"]) >= runs // 2 + 1:
            best = rate if best is None else max(best, rate)
    return best


def idle_cores(results: dict[str, Any], kind: str, tabs: int) -> float | None:
    """The workers' CPU use (cores) with ``tabs`` idle tabs and no claims, measured
    before the ladders (``None`` in results written before it was)."""
    for entry in results.get("takeover", []):
        if entry["kind"] == kind and entry["tabs"] == tabs:
            value = entry.get("idle_cores")
            return None if value is None else float(value)
    return None


def kernel_ms_per_claim(step: dict[str, Any]) -> float | None:
    """Of :func:`cpu_ms_per_claim`, the workers' time in the kernel (system calls), in
    ms per claim; ``None`` for results written before it was recorded."""
    claims = step.get("ok") or 0
    seconds = (step.get("cpu_seconds") or {}).get("server_kernel")
    if claims <= 0 or seconds is None:
        return None
    return 1000 * float(seconds) / claims


def cpu_ms_per_claim(step: dict[str, Any]) -> float | None:
    """The server workers' CPU time (user + system, every worker process) over the step's
    window divided by the claims completed in it, in ms. The window runs from just before
    the first claim until every push arrived (or 3 s passed), so the figure includes the
    push each claim causes and whatever the workers did meanwhile (pings of idle tabs,
    presence, GC). Results written before ``cpu_seconds`` was recorded only hold the
    cores used (CPU ÷ span, rounded to 0.001 core); then cores ÷ achieved rate."""
    claims = step.get("ok") or 0
    if claims <= 0:
        return None
    seconds = (step.get("cpu_seconds") or {}).get("server")
    if seconds is None:
        cores = (step.get("cores") or {}).get("server")
        achieved = step.get("achieved")
        if cores is None or not achieved:
            return None
        return 1000.0 * float(cores) / float(achieved)
    value = 1000.0 * float(seconds) / claims
    return None if math.isnan(value) else value
