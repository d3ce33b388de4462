"""Scenario 4: request overhead of a protected route.

The same view (``{"ok": true}``) served four ways by uvicorn (the service's options)
with 1 and 2 workers; closed-loop load over 64 keep-alive connections:

- ``bare``: Quart alone, no session touched;
- ``cookie``: Quart's default signed-cookie session read by the view;
- ``open``: sessionwatch installed, unprotected route, request with the session cookie
  (Quart opens the session for every request: one backend round trip);
- ``protected``: ``@watch.active_tab_required``, cookie + ``X-SessionWatch-Tab``.

Response times at a low rate (200/s, open loop) show each route's latency floor.
Redis commands per request come from ``INFO commandstats`` around exactly ``N``
requests (commands run inside Lua scripts are counted there too; ``EVALSHA`` is the
round trip).
"""

from __future__ import annotations

import time
from typing import Any

from .agents import call_all
from .context import HOLDERS, Bench
from .httpclient import build_request
from .servers import overhead_server

__all__ = ["RATIO_TARGET", "ROUTES", "run_overhead"]

RATIO_TARGET = 0.80
ROUTES = ("bare", "cookie", "open", "protected")
_SESSIONS = 64
_COUNTED = 2000


def run_overhead(bench: Bench) -> dict[str, Any]:
    preset = bench.preset
    out: dict[str, Any] = {"workers": {}}
    for workers in preset.rps_workers:
        plain = bench.start(overhead_server(bench.redis_url, "plain", workers=workers))
        watch = bench.start(overhead_server(bench.redis_url, "watch", workers=workers))
        try:
            out["workers"][str(workers)] = _measure(bench, plain, watch)
        finally:
            bench.stop(plain)
            bench.stop(watch)
    return out


def _measure(bench: Bench, plain: Any, watch: Any) -> dict[str, Any]:
    preset = bench.preset
    host = plain.host
    plain_host, watch_host = f"{host}:{plain.port}", f"{host}:{watch.port}"
    login = bench.claimer.call(
        "one", 30, host=host, port=plain.port, raw=build_request("GET", "/cookie/login", plain_host)
    )
    assert login["status"] == 200, login
    cookie = login["cookie"]
    shares = [_SESSIONS // HOLDERS] * HOLDERS
    made = call_all(
        bench.holders,
        "create_sessions",
        120,
        [dict(kind="sw", host=host, port=watch.port, count=n) for n in shares],
    )
    sessions = [entry for batch in made for entry in batch]
    requests = {
        "bare": (plain.port, [build_request("GET", "/open", plain_host)]),
        "cookie": (
            plain.port,
            [build_request("GET", "/cookie", plain_host, headers={"Cookie": cookie})],
        ),
        "open": (
            watch.port,
            [
                build_request("GET", "/open", watch_host, headers={"Cookie": c})
                for c, _, _ in sessions
            ],
        ),
        "protected": (
            watch.port,
            [
                build_request(
                    "GET", "/protected", watch_host, headers={"Cookie": c, "X-SessionWatch-Tab": t}
                )
                for c, t, _ in sessions
            ],
        ),
    }
    runs: dict[str, list[float]] = {route: [] for route in ROUTES}
    failures: dict[str, dict[str, int]] = {route: {} for route in ROUTES}
    for run in range(preset.runs):
        for route in ROUTES:  # interleaved, so drift hits every route alike
            port, raws = requests[route]
            result = bench.claimer.call(
                "load", preset.rps_seconds + 60, host=host, port=port, requests=raws,
                duration=preset.rps_seconds, connections=64,
            )  # fmt: skip
            runs[route].append(result["rps"])
            for key, value in result["failures"].items():
                failures[route][key] = failures[route].get(key, 0) + value
            bench.log(
                f"    {plain.workers} worker(s) · {route:9} run {run + 1}: {result['rps']:8.0f} req/s"
            )
        time.sleep(0.2)
    latency = {}
    for route in ROUTES:
        port, raws = requests[route]
        latency[route] = bench.claimer.call(
            "latency",
            120,
            host=host,
            port=port,
            requests=raws,
            rate=200.0,
            count=preset.latency_requests,
        )
    commands = {}
    for route in ("open", "protected"):
        port, raws = requests[route]
        before = bench.commandstats()
        statuses = bench.claimer.call(
            "exactly", 120, host=host, port=port, requests=raws, count=_COUNTED
        )
        after = bench.commandstats()
        delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        delta = {name: n for name, n in delta.items() if n > 0 and name != "info"}
        commands[route] = {
            "requests": _COUNTED,
            "statuses": statuses,
            "evalsha_per_request": delta.get("evalsha", 0) / _COUNTED,
            "commands_per_request": sum(delta.values()) / _COUNTED,
            "per_request": {name: round(n / _COUNTED, 3) for name, n in sorted(delta.items())},
        }
    return {"rps": runs, "failures": failures, "latency": latency, "redis": commands}
