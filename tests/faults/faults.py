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

__all__ = ["FAILOVERS", "FAULTS", "OVERLAPS", "SHORT_OVERLAPS", "Injection", "Scheduler"]

HOLD = 6.0  # seconds a stall lasts: more than the service's 5 s Redis socket timeout
CLOCK_STEP = 30.0  # seconds one host's wall clock is stepped forward, then back
OVERLAP_STAGGER = 1.0  # seconds between the starts of overlapping faults
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
    # When acknowledged writes may have been lost to a failover (start, end): the
    # Scheduler retires their users and the invariants count their effects apart.
    loss_windows: list[tuple[float, float]] = field(default_factory=list)
    # (j) ends acknowledged in a loss window, asked again once recovered; those alive.
    ends_checked: int = 0
    ends_lost: int = 0


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
    ctx.workload.retire_changed(shot.injected - LOST_WRITE_MARGIN, shot.injected)
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
    await _supervised_start(host, shot)
    ctx.down.discard(host.url)


async def _supervised_start(host: Host, shot: Injection) -> None:
    """Start ``host`` as a process manager does (systemd ``Restart=on-failure``,
    ``RestartSec=1``): a service's first start refuses to run without Redis (exit 3,
    docs/deployment.md), so a host restarted while Redis fails over is started again
    until Redis answers (issue 23's soak: a host killed during ``kill_primary`` exited
    3 and stayed down)."""
    deadline = time.monotonic() + RECOVERY_LIMIT
    refused = 0
    while True:
        try:
            await _thread(host.start)
        except RuntimeError:
            refused += 1
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
        else:
            break
    if refused:
        shot.note = f"{host.name}'s start refused {refused}x (Redis unreachable), then started"


async def _first_host_link(
    ctx: Context, shot: Injection, change: Callable[[Host, bool], str]
) -> None:
    """Change the first host's network (``change(host, on)``) for ``HOLD`` + 2 s."""
    if not ctx.topology.net.netns:
        shot.skipped = "needs ip netns"
        return
    host = ctx.topology.hosts[0]
    shot.host = host.name
    shot.note = await _thread(change, host, True)
    try:
        await asyncio.sleep(HOLD + 2)
    finally:
        await _thread(change, host, False)


async def partition(ctx: Context, shot: Injection) -> None:
    """The first host cut off from Redis (a blackhole route, Network.partition)."""
    net, addresses = ctx.topology.net, ctx.topology.redis_addresses()

    def cut(host: Host, on: bool) -> str:
        net.partition(host.ns, addresses, cut=on)
        return ""

    await _first_host_link(ctx, shot, cut)


async def clock_step(ctx: Context, shot: Injection) -> None:
    """One host's wall clock steps ``CLOCK_STEP`` s forward, and after ``HOLD`` s back
    (as a hand-set clock, then NTP's correction): its monotonic clock does not move."""
    host = ctx.topology.hosts[-1]
    shot.host = host.name
    host.step_clock(CLOCK_STEP)
    try:
        await asyncio.sleep(HOLD)
    finally:
        host.step_clock(0.0)


async def slow_link(ctx: Context, shot: Injection) -> None:
    """The first host's link slow and lossy (Network.slow)."""
    net = ctx.topology.net
    await _first_host_link(ctx, shot, lambda host, on: net.slow(host.ns, on=on))


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
    "clock_step": clock_step,
    "slow_link": slow_link,
}

# Faults that overlap, as in real incidents (``--overlap``): each starts
# ``OVERLAP_STAGGER`` s after the one before it. Never two faults that restart or replace
# the primary at once (each follows the primary it found).
OVERLAPS: tuple[tuple[str, ...], ...] = (
    ("partition", "kill_primary"),  # a host cut off while Sentinel fails over
    ("worker_kill", "debug_sleep"),  # a worker restarted during a Redis stall
    ("clock_step", "stall_claims"),  # a stepped clock under issue 22's stall pattern
    ("slow_link", "sentinel_failover", "pubsub_kill"),
    ("host_kill", "client_pause"),
    ("clock_step", "partition", "flushall"),
    ("slow_link", "worker_kill", "normal_kill"),
    ("sigstop", "clock_step"),
    ("slow_link", "restart_persisted"),
    ("host_kill", "kill_primary", "clock_step"),
    ("partition", "restart_empty"),
    ("slow_link", "stall_claims"),
)
# The default test run's overlaps (about a minute).
SHORT_OVERLAPS: tuple[tuple[str, ...], ...] = (
    ("worker_kill", "debug_sleep"),
    ("clock_step", "stall_claims"),
    ("slow_link", "partition", "pubsub_kill"),
)
FAILOVERS = ("kill_primary", "sentinel_failover")
# Replication is asynchronous: a write acknowledged by a primary shortly before it is
# killed, or while Sentinel promotes its replica (SENTINEL FAILOVER does not wait for
# the replica to catch up), may be missing on the new primary. Effects of such writes
# are counted apart (``Injection.loss_windows``) as "lost on failover" (docs/reliability.md: not guaranteed).
LOST_WRITE_MARGIN = 1.0


class Scheduler:
    """Injects faults one after another while the workload runs."""

    def __init__(self, ctx: Context, *, quiet: float = 5.0) -> None:
        self.ctx = ctx
        self.quiet = quiet
        self.injections: list[Injection] = []

    async def inject(self, name: str) -> Injection:
        """Inject ``name`` (one fault, or several joined by ``+``, each started
        ``OVERLAP_STAGGER`` s after the one before) and wait for the recovery."""
        parts = name.split("+")
        shot = Injection(name, time.monotonic())
        self.injections.append(shot)
        pieces = [Injection(part, shot.injected) for part in parts]
        await asyncio.gather(
            *(self._one(piece, index * OVERLAP_STAGGER) for index, piece in enumerate(pieces))
        )
        _merge(shot, pieces)
        shot.healed = time.monotonic()
        if shot.skipped:
            shot.recovered = shot.healed
            return shot
        shot.recovered = await self._recovered()
        for start, end in shot.loss_windows:
            if shot.wiping is not None:
                break  # the state was wiped as well: nothing to ask
            checked, alive = await self.ctx.workload.ends_alive(start, end)
            shot.ends_checked += checked
            shot.ends_lost += len(alive)
            shot.examples += [f"(j) an acknowledged end undone by the failover: {a}" for a in alive]
        if shot.wiping is not None and shot.wiped is not None:
            self.ctx.workload.state_lost(shot.wiping, shot.wiped)
            self.ctx.workload.retire_all()
            self.ctx.workload.logins_open.set()
        await asyncio.sleep(self.quiet)
        return shot

    async def _one(self, piece: Injection, delay: float) -> None:
        await asyncio.sleep(delay)
        piece.injected = time.monotonic()
        try:
            await FAULTS[piece.name](self.ctx, piece)
        except Exception as exc:
            piece.note = f"{type(exc).__name__}: {exc}"
        piece.healed = time.monotonic()
        if piece.name in FAILOVERS:
            # Writes answered just before the kill, or while Sentinel promoted the
            # replica, may be gone (LOST_WRITE_MARGIN, docs/reliability.md):
            # their users are retired at once, before any new inference.
            end = piece.injected if piece.name == "kill_primary" else piece.healed
            piece.loss_windows.append((piece.injected - LOST_WRITE_MARGIN, end))
            self.ctx.workload.retire_changed(piece.injected - LOST_WRITE_MARGIN, end)

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


def _merge(shot: Injection, pieces: list[Injection]) -> None:
    """What the pieces of an overlap did, as one injection (its row in the tables)."""
    wiping = [p.wiping for p in pieces if p.wiping is not None]
    wiped = [p.wiped for p in pieces if p.wiped is not None]
    shot.wiping = min(wiping) if wiping else None
    shot.wiped = max(wiped) if wiped else None
    shot.host = ",".join(p.host for p in pieces if p.host)
    notes = [f"{p.name}: {p.note}" if len(pieces) > 1 else p.note for p in pieces if p.note]
    shot.note = "; ".join(notes)
    skipped = [f"{p.name}: {p.skipped}" for p in pieces if p.skipped]
    if len(skipped) == len(pieces):  # nothing was injected
        shot.skipped = "; ".join(skipped)
    elif skipped:
        shot.note = "; ".join([shot.note, *(f"not injected: {s}" for s in skipped)]).strip("; ")
    shot.failed_then_applied = sum(p.failed_then_applied for p in pieces)
    shot.examples = [example for p in pieces for example in p.examples]
    shot.loss_windows = [window for p in pieces for window in p.loss_windows]
