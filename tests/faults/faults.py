"""The faults and the schedule that injects them while the workload runs.

Each fault injects, holds, heals; the runner then probes every host's ``/readyz``
until all answer 200 three rounds in a row (the fault has *recovered*) and keeps the
workload running for a quiet period before the next fault, so 503s after recovery show.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stall_claims import stall_claims
from .topology import SERVICE, Host, Topology

__all__ = ["FAULTS", "Injection", "Scheduler"]

HOLD = 6.0  # seconds a stall lasts: more than the service's 5 s Redis socket timeout
RECOVERY_LIMIT = 60.0  # seconds the runner waits for /readyz before giving up


@dataclass
class Injection:
    """One injected fault and its times (``time.monotonic()``)."""

    name: str
    injected: float
    healed: float = 0.0
    recovered: float | None = None  # every host's /readyz 200, three rounds in a row
    # The stored state was lost between ``wiping`` (the command sent) and ``wiped`` (done).
    wiping: float | None = None
    wiped: float | None = None
    host: str = ""  # the host it targeted, if any
    note: str = ""
    skipped: str = ""
    # (g): changes answered as failed that took effect later (stall_claims.py probes).
    failed_then_applied: int = 0
    examples: list[str] = field(default_factory=list)


@dataclass
class Context:
    topology: Topology
    workload: Any
    down: set[str] = field(default_factory=set)  # hosts out of the load balancer


async def _thread(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


async def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await _thread(condition):
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what}")


# -- the faults ---------------------------------------------------------------------------


async def pubsub_kill(ctx: Context, shot: Injection) -> None:
    await _thread(ctx.topology.primary().cli, "CLIENT", "KILL", "TYPE", "pubsub")


async def normal_kill(ctx: Context, shot: Injection) -> None:
    await _thread(ctx.topology.primary().cli, "CLIENT", "KILL", "TYPE", "normal")


async def debug_sleep(ctx: Context, shot: Injection) -> None:
    primary = ctx.topology.primary()
    await _thread(primary.cli, "DEBUG", "SLEEP", str(HOLD + 0.5))


async def client_pause(ctx: Context, shot: Injection) -> None:
    await _thread(ctx.topology.primary().cli, "CLIENT", "PAUSE", str(int(HOLD * 1000)), "ALL")
    await asyncio.sleep(HOLD)


async def sigstop(ctx: Context, shot: Injection) -> None:
    primary = ctx.topology.primary()
    primary.signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(HOLD)
    finally:
        primary.signal(signal.SIGCONT)


async def restart_persisted(ctx: Context, shot: Injection) -> None:
    primary = ctx.topology.primary()
    replica = ctx.topology.replica()
    await _thread(lambda: primary.shutdown(save=True))
    await _thread(primary.start)
    await _reattach(ctx, primary, replica)


async def restart_empty(ctx: Context, shot: Injection) -> None:
    primary = ctx.topology.primary()
    replica = ctx.topology.replica()
    ctx.workload.logins_open.clear()
    shot.wiping = time.monotonic()
    await _thread(lambda: primary.shutdown(save=False))
    shot.wiped = time.monotonic()
    await _thread(primary.start)
    await _reattach(ctx, primary, replica)


async def _reattach(ctx: Context, primary: Any, replica: Any) -> None:
    """The replica follows the restarted primary again (a full resync)."""

    def synced() -> bool:
        info = replica.cli("INFO", "replication", check=False)
        return "master_link_status:up" in info

    await _wait(synced, 30, "the replica to resync")


async def flushall(ctx: Context, shot: Injection) -> None:
    ctx.workload.logins_open.clear()
    shot.wiping = time.monotonic()
    await _thread(ctx.topology.primary().cli, "FLUSHALL")
    shot.wiped = time.monotonic()


async def sentinel_failover(ctx: Context, shot: Injection) -> None:
    before = ctx.topology.primary_port()
    await _thread(ctx.topology.sentinels[0].cli, "SENTINEL", "FAILOVER", SERVICE)
    await _wait(lambda: ctx.topology.primary_port() not in (before, None), 40, "the failover")
    await _replica_attached(ctx)


async def kill_primary(ctx: Context, shot: Injection) -> None:
    topology = ctx.topology
    old = topology.primary()
    await _thread(old.kill)
    # What it answered in its last second may be lost: its users are retired now,
    # before anyone infers anything from it during the failover.
    shot.injected = time.monotonic()
    ctx.workload.retire_changed(shot.injected - 1.0, shot.injected)
    await _wait(lambda: topology.primary_port() not in (old.port, None), 60, "Sentinel's failover")
    new = topology.primary()
    await _thread(lambda: old.start(replica_of=(new.address, new.port)))
    await _replica_attached(ctx)


async def _replica_attached(ctx: Context) -> None:
    def attached() -> bool:
        info = ctx.topology.replica().cli("INFO", "replication", check=False)
        return "role:slave" in info and "master_link_status:up" in info

    await _wait(attached, 40, "the old primary to follow the new one")


async def worker_kill(ctx: Context, shot: Injection) -> None:
    host = ctx.topology.hosts[0]
    shot.host = host.name
    workers = host.workers()
    if not workers:
        raise RuntimeError(f"{host.name} has no workers")
    victim = workers[0]
    with contextlib.suppress(ProcessLookupError):
        os.kill(victim, signal.SIGKILL)
    _mark_dead(host, victim)
    await _wait(
        lambda: len(host.workers()) >= 2 and victim not in host.workers(),
        30,
        "the supervisor to replace the worker",
    )
    # Until the replacement has started, the next fault would overlap this one (a
    # partition while it starts: issue 23). Started means connected to Redis.
    replacement = [pid for pid in host.workers() if pid not in workers]
    await _wait(
        lambda: all(_has_outbound_connection(pid, host.port) for pid in replacement),
        60,  # a spawned worker imports everything anew: slow on a loaded machine
        "the replacement worker to connect to Redis",
    )


def _has_outbound_connection(pid: int, service_port: int) -> bool:
    """Whether process ``pid`` holds an established TCP connection it opened (its local
    port is not the service's), read in its own network namespace."""
    try:
        inodes = {
            os.readlink(f"/proc/{pid}/fd/{fd}")[len("socket:[") : -1]
            for fd in os.listdir(f"/proc/{pid}/fd")
        }
        tables = [Path(f"/proc/{pid}/net/{name}").read_text() for name in ("tcp", "tcp6")]
    except OSError:
        return False
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] == "01" and local_port != service_port and fields[9] in inodes:
                return True
    return False


def _mark_dead(host: Host, pid: int) -> None:
    """What an orchestrator does for a killed worker with multiprocess metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(host.metrics_dir))


async def host_kill(ctx: Context, shot: Injection) -> None:
    host = ctx.topology.hosts[-1]
    shot.host = host.name
    ctx.down.add(host.url)  # the load balancer's health check takes it out
    await _thread(host.kill)
    await asyncio.sleep(2)
    await _thread(host.start)
    ctx.down.discard(host.url)


async def partition(ctx: Context, shot: Injection) -> None:
    topology = ctx.topology
    if not topology.net.netns:
        shot.skipped = "needs ip netns"
        return
    host = topology.hosts[0]
    shot.host = host.name
    topology.net.partition(host.ns, topology.redis_addresses(), cut=True)
    try:
        await asyncio.sleep(HOLD + 2)
    finally:
        topology.net.partition(host.ns, topology.redis_addresses(), cut=False)


FAULTS: dict[str, Callable[[Context, Injection], Awaitable[None]]] = {
    "pubsub_kill": pubsub_kill,
    "normal_kill": normal_kill,
    "debug_sleep": debug_sleep,
    "stall_claims": stall_claims,
    "client_pause": client_pause,
    "sigstop": sigstop,
    "restart_persisted": restart_persisted,
    "restart_empty": restart_empty,
    "sentinel_failover": sentinel_failover,
    "kill_primary": kill_primary,
    "worker_kill": worker_kill,
    "host_kill": host_kill,
    "partition": partition,
    "flushall": flushall,
}


class Scheduler:
    """Injects faults one after another while the workload runs."""

    def __init__(self, ctx: Context, *, quiet: float = 5.0) -> None:
        self.ctx = ctx
        self.quiet = quiet
        self.injections: list[Injection] = []

    async def inject(self, name: str) -> Injection:
        shot = Injection(name, time.monotonic())
        self.injections.append(shot)
        try:
            await FAULTS[name](self.ctx, shot)
        except Exception as exc:
            shot.note = f"{type(exc).__name__}: {exc}"
        shot.healed = time.monotonic()
        if name in ("kill_primary", "sentinel_failover"):
            # Writes answered just before the kill, or while Sentinel promoted the
            # replica, may be gone (invariants.LOST_WRITE_MARGIN, docs/reliability.md):
            # their users are retired at once, before any new inference.
            end = shot.injected if name == "kill_primary" else shot.healed
            self.ctx.workload.retire_changed(shot.injected - 1.0, end)
        if shot.skipped:
            shot.recovered = shot.healed
            return shot
        shot.recovered = await self._recovered()
        if shot.wiping is not None and shot.wiped is not None:
            self.ctx.workload.state_lost(shot.wiping, shot.wiped)
            self.ctx.workload.retire_all()
            self.ctx.workload.logins_open.set()
        await asyncio.sleep(self.quiet)
        return shot

    async def _recovered(self) -> float | None:
        """The first time every host answers /readyz 200 three rounds in a row."""
        hosts = self.ctx.topology.hosts
        deadline = time.monotonic() + RECOVERY_LIMIT
        streak, first = 0, None
        while time.monotonic() < deadline:
            began = time.monotonic()
            statuses = await asyncio.gather(
                *(_thread(host.probe, "/readyz") for host in hosts for _ in range(2))
            )
            if all(status == 200 for status in statuses):
                first = first if streak else began
                streak += 1
                if streak >= 3:
                    return first
            else:
                streak = 0
            await asyncio.sleep(0.1)
        return None
