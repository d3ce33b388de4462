"""Scenario 3: idle memory per connected tab.

After a warm-up (a few tabs connected and closed), the RSS of the server's worker
processes is the baseline; ``tabs`` tabs are then connected (hello → ready) in
``batches`` equal batches, waiting a second after each. The figure is the RSS growth
divided by the tabs; each batch's own growth per tab gives the spread.
"""

from __future__ import annotations

import time
from typing import Any

from .context import Bench
from .servers import Server

__all__ = ["MEMORY_TARGET_KB", "measure_memory"]

MEMORY_TARGET_KB = 16.0
_WARMUP_TABS = 50
_SETTLE = 1.0


def measure_memory(
    bench: Bench,
    label: str,
    kind: str,
    server: Server,
    tabs: int,
    *,
    compression: bool,
    batches: int,
) -> dict[str, Any]:
    """Connect ``tabs`` tabs of ``pools[kind]`` (indices ``0..tabs``) and measure."""
    warm = min(_WARMUP_TABS, tabs)
    bench.connect(kind, server, range(warm), compression=compression)
    bench.close_tabs(list(range(warm)))
    bench.wait_idle(server)
    time.sleep(_SETTLE)
    baseline = previous = server.rss()
    fds_before = server.fds()
    marginals = []
    done = 0
    negotiated = connected = 0
    refused: dict[str, int] = {}
    for batch in range(batches):
        upto = tabs * (batch + 1) // batches
        summary = bench.connect(kind, server, range(done, upto), compression=compression)
        negotiated += summary["with_extensions"]
        connected += summary["connected"]
        for key, value in summary["failures"].items():
            refused[key] = refused.get(key, 0) + value
        time.sleep(_SETTLE)
        rss = server.rss()
        marginals.append((rss - previous) / max(1, upto - done) / 1024)
        previous, done = rss, upto
    fds_after = server.fds()
    result = {
        "label": label,
        "kind": kind,
        "server": server.name,
        "compression_offered": compression,
        "tabs": tabs,
        "connected": connected,
        "negotiated": negotiated,
        "baseline_mb": baseline / 2**20,
        "loaded_mb": previous / 2**20,
        "kb_per_tab": (previous - baseline) / max(1, connected) / 1024,
        "batch_kb_per_tab": marginals,
        "handshake_retries": refused,
        "tabs_per_worker": sorted(fds_after[pid] - fds_before.get(pid, 0) for pid in fds_after),
    }
    bench.log(
        f"  memory {label}: {result['kb_per_tab']:.1f} KB/tab "
        f"(batches {', '.join(f'{m:.1f}' for m in marginals)}; deflate negotiated on {negotiated})"
    )
    return result
