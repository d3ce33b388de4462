"""The markdown report of a results dict (``runner.run``'s JSON)."""

from __future__ import annotations

from typing import Any

from .ladders import KINDS, NAMES, by_rate, cpu_ms_per_claim, highest_passing, median, run_count
from .overhead import ROUTES
from .stats import DASH, fmt_spread, spread, table
from .takeover import P99_TARGET_MS
from .targets import rows as target_rows

__all__ = ["render"]

MODES = {
    "http": "HTTP claims (`POST /claim` with the session cookie: the whole path)",
    "direct": "direct claims (the claim's Redis step from the claimer process, no HTTP: the push path alone)",
}
MEMORY_LABELS = {
    "sw-uvicorn": ("sessionwatch", "uvicorn (service default)", "no"),
    "sw-uvicorn-deflate": ("sessionwatch", "uvicorn", "yes"),
    "sw-hypercorn": ("sessionwatch", "hypercorn", "no"),
    "sw-hypercorn-deflate": ("sessionwatch", "hypercorn", "yes"),
    "sw-granian": ("sessionwatch", "granian", "no"),
    "sio-uvicorn": ("python-socketio", "uvicorn", "no"),
    "sio-uvicorn-deflate": ("python-socketio", "uvicorn", "yes"),
    "node-cluster": ("Socket.IO (Node)", "node:http, cluster", "no"),
    "channels-uvicorn": ("Django Channels", "uvicorn", "no"),
    "floor-uvicorn": ("floor (no session logic)", "uvicorn", "no"),
}
ROUTE_NAMES = {
    "bare": "Quart, bare route (unprotected)",
    "cookie": "Quart, default cookie session",
    "open": "sessionwatch installed, unprotected route",
    "protected": "sessionwatch, `@active_tab_required`",
}


def _steps(
    results: dict[str, Any], mode: str
) -> dict[tuple[str, int], dict[float, list[dict[str, Any]]]]:
    out = {}
    for entry in results.get("takeover", []):
        steps = by_rate(results, entry["kind"], entry["tabs"], mode)
        if steps:
            out[(entry["kind"], entry["tabs"])] = steps
    return out


def _cell(steps: list[dict[str, Any]] | None, key: str, runs: int) -> str:
    if not steps:
        return "collapsed below"
    if key == "cpu":
        return fmt_spread(spread([cpu_ms_per_claim(s) for s in steps]), 3)
    text = fmt_spread(spread([s[key] for s in steps]), 2 if key != "achieved" else 0)
    if key == "p99" and len(steps) < runs:
        text += f" [{len(steps)}/{runs} runs]"
    if key == "achieved" and any(s["lost"] or s["failures"] for s in steps):
        text += " ⚠"
    return text


def _takeover(results: dict[str, Any]) -> list[str]:
    out = []
    for mode in ("http", "direct"):
        data = _steps(results, mode)
        if not data:
            continue
        out.append(f"#### {MODES[mode]}\n")
        every = [k for k in KINDS if any(key[0] == k for key in data)]
        kinds = [k for k in ("sw", "sio") if k in every]
        tab_counts = sorted({key[1] for key in data})
        rates = sorted({r for by_rate in data.values() for r in by_rate})
        header = ["tabs", "claims/s"]
        for kind in kinds:
            header += [
                f"{NAMES[kind]} achieved/s",
                "p50 ms",
                "p99 ms",
                "max ms",
                "worker CPU ms/claim",
            ]
        if len(kinds) == 2:
            header += ["p50 ratio sio÷sw", "p99 ratio sio÷sw"]
        rows = []
        for tabs in tab_counts:
            for rate in rates:
                if not any(rate in data.get((k, tabs), {}) for k in kinds):
                    continue
                row: list[Any] = [f"{tabs:,}", f"{rate:,.0f}"]
                medians: dict[str, dict[str, float | None]] = {}
                for kind in kinds:
                    steps = data.get((kind, tabs), {}).get(rate)
                    runs = run_count(results, kind, tabs, mode)
                    row += [_cell(steps, k, runs) for k in ("achieved", "p50", "p99", "max", "cpu")]
                    medians[kind] = {
                        k: spread([s[k] for s in steps])["median"] if steps else None
                        for k in ("p50", "p99")
                    }
                if len(kinds) == 2:
                    for k in ("p50", "p99"):
                        a, b = medians["sio"][k], medians["sw"][k]
                        row.append(f"{a / b:.2f}" if a and b else "—")
                rows.append(row)
        if kinds:
            out.append(table(header, rows))
        if len(every) > len(kinds):
            out += ["", *_side_by_side(results, data, mode, every)]
        passing = []
        for tabs in tab_counts:
            row = [f"{tabs:,}"]
            for kind in every:
                best = highest_passing(results, kind, tabs, mode)
                row.append(f"{best:,.0f}/s" if best else "none")
            passing.append(row)
        out.append(
            f"\nHighest claim rate with p99 ≤ {P99_TARGET_MS:g} ms, nothing lost ({mode}):\n"
        )
        out.append(table(["tabs", *(NAMES[k] for k in every)], passing))
        out.append("")
    idle = [
        f"{NAMES[e['kind']]} {e['tabs']:,} tabs: {e['idle_cores']:.3f} cores"
        for e in results.get("takeover", [])
        if e.get("idle_cores") is not None
    ]
    if out and idle:
        out.append(
            "Worker CPU ms/claim: the workers' CPU over the step ÷ claims completed, their "
            "idle work included; the workers' CPU with the tabs connected and no claims: "
            + ", ".join(idle)
            + ".\n"
        )
    if out and any("⚠" in line for line in out):
        out.append(
            "⚠: some run lost pushes or had failed claims (see JSON). `collapsed below`: the ladder stopped at a lower rate in every run."
        )
    return out


def _side_by_side(
    results: dict[str, Any],
    data: dict[tuple[str, int], dict[float, list[dict[str, Any]]]],
    mode: str,
    kinds: list[str],
) -> list[str]:
    """Every implementation measured, the floor included, at each rate: median p50 / p99
    and the workers' CPU per claim; ``collapsed below`` where the ladder stopped earlier."""
    header = ["tabs", "claims/s"]
    for kind in kinds:
        header += [f"{NAMES[kind]} p50 / p99 ms", "CPU ms/claim"]
    rows = []
    for tabs in sorted({key[1] for key in data}):
        rates = sorted({r for (_, t), steps in data.items() if t == tabs for r in steps})
        for rate in rates:
            row: list[Any] = [f"{tabs:,}", f"{rate:,.0f}"]
            for kind in kinds:
                steps = data.get((kind, tabs), {}).get(rate)
                if not run_count(results, kind, tabs, mode):
                    row += ["not run", "—"]
                    continue
                if not steps:
                    row += ["collapsed below", "—"]
                    continue
                p50, p99 = median(steps, "p50"), median(steps, "p99")
                cell = f"{p50:.2f} / {p99:.2f}" if p50 is not None and p99 is not None else "—"
                if any(s["lost"] or s["failures"] for s in steps):
                    cell += " ⚠"
                cpu = spread([cpu_ms_per_claim(s) for s in steps])["median"]
                row += [cell, "—" if cpu is None else f"{cpu:.3f}"]
            rows.append(row)
    return [
        f"Every implementation side by side ({mode}; medians over runs):\n",
        table(header, rows),
    ]


def _memory(results: dict[str, Any]) -> list[str]:
    entries = results.get("memory", [])
    if not entries:
        return []
    rows = []
    order = list(MEMORY_LABELS)
    entries = sorted(entries, key=lambda m: order.index(m["label"]) if m["label"] in order else 99)
    for m in entries:
        who, server, deflate = MEMORY_LABELS.get(m["label"], (m["kind"], m["server"], "?"))
        batches = m["batch_kb_per_tab"]
        rows.append(
            [
                who,
                server,
                f"{deflate} ({m['negotiated']:,} negotiated)",
                f"{m['connected']:,}",
                f"**{m['kb_per_tab']:.1f}**",
                f"{min(batches):.1f}{DASH}{max(batches):.1f}" if len(batches) > 1 else "—",
                " / ".join(f"{n:,}" for n in m["tabs_per_worker"]),
            ]
        )
    return [
        table(
            [
                "app",
                "ASGI server",
                "permessage-deflate",
                "tabs",
                "KB per tab (RSS Δ / N)",
                "per-batch KB",
                "sockets per worker",
            ],
            rows,
        )
    ]


def _overhead(results: dict[str, Any]) -> list[str]:
    data = results.get("overhead")
    if not data:
        return []
    rows = []
    for workers, measured in data["workers"].items():
        bare = spread(measured["rps"]["bare"])["median"]
        unprotected = spread(measured["rps"]["open"])["median"]
        for route in ROUTES:
            summary = spread(measured["rps"][route])
            ratio = summary["median"] / bare if bare and summary["median"] else None
            same_app = (
                summary["median"] / unprotected
                if route in ("open", "protected") and unprotected and summary["median"]
                else None
            )
            redis = measured["redis"].get(route)
            latency = measured.get("latency", {}).get(route)
            rows.append(
                [
                    workers,
                    ROUTE_NAMES[route],
                    fmt_spread(summary, 0),
                    f"{ratio:.0%}" if ratio else "—",
                    f"{same_app:.0%}" if same_app else "—",
                    f"{latency['p50']:.2f} / {latency['p99']:.2f}" if latency else "—",
                    f"{redis['evalsha_per_request']:.2f}" if redis else "0",
                    (
                        ", ".join(f"{k} {v:g}" for k, v in redis["per_request"].items())
                        if redis
                        else "—"
                    ),
                ]
            )
    return [
        table(
            [
                "workers",
                "route",
                "req/s",
                "vs bare",
                "vs unprotected",
                "ms p50 / p99 at 200/s",
                "EVALSHA/req",
                "Redis commands/req (incl. inside Lua)",
            ],
            rows,
        )
    ]


def _fanout(results: dict[str, Any]) -> list[str]:
    data = results.get("fanout")
    if not data or not data["runs"]:
        return []
    runs = data["runs"]
    row = [
        f"{runs[0]['tabs']}",
        " / ".join(str(n) for n in runs[0]["tabs_per_worker"]),
        fmt_spread(spread([r["first_ms"] for r in runs])),
        fmt_spread(spread([r["p50_ms"] for r in runs])),
        f"**{fmt_spread(spread([r['last_ms'] for r in runs]))}**",
        fmt_spread(spread([r["response_ms"] for r in runs])),
        f"{min(r['told'] for r in runs)}/{runs[0]['tabs']}",
    ]
    return [
        table(
            [
                "tabs",
                "per worker (run 1)",
                "first told ms",
                "median tab ms",
                "last tab told ms",
                "HTTP answer ms",
                "told (worst run)",
            ],
            [row],
        )
    ]


def _storm(results: dict[str, Any]) -> list[str]:
    data = results.get("storm")
    if not data or not data["runs"]:
        return []
    runs = data["runs"]
    errors: dict[str, int] = {}
    retried: dict[str, int] = {}
    for r in runs:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
        for k, v in r["retried"].items():
            retried[k] = retried.get(k, 0) + v
    row = [
        f"{runs[0]['tabs']:,}",
        fmt_spread(spread([r["downtime_s"] for r in runs]), 1),
        fmt_spread(spread([r["p50_s"] for r in runs])),
        f"**{fmt_spread(spread([r['all_s'] for r in runs]))}**",
        f"{min(r['reverified'] for r in runs):,}/{runs[0]['tabs']:,}",
        ", ".join(f"{k} {v}" for k, v in errors.items()) or "0",
        ", ".join(f"{k} {v}" for k, v in retried.items()) or "0",
    ]
    return [
        table(
            [
                "tabs",
                "restart s",
                "half re-verified s",
                "all re-verified s",
                "re-verified (worst run)",
                "errors (all runs)",
                "retried attempts (all runs)",
            ],
            [row],
        )
    ]


def _targets(results: dict[str, Any]) -> list[str]:
    found = target_rows(results)
    if not found:
        return []
    return [
        table(["target", "measured", ""], found),
        "",
        "Worker CPU: the server workers' CPU seconds over a step ÷ the claims completed in "
        "it (the push each claim causes and the workers' idle work included; see "
        "docs/performance.md, How it measures). Rates compared: the preset's ladder; a "
        "rate where a peer collapsed or stopped counts when sessionwatch measured it.",
    ]


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    parts = [
        f"## Results — `{meta['command']}` ({meta['preset']}, {meta['runs']} run(s); {meta['date']})",
        "",
        f"Machine: {meta['cpus']} cores ({meta['cpu_model']}), {meta['memory_gb']:.0f} GiB, "
        f"Python {meta['python']}, Redis {meta['redis']}; commit {meta['commit']}. "
        "**The 2 cores are shared by the server's workers, Redis and the load generator** "
        f"({meta['load_processes']}); every figure is bounded by that. "
        f"Cells: median (min{DASH}max) over runs."
        + (
            f" Load average before/after the run: {meta['loadavg_before']:.1f} / {meta['loadavg_after']:.1f}."
            if meta.get("loadavg_before") is not None
            else ""
        )
        + (f" Service app: `{meta['service_factory']}`." if meta.get("service_factory") else ""),
        "",
    ]
    sections = [
        ("### Targets (issues #17 and #28)", _targets(results)),
        (f"### 1{DASH}2. Takeover push latency: claim → `superseded` frame", _takeover(results)),
        ("### 3. Idle memory per connected tab", _memory(results)),
        ("### 4. Request overhead", _overhead(results)),
        ("### 5. Fan-out: revoke-others for a user's tabs", _fanout(results)),
        ("### 6. Reconnect storm after a service restart", _storm(results)),
    ]
    if results.get("errors"):
        sections.append(
            (
                "### Scenarios that failed",
                [f"- {e['scenario']}: `{e['error'][:300]}`" for e in results["errors"]],
            )
        )
    for title, body in sections:
        if body:
            parts += [title, "", *body, ""]
    return "\n".join(parts).rstrip() + "\n"
