"""Scenario 6: reconnect storm after a restart.

``tabs`` tabs are connected to the service. The service is stopped gracefully
(SIGTERM: every socket is closed) and started again on the same port; once it serves,
every tab reconnects at the same moment (no client-side spreading: the worst case;
the browser client itself waits a random 0-5 s first). A refused attempt (connection
refused, 5xx, 1013) is retried with jittered backoff (50 ms doubling, capped at 1 s).
The figure: from that moment until every tab is re-verified (``ready`` for its
token). Errors are attempts that end without a retry (4xx, a 4xxx close, a wrong
answer) or tabs not re-verified within two minutes.
"""

from __future__ import annotations

import time
from typing import Any

from .agents import call_all
from .context import HOLDERS, Bench
from .servers import Server
from .stats import percentile

__all__ = ["run_storm"]


def _merge(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for key, value in d.items():
            out[key] = out.get(key, 0) + value
    return out


def run_storm(bench: Bench, server: Server, tabs: int) -> dict[str, Any]:
    runs = []
    for run in range(bench.preset.runs):
        call_all(bench.holders, "storm_arm", 30)
        began = time.perf_counter_ns()
        server.stop(timeout=60)
        closed = call_all(bench.holders, "storm_wait_closed", 60, [dict(timeout=20)] * HOLDERS)
        server.start()
        go = time.perf_counter_ns()
        results = call_all(bench.holders, "storm_go", 300, [dict(timeout=120)] * HOLDERS)
        ready = sorted(t for r in results for t in r["ready_ns"])
        since_go = [(t - go) / 1e9 for t in ready]
        result = {
            "tabs": tabs,
            "closed": sum(c["closed"] for c in closed),
            "close_codes": _merge([c["codes"] for c in closed]),
            "downtime_s": (go - began) / 1e9,
            "reverified": len(ready),
            "all_s": since_go[-1] if len(ready) >= tabs else None,
            "p50_s": percentile(since_go, 0.5) if since_go else None,
            "p99_s": percentile(since_go, 0.99) if since_go else None,
            "errors": _merge([r["errors"] for r in results]),
            "retried": _merge([r["retried"] for r in results]),
            "attempts": sum(r["attempts"] for r in results),
        }
        runs.append(result)
        bench.wait_idle(server)
        bench.log(
            f"  storm run {run + 1}: {result['reverified']}/{tabs} re-verified, all after "
            f"{result['all_s'] if result['all_s'] is not None else float('nan'):.2f} s "
            f"(restart took {result['downtime_s']:.1f} s; errors {result['errors']}; "
            f"retried {result['retried']}; close codes {result['close_codes']})"
        )
    return {"runs": runs}
