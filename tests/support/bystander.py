"""A bystander in its own process: protected requests one after another for a while,
from its own loopback address; prints their latencies (ms) and the statuses of the
requests that failed as JSON. Run apart from
the attack, so that the attacker's client load does not count as server latency.

``python -m support.bystander PORT COOKIE TOKEN SECONDS SOURCE``
"""

from __future__ import annotations

import http.client
import json
import sys
import time
from typing import Any


def main(port: int, cookie: str, token: str, seconds: float, source: str) -> dict[str, Any]:
    origin = f"http://127.0.0.1:{port}"
    headers = {
        "Origin": origin,
        "Cookie": f"session={cookie}",
        "X-SessionWatch-Tab": token,
        "Content-Type": "application/json",
    }
    times = []
    failed: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        connection = http.client.HTTPConnection(
            "127.0.0.1", port, timeout=10, source_address=(source, 0)
        )
        try:
            connection.request("POST", "/api/transfer", b"{}", headers)
            answer = connection.getresponse()
            answer.read()
        finally:
            connection.close()
        if answer.status == 200:
            times.append((time.perf_counter() - started) * 1000)
        else:
            failed.append(answer.status)
    return {"ms": sorted(times), "failed": failed}


if __name__ == "__main__":
    port, cookie, token, seconds, source = sys.argv[1:6]
    print(json.dumps(main(int(port), cookie, token, float(seconds), source)))
