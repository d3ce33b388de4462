"""Issue #17's targets, each with the figure measured in a results dict and whether it
is met. Pure: the report renders :func:`rows`, the tests feed it hand-made dicts.

The targets (docs/performance.md, "How it measures"):

- at every rate of the ladder, for each tab count and claim mode, sessionwatch's p50
  and p99 at or below every peer's in the same run (python-socketio, Node Socket.IO,
  Django Channels: issue #28), and its p50 within 2 times the floor's at 1,000 tabs;
- HTTP claim → push p50 ≤ 1.0 ms and p99 ≤ 2 ms at 1,000 tabs, 100 claims/s;
- ≥ 5,000 pushes/s (direct) at p99 ≤ 5 ms with 10,000 tabs;
- worker CPU ≤ 0.8 ms per HTTP claim and ≤ 0.05 ms per push;
- the protected route ≥ 80 % of the req/s of the same route on Quart's cookie session;
- ≤ 16 KB per idle tab (the service default), and at or below every peer's;

and, kept from issue #6, exactly one Redis round trip per protected request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .ladders import (
    KINDS,
    NAMES,
    by_rate,
    cpu_ms_per_claim,
    highest_passing,
    idle_cores,
    kernel_ms_per_claim,
    ladder_rates,
    median,
    run_count,
    tab_counts,
)
from .memory import MEMORY_TARGET_KB
from .stats import spread

__all__ = [
    "CLAIM_CPU_TARGET_MS",
    "FLOOR_FACTOR",
    "HTTP_P50_TARGET_MS",
    "HTTP_P99_TARGET_MS",
    "PUSH_CPU_TARGET_MS",
    "PUSH_RATE_TARGET",
    "ROUTE_RATIO_TARGET",
    "Comparison",
    "Target",
    "compare_ladders",
    "rows",
    "targets",
]

HTTP_P50_TARGET_MS = 1.0
HTTP_P99_TARGET_MS = 2.0
PUSH_RATE_TARGET = 5000.0
CLAIM_CPU_TARGET_MS = 0.8
PUSH_CPU_TARGET_MS = 0.05
ROUTE_RATIO_TARGET = 0.80
FLOOR_FACTOR = 2.0  # sessionwatch's p50 at most this many times the floor's
_COMPARED_PEERS = ("sio", "node", "channels")

# Where the single-figure targets are read: the tab counts and rates, else the
# closest the preset has (the row then names what it used).
_SMALL_TABS = 1000
_LARGE_TABS = 10000
_CLAIM_RATE = 100.0
_PUSH_CPU_RATE = 1000.0  # at 100/s the workers' idle work would dominate a push's share


@dataclass(frozen=True)
class Target:
    """One row: what is asked, what was measured, met or not (``None``: not measured)."""

    target: str
    measured: str
    passed: bool | None


@dataclass(frozen=True)
class Comparison:
    """sessionwatch against a peer over one ladder (tab count, mode).

    ``passed``: rates where sessionwatch's median p50 and p99 were at or below the
    peer's, or where the peer collapsed or did not run while sessionwatch's step was
    measured (``by_collapse`` of them); ``failing``: the other rates, each with why.
    Against the floor, only p50 counts, against ``FLOOR_FACTOR`` times the floor's."""

    tabs: int
    mode: str
    rates: int
    passed: int
    by_collapse: int
    failing: tuple[str, ...]
    peer: str = "sio"


def _majority(runs: int) -> int:
    return runs // 2 + 1


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _rate(rate: float) -> str:
    return f"{rate:,.0f}/s"


def compare_ladders(
    results: dict[str, Any], tabs: int, mode: str, peer: str = "sio"
) -> Comparison | None:
    """Step by step comparison; ``None`` when the peer's ladder was not run at all
    (scenario 2 or the peer left out: nothing to compare with). A sessionwatch ladder
    that did not run fails every rate.

    A step of an implementation counts when a majority of its runs measured it: for
    sessionwatch, a push latency at that rate; for the peer, a step that did not
    collapse. Figures are medians over those runs."""
    sw_runs = run_count(results, "sw", tabs, mode)
    sio_runs = run_count(results, peer, tabs, mode)
    if not sio_runs:
        return None
    sw_steps = by_rate(results, "sw", tabs, mode)
    sio_steps = by_rate(results, peer, tabs, mode)
    keys = ("p50",) if peer == "floor" else ("p50", "p99")
    factor = FLOOR_FACTOR if peer == "floor" else 1.0
    rates = ladder_rates(results, tabs, mode)
    passed = by_collapse = 0
    failing: list[str] = []
    for rate in rates:
        mine = [s for s in sw_steps.get(rate, []) if s.get("p50") is not None]
        theirs = [
            s
            for s in sio_steps.get(rate, [])
            if s.get("p50") is not None and not s.get("collapsed")
        ]
        if not sw_runs or len(mine) < _majority(sw_runs):
            failing.append(f"{_rate(rate)} not measured")
            continue
        if len(theirs) < _majority(sio_runs):
            passed += 1
            by_collapse += 1
            continue
        worse = []
        for key in keys:
            a, b = median(mine, key), median(theirs, key)
            if a is None or b is None or a > factor * b:
                bound = (
                    _ms(b or math.nan) if factor == 1.0 else f"{factor:g} x {_ms(b or math.nan)}"
                )
                worse.append(f"{key} {_ms(a or math.nan)} > {bound}")
        if worse:
            failing.append(f"{_rate(rate)} " + ", ".join(worse))
        else:
            passed += 1
    return Comparison(tabs, mode, len(rates), passed, by_collapse, tuple(failing), peer)


def _comparison_row(comparison: Comparison) -> Target:
    name = NAMES[comparison.peer]
    measured = f"{comparison.passed}/{comparison.rates} rates"
    if comparison.by_collapse:
        measured += f" ({comparison.by_collapse} where {name} collapsed or stopped)"
    if comparison.failing:
        measured += "; ✗ " + "; ".join(comparison.failing) + " (ms)"
    where = f"at every rate, {comparison.tabs:,} tabs, {comparison.mode}"
    if comparison.peer == "floor":
        target = f"sessionwatch p50 ≤ {FLOOR_FACTOR:g} x the floor's {where}"
    else:
        target = f"sessionwatch p50 and p99 ≤ {name}'s {where}"
    return Target(target, measured, comparison.passed == comparison.rates)


def _pick(available: list[float] | list[int], wanted: float) -> float | None:
    """``wanted`` if available, else the closest available value."""
    if not available:
        return None
    if wanted in available:
        return float(wanted)
    return float(min(available, key=lambda v: (abs(math.log(v / wanted)), v)))


def _where(tabs: int, wanted_tabs: int, mode: str, rate: float, wanted_rate: float) -> str:
    label = f"{tabs:,} tabs, {mode}, {_rate(rate)}"
    if tabs != wanted_tabs or rate != wanted_rate:
        label += f" (this preset's closest to {wanted_tabs:,} tabs, {_rate(wanted_rate)})"
    return label


def _latency_rows(results: dict[str, Any], tabs: int) -> list[Target]:
    steps = by_rate(results, "sw", tabs, "http")
    rate = _pick(sorted(steps), _CLAIM_RATE)
    where_rate = rate if rate is not None else _CLAIM_RATE
    where = _where(tabs, _SMALL_TABS, "http", where_rate, _CLAIM_RATE)
    out = []
    for key, bound in (("p50", HTTP_P50_TARGET_MS), ("p99", HTTP_P99_TARGET_MS)):
        value = median(steps.get(where_rate), key)
        out.append(
            Target(
                f"HTTP claim → push {key} ≤ {bound:g} ms, {where}",
                "not measured" if value is None else f"{_ms(value)} ms",
                None if value is None else value <= bound,
            )
        )
    return out


def _push_rate_row(results: dict[str, Any], tabs: int) -> Target:
    label = f"≥ {PUSH_RATE_TARGET:,.0f} pushes/s at p99 ≤ 5 ms, {tabs:,} tabs, direct"
    if tabs != _LARGE_TABS:
        label += f" (the largest tab count of this preset, not {_LARGE_TABS:,})"
    if not run_count(results, "sw", tabs, "direct"):
        return Target(label, "not measured", None)
    best = highest_passing(results, "sw", tabs, "direct")
    measured = f"highest passing: {_rate(best)}" if best else "no rate passed"
    at_target = median(by_rate(results, "sw", tabs, "direct").get(PUSH_RATE_TARGET), "p99")
    if at_target is not None:
        measured += f" (p99 at {_rate(PUSH_RATE_TARGET)}: {_ms(at_target)} ms)"
    return Target(label, measured, bool(best and best >= PUSH_RATE_TARGET))


def _cpu_row(
    results: dict[str, Any], tabs: int, mode: str, wanted_rate: float, bound: float
) -> Target:
    what = "HTTP claim" if mode == "http" else "push"
    steps = by_rate(results, "sw", tabs, mode)
    rate = _pick(sorted(steps), wanted_rate)
    where = _where(tabs, _SMALL_TABS, mode, rate if rate is not None else wanted_rate, wanted_rate)
    label = f"worker CPU per {what} ≤ {bound:g} ms, {where}"
    mine = steps.get(rate, []) if rate is not None else []
    value = spread([cpu_ms_per_claim(s) for s in mine])["median"]
    if value is None:
        return Target(label, "not measured", None)
    measured = f"{value:.3f} ms"
    peers = []
    for kind in KINDS[1:]:
        theirs = by_rate(results, kind, tabs, mode).get(rate, []) if rate is not None else []
        other = spread([cpu_ms_per_claim(s) for s in theirs])["median"]
        if other is not None:
            peers.append(f"{NAMES[kind]} {other:.3f}")
    if peers:
        measured += f" ({', '.join(peers)})"
    kernel = spread([kernel_ms_per_claim(s) for s in mine])["median"]
    if kernel is not None:
        measured += f"; of it in the kernel (system calls) {kernel:.3f} ms"
    idle = idle_cores(results, "sw", tabs)
    achieved = median(mine, "achieved")
    if idle is not None and achieved:
        measured += f"; of it the workers' idle work ≈ {1000 * idle / achieved:.3f} ms"
    return Target(label, measured, value <= bound)


def _route_rows(results: dict[str, Any]) -> list[Target]:
    data = results.get("overhead")
    if not data:
        return []
    out = []
    for workers, measured in data["workers"].items():
        protected = spread(measured["rps"].get("protected", []))["median"]
        cookie = spread(measured["rps"].get("cookie", []))["median"]
        label = (
            f"protected route ≥ {ROUTE_RATIO_TARGET:.0%} of the same route on Quart's cookie "
            f"session, req/s ({workers} worker(s))"
        )
        if protected and cookie:
            ratio = protected / cookie
            out.append(
                Target(
                    label,
                    f"{ratio:.0%} ({protected:,.0f} vs {cookie:,.0f})",
                    ratio >= ROUTE_RATIO_TARGET,
                )
            )
        else:
            out.append(Target(label, "not measured", None))
        redis = measured["redis"].get("protected")
        if redis:
            evalsha = redis["evalsha_per_request"]
            out.append(
                Target(
                    f"1 Redis round trip per protected request ({workers} worker(s))",
                    f"{evalsha:.2f} EVALSHA/req",
                    math.isclose(evalsha, 1.0, abs_tol=0.01),
                )
            )
    return out


def _memory_rows(results: dict[str, Any]) -> list[Target]:
    entries = results.get("memory", [])
    mine = [m for m in entries if m["label"] == "sw-uvicorn"]
    out = [
        Target(
            f"≤ {MEMORY_TARGET_KB:g} KB per idle tab (service default, {m['connected']:,} tabs)",
            f"{m['kb_per_tab']:.1f} KB",
            m["kb_per_tab"] <= MEMORY_TARGET_KB,
        )
        for m in mine
    ]
    # Each peer in its own configuration (no compression), the floor excepted.
    peers = [
        m for m in entries if m["kind"] in _COMPARED_PEERS and not m.get("compression_offered")
    ]
    if mine and peers:
        ours = mine[0]["kb_per_tab"]
        out.append(
            Target(
                "memory per idle tab ≤ every peer's",
                f"{ours:.1f} KB vs "
                + ", ".join(f"{NAMES[m['kind']]} {m['kb_per_tab']:.1f}" for m in peers),
                all(ours <= m["kb_per_tab"] for m in peers),
            )
        )
    return out


def targets(results: dict[str, Any]) -> list[Target]:
    """Every target this run measured something for, in the issue's order."""
    out: list[Target] = []
    counts = tab_counts(results)
    for tabs in counts:
        for peer in _COMPARED_PEERS:
            for mode in ("http", "direct"):
                comparison = compare_ladders(results, tabs, mode, peer)
                if comparison is not None:
                    out.append(_comparison_row(comparison))
    small_tabs = _pick(counts, _SMALL_TABS)
    if small_tabs is not None:
        for mode in ("http", "direct"):
            comparison = compare_ladders(results, int(small_tabs), mode, "floor")
            if comparison is not None:
                out.append(_comparison_row(comparison))
    if counts:
        small = int(_pick(counts, _SMALL_TABS) or counts[0])
        out += _latency_rows(results, small)
        out.append(
            _push_rate_row(results, counts[-1] if _LARGE_TABS not in counts else _LARGE_TABS)
        )
        out.append(_cpu_row(results, small, "http", _CLAIM_RATE, CLAIM_CPU_TARGET_MS))
        out.append(_cpu_row(results, small, "direct", _PUSH_CPU_RATE, PUSH_CPU_TARGET_MS))
    out += _route_rows(results)
    out += _memory_rows(results)
    return out


def rows(results: dict[str, Any]) -> list[list[str]]:
    """:func:`targets` as table rows: target, measured, ✓ / ✗ / — (not measured)."""
    mark = {True: "✓", False: "✗", None: "—"}
    return [[t.target, t.measured, mark[t.passed]] for t in targets(results)]
