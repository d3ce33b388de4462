"""The forward-auth benchmark command keeps working: its ``--smoke`` mode (200
requests per route) in the default test run asserts behaviour only — every request
through nginx with ``auth_request`` passed, every direct verification answered 204 —
never speed (``python -m tests.bench.proxy`` measures; docs/any-stack.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.bench_command import run_bench
from support.proxy import require_express, require_nginx


@pytest.mark.multiprocess
@pytest.mark.timeout(150)
def test_proxy_bench_smoke(tmp_path: Path) -> None:
    require_nginx()
    require_express()
    out = tmp_path / "proxy.json"
    process = run_bench("tests.bench.proxy", "--smoke", "--json", str(out))
    assert "| upstream |" in process.stdout
    results = json.loads(out.read_text())
    assert set(results["sites"]) == {"flask", "express"}
    for site, entry in results["sites"].items():
        runs = {route: entry["runs"][route][0] for route in ("plain", "auth", "verify", "floor")}
        for route, run in runs.items():
            expected = "204" if route == "verify" else "200"
            assert run["statuses"] == {expected: run["requests"]}, (site, route, run)
            assert run["requests"] > 0 and run["errors"] == {}, (site, route, run)
        assert entry["ratio"] > 0
