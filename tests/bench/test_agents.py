"""The orchestrator's fan-out to the load-generator agents (no processes here)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.agents import AgentError, call_all


class FakeAgent:
    def __init__(self, fails: bool) -> None:
        self.fails = fails
        self.pending: str | None = None

    def start(self, method: str, **kwargs: Any) -> None:
        assert self.pending is None, "the previous answer was never read"
        self.pending = method

    def result(self, timeout: float) -> Any:
        method, self.pending = self.pending, None
        if self.fails:
            raise AgentError(f"{method} failed")
        return method


def test_one_failure_leaves_no_agent_with_an_unread_answer() -> None:
    agents = [FakeAgent(fails=True), FakeAgent(fails=False)]
    with pytest.raises(AgentError, match="create_sessions failed"):
        call_all(agents, "create_sessions", 1)  # type: ignore[arg-type]
    agents[0].fails = False
    assert call_all(agents, "close_tabs", 1) == ["close_tabs", "close_tabs"]  # type: ignore[arg-type]
