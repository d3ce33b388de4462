"""Load-generator processes driven over a pipe.

Each agent is a separate process (``spawn``) running one uvloop event loop and an
object whose ``async`` methods the orchestrator calls by name. Calls are bounded by a
timeout; a dead or stuck agent fails the scenario instead of hanging the run.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import os
import traceback
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["Agent", "AgentError"]


class AgentError(RuntimeError):
    """The agent raised, died or did not answer in time."""


def _agent_main(conn: Connection, target: str) -> None:
    import uvloop

    module_name, _, class_name = target.partition(":")
    instance = getattr(importlib.import_module(module_name), class_name)()
    uvloop.run(_serve(conn, instance))


async def _serve(conn: Connection, instance: Any) -> None:
    loop = asyncio.get_running_loop()
    try:
        while True:
            # A thread reads the pipe: the loop stays free for the agent's own work.
            message = await loop.run_in_executor(None, conn.recv)
            if message is None:
                return
            name, kwargs = message
            try:
                result = await getattr(instance, name)(**kwargs)
            except Exception:
                conn.send(("error", traceback.format_exc()))
            else:
                conn.send(("ok", result))
    finally:
        close = getattr(instance, "aclose", None)
        if close is not None:
            await close()


class Agent:
    """The orchestrator's handle on one agent process."""

    def __init__(self, target: str, name: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.name = name
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_agent_main, args=(child, target), name=name, daemon=True
        )
        self.process.start()
        child.close()
        self._pending: str | None = None

    @property
    def pid(self) -> int:
        return int(self.process.pid or 0)

    def start(self, method: str, **kwargs: Any) -> None:
        """Send a call without waiting for its answer (see :meth:`result`)."""
        if self._pending is not None:
            raise AgentError(f"{self.name}: {self._pending} is still running")
        self._pending = method
        self._conn.send((method, kwargs))

    def result(self, timeout: float) -> Any:
        """The answer of the call sent by :meth:`start`."""
        method, self._pending = self._pending, None
        if not self._conn.poll(timeout):
            raise AgentError(f"{self.name}: {method} did not answer within {timeout:.0f} s")
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            raise AgentError(f"{self.name}: the process died during {method}") from None
        if status == "error":
            raise AgentError(f"{self.name}: {method} failed:\n{value}")
        return value

    def call(self, method: str, timeout: float = 60.0, **kwargs: Any) -> Any:
        self.start(method, **kwargs)
        return self.result(timeout)

    def stop(self) -> None:
        if self.process.is_alive():
            try:
                self._conn.send(None)
            except OSError:
                pass
            self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive() and self.process.pid:
            os.kill(self.process.pid, 9)
        self._conn.close()


def call_all(
    agents: list[Agent], method: str, timeout: float, each: list[dict[str, Any]] | None = None
) -> list[Any]:
    """Call ``method`` on every agent at once (``each[i]``: agent i's arguments)."""
    for index, agent in enumerate(agents):
        agent.start(method, **(each[index] if each is not None else {}))
    # Every answer is collected before one failure is raised: an agent left with an
    # unread answer would refuse every later call and fail the rest of the run.
    results: list[Any] = []
    failure: AgentError | None = None
    for agent in agents:
        try:
            results.append(agent.result(timeout))
        except AgentError as exc:
            failure = failure or exc
    if failure is not None:
        raise failure
    return results
