"""``python -m sessionwatch.demo.proxy``: the proxy demo on loopback until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence

from .runner import DemoError, ProxyDemo, express_ready


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sessionwatch.demo.proxy", description=__doc__)
    parser.add_argument("--port", type=int, default=8080, help="nginx port of the Flask app")
    parser.add_argument(
        "--express-port", type=int, default=8081, help="nginx port of the Express app"
    )
    parser.add_argument("--no-express", action="store_true", help="only the Flask app")
    parser.add_argument("--backend", default="memory://", help="memory:// (default) or a Redis URL")
    parser.add_argument("--workers", type=int, default=1, help="sessionwatch serve workers")
    args = parser.parse_args(argv)
    with_express = not args.no_express
    if with_express and not express_ready():
        print(
            "the Express app is not installed (cd client_js/examples/express && npm ci); "
            "starting the Flask app only",
            file=sys.stderr,
        )
        with_express = False
    demo = ProxyDemo(
        backend=args.backend,
        workers=args.workers,
        port=args.port,
        express_port=args.express_port if with_express else None,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        demo.start()
    except DemoError as error:  # start() kept the logs the error names
        print(f"proxy demo: {error}", file=sys.stderr)
        return 1
    failed = False
    try:
        for name, url in demo.urls.items():
            print(f"{name:8} {url}/  (sign in with any name, password demo)")
        print(f"sessionwatch {demo.sessionwatch_url}  nginx config and logs: {demo.directory}")
        print("Ctrl-C stops everything (and removes that folder).")
        while all(process.poll() is None for _, process in demo.processes):
            time.sleep(0.5)
        failed = True
        print(f"proxy demo: a process exited; its log is kept in {demo.directory}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        demo.stop(keep_logs=failed)


if __name__ == "__main__":
    sys.exit(main())
