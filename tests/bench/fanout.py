"""Scenario 5: revoke-all fan-out.

A user signs in ``tabs + 1`` sessions (the session API's ``login``, as an upstream app), each claims a tab
and ``tabs`` of them open a socket (spread over the workers by the kernel's accept).
The last session calls ``POST /_sessionwatch/sessions/revoke-others``; the figure is
the time from writing that request to the last tab receiving ``revoked`` (each tab is
then closed with 4003).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import Any

from .agents import call_all
from .context import HOLDERS, Bench
from .httpclient import build_request
from .servers import Server
from .stats import percentile

__all__ = ["run_fanout"]

_BASE_INDEX = 10_000_000  # holder indices of these tabs: apart from the pools'


def run_fanout(bench: Bench, server: Server) -> dict[str, Any]:
    preset = bench.preset
    tabs = preset.fanout_tabs
    host, port = server.host, server.port
    runs = []
    for run in range(preset.runs):
        user = f"fanout-{run}-{secrets.token_hex(4)}"
        total = tabs + 1
        shares = [total // HOLDERS + (1 if i < total % HOLDERS else 0) for i in range(HOLDERS)]
        made = call_all(
            bench.holders,
            "create_sessions",
            120,
            [dict(kind="sw", host=host, port=port, count=n, user=user) for n in shares],
        )
        sessions = [entry for batch in made for entry in batch]
        revoker, targets = sessions[-1], sessions[:-1]
        base = _BASE_INDEX + run * 100_000
        indices = [base + i for i in range(len(targets))]
        fds_before = server.fds()
        call_all(
            bench.holders,
            "connect",
            120,
            [
                dict(
                    kind="sw",
                    host=host,
                    port=port,
                    tabs=[
                        (base + i, c, t) for i, (c, t, _) in enumerate(targets) if i % HOLDERS == h
                    ],
                )
                for h in range(HOLDERS)
            ],
        )
        fds_after = server.fds()
        call_all(bench.holders, "log_start", 30)
        raw = build_request(
            "POST",
            "/_sessionwatch/sessions/revoke-others",
            f"{host}:{port}",
            headers={
                "Cookie": revoker[0],
                "X-SessionWatch-Tab": revoker[1],
                "Origin": f"http://{host}:{port}",
                "Content-Type": "application/json",
            },
            body=b"{}",
        )
        answer = bench.claimer.call("one", 30, host=host, port=port, raw=raw)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            told = sum(call_all(bench.holders, "log_count", 30, [dict(kind="revoked")] * HOLDERS))
            closed = sum(
                call_all(bench.holders, "log_count", 30, [dict(kind="close_4003")] * HOLDERS)
            )
            if told >= len(targets) and closed >= len(targets):
                break
            time.sleep(0.02)
        logs = [entry for log in call_all(bench.holders, "log_take", 30) for entry in log]
        bench.close_tabs(indices)
        told_ms = sorted(
            (t - answer["sent_ns"]) / 1e6 for i, kind, _, t in logs if kind == "revoked"
        )
        closes = Counter(kind for _, kind, _, _ in logs if kind.startswith("close_"))
        result = {
            "tabs": len(targets),
            "status": answer["status"],
            "revoked": answer["body"],
            "told": len(told_ms),
            "first_ms": told_ms[0] if told_ms else None,
            "p50_ms": percentile(told_ms, 0.5) if told_ms else None,
            "last_ms": told_ms[-1] if told_ms else None,
            "response_ms": (answer["done_ns"] - answer["sent_ns"]) / 1e6,
            "closes": dict(closes),
            "tabs_per_worker": sorted(fds_after[p] - fds_before.get(p, 0) for p in fds_after),
        }
        runs.append(result)
        bench.log(
            f"  fan-out run {run + 1}: {result['told']}/{len(targets)} told, last after "
            f"{result['last_ms'] or float('nan'):.2f} ms (HTTP answer {result['response_ms']:.2f} ms, "
            f"tabs per worker {result['tabs_per_worker']})"
        )
    return {"runs": runs}
