"""What every scenario shares: the preset, the private Redis, the load-generator
processes, the session pools and CPU accounting."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psutil
import redis
from tests.support.redis_server import RedisServer

from .agents import Agent, call_all
from .servers import PEERS, Server

__all__ = ["ALL_MEMORY", "HOLDERS", "MAIN_MEMORY", "OTHER_MEMORY", "Bench", "Preset"]

HOLDERS = 2  # tab-holder processes; tab i lives in holder i % HOLDERS


@dataclass(frozen=True)
class Preset:
    """How much to run. ``full`` is the documented benchmark; ``quick`` and ``smoke``
    shrink every dimension."""

    name: str
    runs: int
    tabs: tuple[int, ...]  # takeover tab counts
    http_rates: tuple[int, ...]
    direct_rates: tuple[int, ...]
    step_seconds: float
    min_claims: int  # a step lasts at least long enough for this many claims
    memory_tabs: int
    memory_batches: int
    memory_configs: tuple[str, ...]
    rps_seconds: float
    latency_requests: int  # per route, open loop at 200/s, for the response-time floor
    rps_workers: tuple[int, ...]
    fanout_tabs: int
    storm_tabs: int

    def scaled(self, factor: float) -> Preset:
        def scale(n: int) -> int:
            return max(4, round(n * factor))

        return Preset(
            **{
                **self.__dict__,
                "tabs": tuple(sorted({scale(n) for n in self.tabs})),
                "memory_tabs": scale(self.memory_tabs),
                "storm_tabs": scale(self.storm_tabs),
            }
        )


ALL_MEMORY = (
    "sw-uvicorn",
    "sw-uvicorn-deflate",
    "sw-hypercorn",
    "sw-hypercorn-deflate",
    # granian negotiates no permessage-deflate: there is no "sw-granian-deflate".
    "sw-granian",
    "sio-uvicorn",
    "sio-uvicorn-deflate",
    "node-cluster",
    "channels-uvicorn",
    "floor-uvicorn",
)
# Each implementation's own configuration, measured with its takeover server.
MAIN_MEMORY = {
    "sio": "sio-uvicorn",
    "node": "node-cluster",
    "channels": "channels-uvicorn",
    "floor": "floor-uvicorn",
}
_PEER_MEMORY = tuple(MAIN_MEMORY.values())

# Selectable with --memory-configs, in no preset: the service on uvicorn with another
# WebSocket implementation (uvicorn's own websockets-sansio protocol, which the
# service's lean one is derived from; wsproto; the legacy websockets one).
OTHER_MEMORY = ("sw-uvicorn-sansio", "sw-uvicorn-wsproto", "sw-uvicorn-websockets")

PRESETS = {
    "full": Preset(
        name="full",
        runs=3,
        tabs=(1000, 10000),
        http_rates=(100, 250, 500, 1000, 2000, 5000, 10000),
        direct_rates=(100, 1000, 2000, 5000, 10000),
        step_seconds=2.0,
        min_claims=300,
        memory_tabs=10000,
        memory_batches=3,
        memory_configs=ALL_MEMORY,
        rps_seconds=3.0,
        latency_requests=300,
        rps_workers=(1, 2),
        fanout_tabs=100,
        storm_tabs=10000,
    ),
    "quick": Preset(
        name="quick",
        runs=1,
        tabs=(1000,),
        http_rates=(100, 500, 1000),
        direct_rates=(100, 1000, 5000),
        step_seconds=1.0,
        min_claims=100,
        memory_tabs=1000,
        memory_batches=3,
        memory_configs=("sw-uvicorn", *_PEER_MEMORY),
        rps_seconds=1.0,
        latency_requests=100,
        rps_workers=(2,),
        fanout_tabs=100,
        storm_tabs=1000,
    ),
    "smoke": Preset(
        name="smoke",
        runs=1,
        tabs=(20,),
        http_rates=(100,),
        direct_rates=(100,),
        step_seconds=0.5,
        min_claims=20,
        memory_tabs=20,
        memory_batches=1,
        memory_configs=("sw-uvicorn", *_PEER_MEMORY),
        rps_seconds=0.3,
        latency_requests=20,
        rps_workers=(1,),
        fanout_tabs=10,
        storm_tabs=20,
    ),
}


class Bench:
    """The run's shared state. ``pools[kind]``: sessions ``[cookie, token, public id]``
    created on the servers of that kind (sessions live in Redis and the cookies are
    signed with the same key, so they stay valid across server restarts)."""

    def __init__(
        self,
        preset: Preset,
        *,
        service_factory: str | None = None,
        service_server: str = "uvicorn",
    ) -> None:
        self.preset = preset
        self.service_factory = service_factory
        self.service_server = service_server
        self.redis = RedisServer()
        self.redis.start()
        self.redis_client = redis.Redis(port=self.redis.port, decode_responses=True)
        self.holders = [Agent("tests.bench.tabs:TabHolder", f"tabs-{i}") for i in range(HOLDERS)]
        self.claimer = Agent("tests.bench.claimer:Claimer", "claimer")
        self.pools: dict[str, list[list[str]]] = {kind: [] for kind in ("sw", *PEERS)}
        self.servers: list[Server] = []

    @staticmethod
    def log(*parts: Any) -> None:
        print(*parts, flush=True)

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def close(self) -> None:
        for agent in [*self.holders, self.claimer]:
            agent.stop()
        for server in self.servers:
            server.cleanup()
        self.redis_client.close()
        self.redis.cleanup()

    def start(self, server: Server) -> Server:
        self.servers.append(server)
        began = time.monotonic()
        server.start()
        self.log(f"  started {server.name} on :{server.port} in {time.monotonic() - began:.1f} s")
        return server

    def stop(self, server: Server) -> None:
        server.cleanup()
        if server in self.servers:
            self.servers.remove(server)

    # -- sessions and tabs ------------------------------------------------------------

    def ensure_pool(self, kind: str, server: Server, count: int) -> list[list[str]]:
        pool = self.pools[kind]
        missing = count - len(pool)
        if missing > 0:
            began = time.monotonic()
            shares = [
                missing // HOLDERS + (1 if i < missing % HOLDERS else 0) for i in range(HOLDERS)
            ]
            made = call_all(
                self.holders,
                "create_sessions",
                600,
                [dict(kind=kind, host=server.host, port=server.port, count=n) for n in shares],
            )
            for batch in made:
                pool.extend([list(entry) for entry in batch])
            self.log(f"  created {missing} {kind} sessions in {time.monotonic() - began:.1f} s")
        return pool

    def connect(
        self, kind: str, server: Server, indices: range | list[int], *, compression: bool = False
    ) -> dict[str, Any]:
        """Open the tabs ``indices`` of ``pools[kind]`` (each holder its share)."""
        pool = self.pools[kind]
        began = time.monotonic()
        shares: list[list[tuple[int, str, str]]] = [[] for _ in range(HOLDERS)]
        for i in indices:
            shares[i % HOLDERS].append((i, pool[i][0], pool[i][1]))
        results = call_all(
            self.holders,
            "connect",
            900,
            [
                dict(
                    kind=kind,
                    host=server.host,
                    port=server.port,
                    tabs=share,
                    compression=compression,
                )
                for share in shares
            ],
        )
        failures: dict[str, int] = {}
        for result in results:
            for key, value in result["failures"].items():
                failures[key] = failures.get(key, 0) + value
        summary = {
            "requested": len(indices),
            "connected": sum(r["connected"] for r in results),
            "with_extensions": sum(r["with_extensions"] for r in results),
            "failures": failures,
            "seconds": time.monotonic() - began,
        }
        self.log(
            f"  connected {summary['connected']}/{summary['requested']} {kind} tabs in "
            f"{summary['seconds']:.1f} s" + (f" (failures {failures})" if failures else "")
        )
        return summary

    def close_tabs(self, indices: list[int] | None = None) -> None:
        call_all(self.holders, "close_tabs", 300, [dict(indices=indices)] * HOLDERS)

    def sync_tokens(self, kind: str) -> None:
        """After claims: newer tokens into the pool and the holders (for reconnects)."""
        tokens: dict[int, str] = self.claimer.call("latest_tokens", 60)
        pool = self.pools[kind]
        for index, token in tokens.items():
            pool[index][1] = token
        call_all(self.holders, "update_tokens", 60, [dict(tokens=tokens)] * HOLDERS)

    def wait_idle(self, server: Server, *, below: float = 0.35, limit: float = 20.0) -> float:
        """Wait until the server's workers use less than ``below`` cores (after mass
        connects or closes they are busy detaching for seconds); returns the wait."""
        began = time.monotonic()
        last = server.cpu_seconds()
        while time.monotonic() - began < limit:
            time.sleep(0.5)
            now = server.cpu_seconds()
            if (now - last) / 0.5 < below:
                break
            last = now
        return time.monotonic() - began

    # -- measurements -----------------------------------------------------------------

    def cpu(self, server: Server | None) -> dict[str, float]:
        """CPU seconds used so far by the server's workers, Redis and the load generators."""

        def seconds(pid: int) -> float:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                return 0.0
            return float(times.user + times.system)

        redis_pid = self.redis.process.pid if self.redis.process else 0
        user, system = server.cpu_split() if server is not None else (0.0, 0.0)
        return {
            "server": user + system,
            "server_kernel": system,  # of "server": the workers' system time
            "redis": seconds(redis_pid),
            "load": sum(seconds(a.pid) for a in [*self.holders, self.claimer]),
        }

    def commandstats(self) -> dict[str, int]:
        stats = self.redis_client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
