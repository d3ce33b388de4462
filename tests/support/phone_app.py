"""A host page that is wider than a phone's screen, for the banner's mobile tests (issue 24).

:func:`create_app` (``uvicorn --factory support.phone_app:create_app``): the test app of
``app_factory`` on the memory backend, two sessions per user (a third sign-in evicts the
oldest), plus

- ``GET /page``: a 485 px table (as the demo's sessions table was) and a long body, so the
  page overflows a 320-414 px screen both ways, and the client's ``<script>`` tag;
  ``?dir=rtl``: right to left (it overflows to the left); ``?placement=top``: the banner
  at the top;
- ``GET /signed-out``: where "Sign in again" and "Not you?" lead;
- ``POST /revoke``: revokes every session of the JSON body's ``user``.

Environment: ``PHONE_APP_ORIGIN`` (the page's origin, the only one allowed) and
``PHONE_APP_OPTIONS`` (JSON: more sessionwatch options, e.g. short timeouts).
:class:`PhoneApp` runs it in a process of its own on a free port.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from quart import Quart, jsonify, request

from sessionwatch import Policy

from .app_factory import make_app, watch_of
from .processes import ManagedProcess

__all__ = ["PAGE", "PhoneApp", "create_app"]

TESTS = Path(__file__).resolve().parents[1]
ROWS = "".join(
    f"<tr><td>Chrome {n} on Android</td><td>203.0.113.{n}</td><td>2026-12-07 14:{n:02d}</td>"
    f"<td><button type=button>Revoke</button></td></tr>"
    for n in range(12)
)
PAGE = f"""<!doctype html>
<html lang="en" dir="{{dir}}">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>A page wider than a phone</title>
<header><a href="/page">Home</a></header>
<main>
  <h1>Sessions</h1>
  <table style="width: 485px; border-collapse: collapse">{ROWS}</table>
  <p style="height: 1500px">The end of a long page.</p>
</main>
<script src="/_sessionwatch/client.js" data-signin-url="/signed-out" data-placement="{{placement}}" defer></script>
</html>
"""


def create_app() -> Quart:
    """The app, configured from the environment (see the module's docstring)."""
    options = json.loads(os.environ.get("PHONE_APP_OPTIONS") or "{}")
    app = make_app(
        "memory://",
        policy=Policy(sessions_per_user=2),
        cookie_secure=False,
        allowed_origins=[os.environ["PHONE_APP_ORIGIN"]],
        **options,
    )

    @app.get("/page")
    async def page() -> Any:
        direction = "rtl" if request.args.get("dir") == "rtl" else "ltr"
        placement = "top" if request.args.get("placement") == "top" else "bottom"
        html = PAGE.replace("{dir}", direction).replace("{placement}", placement)
        return html, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/signed-out")
    async def signed_out() -> Any:
        return "<!doctype html><title>Signed out</title><p>Signed out.</p>", 200

    @app.post("/revoke")
    async def revoke() -> Any:
        user = (await request.get_json())["user"]
        return jsonify({"revoked": await watch_of(app).revoke_user(user)})

    return app


class PhoneApp(ManagedProcess):
    """:func:`create_app` served by uvicorn in one process on a free port."""

    name = "phone-app"
    ready_path = "/page"

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.cwd = TESTS
        self.env.update(
            {
                "PHONE_APP_ORIGIN": self.url,
                "PHONE_APP_OPTIONS": json.dumps(options or {}),
                "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
            }
        )
        self.command = [
            *(sys.executable, "-m", "uvicorn", "--factory", "support.phone_app:create_app"),
            *("--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"),
        ]
