"""hypercorn's worker processes, kept alive: ``sessionwatch serve --server hypercorn``.

hypercorn 0.18's own supervisor (``hypercorn.run.run``) stops every worker as soon as
one exits with a non-zero code: one worker killed (by the OOM killer, an operator, a
crash) stops the whole service. :func:`run_hypercorn` runs the same workers (hypercorn's
own worker function, the sockets bound once in this process, the shared shutdown event)
and starts a dead one again instead, as uvicorn's and granian's supervisors do:

- a worker that died is started again at once; the same worker dying again within
  :data:`CRASH_LOOP_SECONDS` of its restart is a crash loop (a broken app or host), and
  the service stops with that worker's exit code;
- ``SIGTERM`` / ``SIGINT``: the workers are told to stop (their ASGI lifespan shut-down
  runs) and awaited; ``SIGHUP``: every worker is stopped and started again (hypercorn's
  own reload).
"""

from __future__ import annotations

import logging
import signal
import time
from multiprocessing import get_context
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any, Final

__all__ = ["CRASH_LOOP_SECONDS", "run_hypercorn"]

logger = logging.getLogger(__name__)

CRASH_LOOP_SECONDS: Final = 5.5  # as granian's
_POLL: Final = 0.5


def run_hypercorn(config: Any) -> int:
    """Serve ``config`` (a ``hypercorn.config.Config`` with ``workers >= 1``) until
    ``SIGTERM``/``SIGINT``; return the exit code (0, or a crash-looping worker's)."""
    from hypercorn.asyncio.run import asyncio_worker

    sockets = config.create_sockets()
    ctx = get_context("spawn")
    shutdown_event = ctx.Event()
    state = {"stop": False, "reload": False}

    def spawn() -> BaseProcess:
        process = ctx.Process(
            target=asyncio_worker,
            kwargs={"config": config, "shutdown_event": shutdown_event, "sockets": sockets},
        )
        process.daemon = config.daemon
        process.start()
        return process

    def stop(*_: Any) -> None:
        state["stop"] = True
        shutdown_event.set()

    def reload(*_: Any) -> None:
        state["reload"] = True

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited: the workers ignore it
    workers = [spawn() for _ in range(config.workers)]
    restarted_at: dict[int, float] = {}
    for name, handler in (("SIGINT", stop), ("SIGTERM", stop), ("SIGHUP", reload)):
        signal.signal(getattr(signal, name), handler)
    exit_code = 0
    try:
        while not state["stop"]:
            wait([worker.sentinel for worker in workers], timeout=_POLL)
            if state["reload"]:
                state["reload"] = False
                workers = _restart_all(workers, shutdown_event, spawn)
                continue
            for slot, worker in enumerate(workers):
                if worker.exitcode is None or state["stop"]:
                    continue
                worker.join()
                now = time.monotonic()
                if now - restarted_at.get(slot, float("-inf")) <= CRASH_LOOP_SECONDS:
                    logger.error(
                        "worker %d (pid %s) died again within %.1fs of its restart "
                        "(exit code %s): stopping",
                        slot + 1,
                        worker.pid,
                        CRASH_LOOP_SECONDS,
                        worker.exitcode,
                    )
                    exit_code = worker.exitcode or 1
                    stop()
                    break
                logger.warning(
                    "worker %d (pid %s) died (exit code %s); starting it again",
                    slot + 1,
                    worker.pid,
                    worker.exitcode,
                )
                restarted_at[slot] = now
                workers[slot] = spawn()
    finally:
        shutdown_event.set()
        for worker in workers:
            worker.join(timeout=30)
            if worker.exitcode is None:
                worker.kill()
                worker.join()
        for sock in (*sockets.secure_sockets, *sockets.insecure_sockets):
            sock.close()
    return exit_code


def _restart_all(workers: list[BaseProcess], shutdown_event: Any, spawn: Any) -> list[BaseProcess]:
    shutdown_event.set()
    for worker in workers:
        worker.join()
    shutdown_event.clear()
    return [spawn() for _ in workers]
