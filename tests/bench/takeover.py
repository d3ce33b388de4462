"""Scenarios 1 and 2: takeover push latency at rising claim rates.

``tabs`` idle tabs are connected (each its own session); the claimer re-claims their
sessions at a fixed rate (open loop); each claim must reach the superseded tab as a
``superseded`` frame. Latency: from the claim's request being written (claimer
process) to the frame being handed to the tab (tab-holder process), both on
CLOCK_MONOTONIC. A step passes when p99 ≤ 5 ms, nothing is lost or failed and the
achieved rate is ≥ 95 % of the offered one; a ladder stops after a step that
collapses (p99 > 100 ms, > 1 % lost or failed, or < 80 % achieved).
"""

from __future__ import annotations

import time
from typing import Any

from .agents import call_all
from .context import HOLDERS, Bench
from .servers import Server
from .stats import percentile

__all__ = ["P99_TARGET_MS", "run_takeover"]

P99_TARGET_MS = 5.0
_COLLAPSE_P99_MS = 100.0


def _step(
    bench: Bench, server: Server, tabs: int, mode: str, rate: float, duration: float
) -> dict[str, Any]:
    holders = bench.holders
    call_all(holders, "log_start", 30)
    cpu_before = bench.cpu(server)
    method = "claims" if mode == "http" else "direct_claims"
    result = bench.claimer.call(method, duration + 60, rate=rate, duration=duration, limit=tabs)
    records = result["records"]
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        received = sum(call_all(holders, "log_count", 30, [dict(kind="superseded")] * HOLDERS))
        if received >= len(records):
            break
        time.sleep(0.05)
    cpu_after = bench.cpu(server)
    logs = call_all(holders, "log_take", 60)
    pushes: dict[tuple[int, int], int] = {}
    close_codes: dict[str, int] = {}
    for log in logs:
        for index, kind, gen, received_ns in log:
            if kind == "superseded":
                pushes.setdefault((index, gen), received_ns)
            elif kind.startswith("close_"):
                close_codes[kind[6:]] = close_codes.get(kind[6:], 0) + 1
    closes = sum(close_codes.values())
    latencies = [
        (pushes[(i, g)] - sent) / 1e6 for i, g, _due, sent, _done in records if (i, g) in pushes
    ]
    responses = [(done - sent) / 1e6 for _i, _g, _due, sent, done in records]
    lags = [(sent - due) / 1e6 for _i, _g, due, sent, _done in records]
    last = max((done for *_, done in records), default=result["start_ns"])
    span = max(duration, (last - result["start_ns"]) / 1e9)
    failed = sum(result["failures"].values())
    lost = len(records) - len(latencies)
    step = {
        "rate": rate,
        "seconds": duration,
        "offered": result["offered"],
        "ok": len(records),
        "failures": result["failures"],
        "lost": lost,
        "closed_sockets": closes,
        "close_codes": close_codes,
        "achieved": len(records) / span,
        "p50": percentile(latencies, 0.50),
        "p99": percentile(latencies, 0.99),
        "max": max(latencies, default=float("nan")),
        "response_p50": percentile(responses, 0.50),
        "response_p99": percentile(responses, 0.99),
        "send_lag_p99": percentile(lags, 0.99),
        "cores": {k: round((cpu_after[k] - cpu_before[k]) / span, 3) for k in cpu_after},
        # Unrounded CPU seconds per process group over the window (from just before the
        # first claim to the last push): the report's worker CPU per claim.
        "cpu_seconds": {k: round(cpu_after[k] - cpu_before[k], 4) for k in cpu_after},
    }
    step["passed"] = bool(
        latencies
        and step["p99"] <= P99_TARGET_MS
        and lost == 0
        and failed == 0
        and closes == 0
        and step["achieved"] >= 0.95 * rate
    )
    step["collapsed"] = bool(
        not latencies
        or step["p99"] > _COLLAPSE_P99_MS
        or lost > 0.01 * max(1, len(records))
        or failed > 0.01 * step["offered"]
        or step["achieved"] < 0.8 * rate
    )
    bench.log(
        f"    {mode:6} {rate:>6.0f}/s: achieved {step['achieved']:7.0f}/s  p50 {step['p50']:7.2f}  "
        f"p99 {step['p99']:8.2f}  max {step['max']:8.2f} ms  lost {lost}  failed {failed}  "
        f"cores srv {step['cores']['server']:.2f} redis {step['cores']['redis']:.2f} "
        f"load {step['cores']['load']:.2f}  "
        f"srv CPU/claim {1000 * step['cpu_seconds']['server'] / max(1, len(records)):.3f} ms"
        + (f"  closed {close_codes}" if close_codes else "")
        + ("  PASS" if step["passed"] else "")
    )
    return step


def _ladder(
    bench: Bench, server: Server, tabs: int, mode: str, rates: tuple[int, ...]
) -> list[dict[str, Any]]:
    steps = []
    preset = bench.preset
    for rate in rates:
        duration = max(preset.step_seconds, preset.min_claims / rate)
        step = _step(bench, server, tabs, mode, float(rate), duration)
        steps.append(step)
        if step["collapsed"]:
            break
        time.sleep(0.3)
    return steps


def _idle_cores(bench: Bench, server: Server, seconds: float) -> float:
    """The workers' CPU use with the tabs connected and no claims (pings, presence,
    timers): the share of a step's CPU that is not the claims' own."""
    before = bench.cpu(server)["server"]
    began = time.monotonic()
    time.sleep(seconds)
    return round((bench.cpu(server)["server"] - before) / (time.monotonic() - began), 4)


def run_takeover(
    bench: Bench, kind: str, server: Server, tabs: int, modes: tuple[str, ...]
) -> dict[str, Any]:
    """``preset.runs`` ladders per mode with ``tabs`` tabs connected (the caller
    connects them); returns every step of every run."""
    preset = bench.preset
    out: dict[str, Any] = {"kind": kind, "tabs": tabs, "server": server.name, "modes": {}}
    for mode in modes:  # warm-up: code paths, connection pools, scripts
        _step(bench, server, tabs, mode, 100.0, 0.5)
    time.sleep(0.3)
    out["idle_cores"] = _idle_cores(bench, server, max(1.0, preset.step_seconds))
    bench.log(f"  {kind} · {tabs} tabs idle: workers use {out['idle_cores']:.3f} cores")
    for run in range(preset.runs):
        for mode in modes:
            rates = preset.http_rates if mode == "http" else preset.direct_rates
            bench.log(f"  {kind} · {tabs} tabs · {mode} claims · run {run + 1}/{preset.runs}")
            steps = _ladder(bench, server, tabs, mode, rates)
            out["modes"].setdefault(mode, []).append(steps)
    bench.sync_tokens(kind)
    return out
