"""Percentiles, run summaries (median, min and max) and markdown formatting."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["DASH", "fmt_spread", "percentile", "spread", "table"]

DASH = "\u2013"  # the en dash of ranges in the tables


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile of ``values`` (``fraction`` in 0..1); NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Median, min and max over runs (``None`` entries are skipped)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
        "n": len(present),
    }


def _number(value: float, digits: int) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def fmt_spread(summary: dict[str, Any] | None, digits: int = 2, unit: str = "") -> str:
    """``1.23 (1.10-1.40)`` (with an en dash); just the value for one run; ``—`` when nothing was measured."""
    if not summary or summary.get("median") is None:
        return "—"
    text = _number(summary["median"], digits) + unit
    if summary["n"] > 1:
        text += f" ({_number(summary['min'], digits)}{DASH}{_number(summary['max'], digits)})"
    return text


def table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)
