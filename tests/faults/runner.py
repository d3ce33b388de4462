"""Run the fault suite: start the topology, run the workload, inject faults on a
schedule, check the invariants over the whole history and print the report."""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

from .faults import FAULTS, OVERLAPS, SHORT_OVERLAPS, Context, Scheduler
from .invariants import TELL_WITHIN, Report, check
from .topology import Topology
from .workload import Workload

__all__ = ["SHORT_OVERLAP_SCHEDULE", "SHORT_SCHEDULE", "main", "run"]

# The default test run's schedule (well under 2 minutes): one of each fault class that
# is cheap, among them the defects' faults.
SHORT_SCHEDULE = (
    "normal_kill",
    "pubsub_kill",
    "flushall",
    "worker_kill",
    "partition",
    "debug_sleep",
    "stall_claims",
)
SOAK_ORDER = tuple(FAULTS)
# Overlapping faults (``--overlap``): several at once, joined by "+".
SHORT_OVERLAP_SCHEDULE = tuple("+".join(names) for names in SHORT_OVERLAPS)
OVERLAP_ORDER = tuple("+".join(names) for names in OVERLAPS)


def _end_probes(topology: Topology) -> dict[str, Any]:
    """(f): each host answers /healthz at once and counts no socket once all are closed."""
    out: dict[str, Any] = {}
    for host in topology.hosts:
        probe: dict[str, Any] = {"healthz": host.probe("/healthz", timeout=2)}
        sockets = None
        for _ in range(50):  # the metrics are copied once a second
            try:
                with urllib.request.urlopen(host.url + "/metrics", timeout=2) as answer:
                    text = answer.read().decode()
            except OSError:
                text = ""
            found = re.search(r"^sessionwatch_sockets\s+([0-9.e+-]+)$", text, re.M)
            sockets = float(found.group(1)) if found else None
            if sockets == 0:
                break
            time.sleep(0.2)
        probe["sockets"] = sockets if sockets is not None else -1
        out[host.name] = probe
    return out


async def run(
    *,
    schedule: Sequence[str] | None = None,
    minutes: float | None = None,
    hosts: int = 2,
    use_netns: bool = True,
    rate: float = 12.0,
    users: int = 16,
    quiet: float = 3.0,
    seed: int = 1,
    overlap: bool = False,
    say: Any = print,
) -> Report:
    """Run the suite: ``schedule`` once, or (with ``minutes``) the whole fault list round
    and round until the time is up; ``overlap``: the overlapping faults instead of one at
    a time. A schedule's entry ``a+b`` injects ``a`` and ``b`` together. Returns the
    report."""
    started = time.monotonic()
    topology = Topology(hosts=hosts, use_netns=use_netns)
    await asyncio.to_thread(topology.start)
    try:
        if topology.net.reason:
            say(f"faults: {topology.net.reason}")
        say(
            f"faults: topology up ({topology.mode}): {[h.url for h in topology.hosts]}, "
            f"primary {topology.primary().address}:{topology.primary().port}"
        )
        ctx = Context(topology, None)
        workload = Workload(
            lambda: [h.url for h in topology.hosts if h.url not in ctx.down],
            users=users,
            rate=rate,
            seed=seed,
        )
        ctx.workload = workload
        scheduler = Scheduler(ctx, quiet=quiet)
        budget = (minutes or 0) * 60
        load = asyncio.create_task(workload.run(budget or 3600))
        try:
            await asyncio.sleep(quiet)
            if minutes is None:
                for name in schedule or (SHORT_OVERLAP_SCHEDULE if overlap else SHORT_SCHEDULE):
                    shot = await scheduler.inject(name)
                    say(
                        f"faults: {name}: recovered "
                        f"{'never' if shot.recovered is None else f'{shot.recovered - shot.healed:.2f}s'}"
                        f" after healing {shot.note or shot.skipped}"
                    )
            else:
                deadline = started + budget - 30
                names = list(schedule or (OVERLAP_ORDER if overlap else SOAK_ORDER))
                index = 0
                while time.monotonic() < deadline:
                    name = names[index % len(names)]
                    index += 1
                    shot = await scheduler.inject(name)
                    say(
                        f"faults: [{(time.monotonic() - started) / 60:5.1f} min] {name}: "
                        f"recovered {'never' if shot.recovered is None else f'{shot.recovered - shot.healed:.2f}s'}"
                        f" {shot.note or shot.skipped}"
                    )
        finally:
            workload._stopping = True
            await load
        await workload.drain()
        # Let every pending notice arrive: until no tab waits for one (at most 12 s).
        for _ in range(int((TELL_WITHIN + 2) / 0.2)):  # a poll: tabs are told by the server
            if not workload.tabs_waiting():
                break
            await asyncio.sleep(0.2)
        await workload.close()
        end = await asyncio.to_thread(_end_probes, topology)
        report = check(
            workload,
            scheduler.injections,
            end,
            mode=topology.mode,
            seconds=time.monotonic() - started,
        )
        if report.violations:  # keep every log for the post-mortem
            for host in topology.hosts:
                shutil.copy(host.log, topology.directory / f"{host.name}.log")
            topology.keep = True
            say(f"faults: logs kept in {topology.directory}")
        return report
    finally:
        await asyncio.to_thread(topology.cleanup)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__)
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="soak: cycle through every fault for this long (default: the short schedule once)",
    )
    parser.add_argument(
        "--faults",
        default="",
        help="comma-separated fault names, a+b for faults at once (default: all for a soak). "
        f"Known: {', '.join(FAULTS)}",
    )
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="overlapping faults (two or three at once) instead of one at a time",
    )
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--rate", type=float, default=12.0, help="operations per second")
    parser.add_argument("--loopback", action="store_true", help="no network namespaces")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    schedule = [name for name in args.faults.split(",") if name] or None
    for name in schedule or ():
        for part in name.split("+"):
            if part not in FAULTS:
                parser.error(f"unknown fault {part!r}")
    report = asyncio.run(
        run(
            schedule=schedule,
            minutes=args.minutes,
            hosts=args.hosts,
            use_netns=not args.loopback,
            rate=args.rate,
            seed=args.seed,
            overlap=args.overlap,
        )
    )
    print(
        f"\nfault suite: {report.mode}, {report.seconds / 60:.1f} min, "
        f"{sum(r.ops for r in report.rows.values())} operations\n"
    )
    print(report.table())
    print("\noutcomes:", ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items())))
    if report.lost_writes:
        print(
            f"\nacknowledged writes lost to asynchronous replication on failover: "
            f"{report.lost_writes} (not guaranteed; see docs/reliability.md)"
        )
    for row in report.rows.values():
        for note in row.notes:
            print(f"note: {row.fault}: {note}")
    for example in report.examples:
        print("violation:", example)
    print(f"\nviolations: {report.violations}")
    return 1 if report.violations else 0
