"""SVG charts of the takeover ladders: p50 and p99 push latency against the claim rate,
sessionwatch and every peer measured in the same run (the floor among them), one chart
per tab count and claim mode.

``python -m tests.bench run`` draws them next to its JSON; ``python -m tests.bench
charts results.json --out docs/perf/`` draws them again from a JSON (docs regenerated
without rerunning). matplotlib is imported here only, lazily by the callers, so the
benchmark runs without it. The output is deterministic for a given JSON and matplotlib
version (a fixed ``svg.hashsalt``, no date, text kept as text), so regenerated files do
not churn in git.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .ladders import KINDS, MODES, NAMES, by_rate, ladder_rates, median, run_count, tab_counts
from .stats import DASH, spread
from .takeover import P99_TARGET_MS

__all__ = ["chart_name", "draw_charts"]

_COLOURS = {
    "sw": "#1f77b4",
    "sio": "#ff7f0e",
    "node": "#2ca02c",
    "channels": "#9467bd",
    "floor": "#7f7f7f",
}
_COLLAPSE = "#d62728"
_MODE_TITLES = {"http": "HTTP claims (the whole path)", "direct": "direct claims (push path)"}
_METADATA = {"Date": None, "Creator": "python -m tests.bench charts"}


def chart_name(tabs: int, mode: str) -> str:
    """The file name of one chart (a prefix may precede it)."""
    return f"takeover-{tabs}-{mode}.svg"


def _series(
    steps: dict[float, list[dict[str, Any]]], rates: list[float], key: str
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Rates, medians and the distances to min and max over runs, for the rates measured."""
    xs, ys, below, above = [], [], [], []
    for rate in rates:
        summary = spread([s.get(key) for s in steps.get(rate, [])])
        if summary["median"] is None:
            continue
        xs.append(rate)
        ys.append(summary["median"])
        below.append(summary["median"] - summary["min"])
        above.append(summary["max"] - summary["median"])
    return xs, ys, below, above


def _draw_one(results: dict[str, Any], tabs: int, mode: str, path: Path) -> bool:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    rates = ladder_rates(results, tabs, mode)
    kinds = [k for k in KINDS if run_count(results, k, tabs, mode)]
    if not kinds or not rates:
        return False
    figure = Figure(figsize=(8.5, 4.4), layout="constrained")
    axes = figure.add_subplot()
    collapsed_x: list[float] = []
    collapsed_y: list[float] = []
    unmeasured_x: list[float] = []
    for kind in kinds:
        steps = by_rate(results, kind, tabs, mode)
        runs = run_count(results, kind, tabs, mode)
        for key, style, marker in (("p50", "-", "o"), ("p99", "--", "s")):
            xs, ys, below, above = _series(steps, rates, key)
            axes.errorbar(
                xs,
                ys,
                yerr=[below, above] if runs > 1 else None,
                color=_COLOURS[kind],
                linestyle=style,
                marker=marker,
                markersize=5,
                capsize=3,
                linewidth=1.6,
                label=f"{NAMES[kind]} {key}",
            )
        for rate, at_rate in steps.items():
            if not any(s.get("collapsed") for s in at_rate):
                continue
            p99 = median(at_rate, "p99")
            if p99 is None or math.isnan(p99):
                unmeasured_x.append(rate)
            else:
                collapsed_x.append(rate)
                collapsed_y.append(p99)
    axes.axhline(P99_TARGET_MS, color="0.4", linestyle=":", linewidth=1.2)
    axes.annotate(
        f"p99 ≤ {P99_TARGET_MS:g} ms: a step passes",
        xy=(0.01, P99_TARGET_MS),
        xycoords=("axes fraction", "data"),
        xytext=(0, 3),
        textcoords="offset points",
        fontsize=8,
        color="0.35",
    )
    handles, labels = axes.get_legend_handles_labels()
    if collapsed_x:
        axes.scatter(
            collapsed_x,
            collapsed_y,
            s=170,
            facecolors="none",
            edgecolors=_COLLAPSE,
            linewidths=1.8,
            zorder=5,
        )
        handles.append(
            Line2D(
                [],
                [],
                linestyle="none",
                marker="o",
                markersize=11,
                markerfacecolor="none",
                markeredgecolor=_COLLAPSE,
                markeredgewidth=1.8,
            )
        )
        labels.append("collapsed, ladder stopped\n(p99 circled)")
    if unmeasured_x:  # no push arrived: no latency to plot, marked at the top
        axes.scatter(
            unmeasured_x,
            [0.96] * len(unmeasured_x),
            transform=axes.get_xaxis_transform(),
            marker="X",
            s=80,
            color=_COLLAPSE,
            zorder=5,
        )
        handles.append(Line2D([], [], linestyle="none", marker="X", markersize=9, color=_COLLAPSE))
        labels.append("collapsed, no push\narrived (no latency)")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xticks(rates, [f"{r:,.0f}" for r in rates])
    axes.xaxis.set_minor_locator(NullLocator())
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_locator(NullLocator())
    axes.set_xlim(rates[0] / 1.4, rates[-1] * 1.4)
    axes.set_xlabel("claims per second (offered, open loop)")
    axes.set_ylabel("claim → superseded frame latency (ms, log)")
    meta = results.get("meta", {})
    runs = max(run_count(results, k, tabs, mode) for k in kinds)
    axes.set_title(
        f"Takeover push latency · {tabs:,} tabs · {_MODE_TITLES.get(mode, mode)}",
        fontsize=11,
    )
    axes.text(
        1.02,
        0.0,
        f"{meta.get('preset', '?')} preset\ncommit {meta.get('commit', '?')}\n"
        + (f"medians of {runs} runs,\nbars: min{DASH}max" if runs > 1 else "1 run"),
        transform=axes.transAxes,
        va="bottom",
        fontsize=8,
        color="0.35",
    )
    # Outside the plot: never over a point, whatever the figures.
    axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    figure.savefig(path, format="svg", metadata=_METADATA)
    return True


def draw_charts(results: dict[str, Any], out: Path, prefix: str = "") -> list[Path]:
    """Write one SVG per tab count and claim mode measured into ``out``; returns the
    paths. Raises ImportError when matplotlib is not installed."""
    import matplotlib

    matplotlib.use("Agg")  # no display; the SVG backend does the writing
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with matplotlib.rc_context(
        {
            "svg.hashsalt": "sessionwatch-bench",  # stable ids for clip paths and markers
            "svg.fonttype": "none",  # text as text: smaller files, readable diffs
            "font.size": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    ):
        for tabs in tab_counts(results):
            for mode in MODES:
                path = out / f"{prefix}{chart_name(tabs, mode)}"
                if _draw_one(results, tabs, mode, path):
                    written.append(path)
    return written
