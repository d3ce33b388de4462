"""A rolling restart in the default test run (issue 23): 2 hosts x 2 workers behind
nginx, 100 tabs and 50 requests/s through it while each host in turn is taken out of
nginx, stopped (SIGTERM) and started again. No request fails, no tab is shown a banner,
every tab whose socket closed is ready again, no session is lost
(``python -m tests.bench.rolling_restart`` runs 1,000 tabs at 200 requests/s;
docs/deployment.md, "Rolling restarts")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.bench_command import run_bench
from support.proxy import require_nginx


@pytest.mark.multiprocess
@pytest.mark.timeout(400)
def test_a_rolling_restart_under_load_fails_nothing(tmp_path: Path) -> None:
    require_nginx()
    out = tmp_path / "rolling.json"
    process = run_bench(
        "tests.bench.rolling_restart",
        *("--tabs", "100", "--rate", "50", "--settle", "3", "--json", str(out)),
        timeout=380,
    )
    figures = json.loads(out.read_text())
    text = process.stdout
    assert sum(figures["requests"].values()) > 500, text  # the load ran
    assert figures["failed"] == 0 and figures["skipped"] == 0, text
    assert figures["banners"] == 0, text
    assert figures["sessions_lost"] == 0 and figures["not_ready_at_end"] == 0, text
    # Every tab's socket was closed by a restart (1012) and came back.
    assert figures["tabs_closed"] == 100, text
    assert set(figures["closes"]) == {"1012"}, text
    assert figures["reconnect_max"] < figures["reconnect_bound"], text
