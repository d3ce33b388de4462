"""Forward-auth throughput: nginx in front of an upstream app, with and without
``auth_request`` to ``sessionwatch serve`` (2 workers, Redis), in the same run; and
the verify endpoint's own requests/s.

    python -m tests.bench.proxy [--seconds 8] [--rounds 3] [--json out.json]
    python -m tests.bench.proxy --smoke    # a few hundred requests: behaviour only

Routes (closed loop over ``--connections`` keep-alive connections, one load process):

- ``plain``: ``POST /api/ping`` through nginx straight to the upstream;
- ``auth``: the same through nginx with ``auth_request`` (rule ``auto``: the active tab,
  an allowed origin — every request is verified, one Redis round trip each);
- ``verify``: ``GET /_sessionwatch/verify`` asked directly, as nginx asks it;
- ``floor``: the service's ``GET /healthz`` (Quart, no session, no Redis): what any
  route of the service costs at least, to read ``verify`` against.

Runs alternate (plain, auth, plain, auth, ...) and the medians are reported, so a
noisy neighbour hits both sides alike. Target: auth >= 70 % of plain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.redis_server import RedisServer

from sessionwatch.client import SessionAPI
from sessionwatch.demo.proxy import ProxyDemo

from .httpclient import HttpPool, build_request

__all__ = ["main", "run"]

RATIO_TARGET = 0.70
SESSIONS = 16


def prepare(demo: ProxyDemo, site: str) -> list[tuple[str, str]]:
    """Signed-in sessions with a claimed tab each: ``(cookie header, tab token)``."""
    import http.client

    api = SessionAPI(demo.sessionwatch_url, demo.api_key)
    host = demo.urls[site].split("//")[1]
    pairs = []
    for index in range(SESSIONS):
        result = api.login(f"bench-{site}-{index}")
        cookie = f"{result['cookie']['name']}={result['cookie']['value']}"
        connection = http.client.HTTPConnection(host, timeout=10)
        connection.request(
            "POST",
            "/_sessionwatch/claim",
            body="{}",
            headers={
                "Cookie": cookie,
                "Content-Type": "application/json",
                "Origin": demo.urls[site],
            },
        )
        answer = connection.getresponse()
        body = json.loads(answer.read())
        connection.close()
        if answer.status != 200:
            raise RuntimeError(f"claim through nginx failed: {answer.status} {body}")
        pairs.append((cookie, str(body["tab"])))
    return pairs


async def load(
    port: int, requests: list[bytes], *, connections: int, seconds: float, limit: int
) -> dict[str, Any]:
    """Closed loop: ``connections`` workers send until ``seconds`` or ``limit`` requests."""
    pool = HttpPool("127.0.0.1", port, size=connections, timeout=10.0)
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    sent = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()

    async def worker(offset: int) -> None:
        nonlocal sent
        index = offset
        while sent < limit and time.perf_counter() < deadline:
            sent += 1
            try:
                response = await pool.request(requests[index % len(requests)])
                statuses[response.status] += 1
            except Exception as error:  # counted, reported; the loop is bounded anyway
                errors[type(error).__name__] += 1
            index += 1

    try:
        await asyncio.wait_for(
            asyncio.gather(*(worker(i) for i in range(connections))), seconds + 30
        )
    finally:
        pool.close()
    elapsed = time.perf_counter() - started
    done = sum(statuses.values())
    return {
        "requests": done,
        "seconds": round(elapsed, 3),
        "rps": round(done / elapsed, 1) if elapsed else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": dict(errors),
    }


def route_requests(demo: ProxyDemo, site: str, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``route -> (port, requests)``."""
    site_url = demo.urls[site]
    site_host = site_url.split("//")[1]
    plain_port = demo.plain_ports[site]

    def each(method: str, path: str, host: str, body: bytes = b"", **extra: str) -> list[bytes]:
        """One request per session: its cookie, its tab token and ``extra`` headers."""
        return [
            build_request(
                method,
                path,
                host,
                headers={"Cookie": cookie, "X-SessionWatch-Tab": tab, **extra},
                body=body,
            )
            for cookie, tab in pairs
        ]

    body = b'{"amount": 1}'
    json_type = {"Content-Type": "application/json"}
    auth = each("POST", "/api/ping", site_host, body, Origin=site_url, **json_type)
    plain = each("POST", "/api/ping", f"127.0.0.1:{plain_port}", body, **json_type)
    verify = each(
        "GET",
        "/_sessionwatch/verify?require=auto",
        site_host,
        Origin=site_url,
        **{"X-Original-Method": "POST", "X-Original-URI": "/api/ping"},
    )
    floor = [build_request("GET", "/healthz", f"127.0.0.1:{demo.sessionwatch_port}")]
    return {
        "plain": (plain_port, plain),
        "auth": (demo.site_ports[site], auth),
        "verify": (demo.sessionwatch_port, verify),
        "floor": (demo.sessionwatch_port, floor),
    }


def run(
    *,
    sites: list[str],
    seconds: float,
    rounds: int,
    connections: int,
    limit: int,
    workers: int = 2,
) -> dict[str, Any]:
    """Start Redis and the demo, measure every route of every site; the results."""
    redis = RedisServer()
    redis.start()
    results: dict[str, Any] = {
        "workers": workers,
        "connections": connections,
        "seconds": seconds,
        "rounds": rounds,
        "sites": {},
    }
    try:
        with ProxyDemo(
            backend=redis.url,
            workers=workers,
            plain=True,
            nginx_workers=2,
            express_port=0 if "express" in sites else None,
        ) as demo:
            for site in sites:
                pairs = prepare(demo, site)
                routes = route_requests(demo, site, pairs)
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in routes}
                for _ in range(rounds):
                    for name, (port, requests) in routes.items():
                        runs[name].append(
                            asyncio.run(
                                load(
                                    port,
                                    requests,
                                    connections=connections,
                                    seconds=seconds,
                                    limit=limit,
                                )
                            )
                        )
                medians = {
                    name: statistics.median(r["rps"] for r in rs) for name, rs in runs.items()
                }
                results["sites"][site] = {
                    "runs": runs,
                    "median_rps": medians,
                    "ratio": round(medians["auth"] / medians["plain"], 3)
                    if medians["plain"]
                    else 0,
                }
    finally:
        redis.stop()
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        f"Forward-auth throughput: sessionwatch serve {results['workers']} workers (Redis), "
        f"nginx 2 workers, {results['connections']} connections, "
        f"{results['rounds']} alternating runs of {results['seconds']} s (medians)",
        "",
        "| upstream | nginx → app (req/s) | nginx + auth_request (req/s) | ratio | target "
        "| verify alone (req/s) | service /healthz (req/s) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for site, entry in results["sites"].items():
        rps = entry["median_rps"]
        lines.append(
            f"| {site} | {rps['plain']:.0f} | {rps['auth']:.0f} | {entry['ratio'] * 100:.0f} % "
            f"| ≥ {RATIO_TARGET * 100:.0f} % | {rps['verify']:.0f} | {rps['floor']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.proxy", description=__doc__)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sites", default="flask,express")
    parser.add_argument("--smoke", action="store_true", help="a few hundred requests per route")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    if args.smoke:
        results = run(sites=sites, seconds=10.0, rounds=1, connections=4, limit=200)
    else:
        results = run(
            sites=sites,
            seconds=args.seconds,
            rounds=args.rounds,
            connections=args.connections,
            limit=10_000_000,
        )
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
