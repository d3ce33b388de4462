"""The apps of the request-overhead scenario (4), served by uvicorn like the service.

- ``create_plain_app``: Quart alone. ``GET /open`` is the bare route; ``GET /cookie`` is
  the same route reading Quart's default (signed cookie) session.
- ``create_watch_app``: the same route with sessionwatch installed (Redis backend,
  settings from the environment as in the service): ``GET /open`` unprotected and
  ``GET /protected`` behind ``@watch.active_tab_required``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from quart import Quart, jsonify, session

from sessionwatch import SessionWatch
from sessionwatch.core.config import settings_from_env

__all__ = ["create_plain_app", "create_watch_app"]


async def _ok() -> Any:
    return jsonify({"ok": True})


def _common(app: Quart) -> None:
    app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
    app.add_url_rule("/open", "open", _ok, methods=["GET"])
    app.add_url_rule("/healthz", "healthz", _ok, methods=["GET"])

    @app.before_serving
    async def mark_ready() -> None:  # lets the runner find every worker process
        ready_dir = os.environ.get("BENCH_READY_DIR")
        if ready_dir:
            Path(ready_dir, f"ready-{os.getpid()}").touch()  # noqa: ASYNC240 (once, at start-up)


def create_plain_app() -> Quart:
    app = Quart(__name__)
    _common(app)

    @app.get("/cookie")
    async def cookie() -> Any:
        session.get("user")
        return await _ok()

    @app.get("/cookie/login")
    async def cookie_login() -> Any:
        session["user"] = "bench"
        return await _ok()

    return app


def create_watch_app() -> Quart:
    app = Quart(__name__)
    _common(app)
    settings = settings_from_env()
    watch = SessionWatch(
        app, **{name: getattr(settings, name) for name in settings.__dataclass_fields__}
    )
    app.add_url_rule("/protected", "protected", watch.active_tab_required(_ok), methods=["GET"])
    return app
