"""The app each server process of the multi-process tests runs (``support.push_app:app``).

The test app of ``app_factory`` on the shared Redis, plus ``GET /_test/hub`` (the hub's
figures and the process id). Environment: ``REDIS_URL``, ``SESSIONWATCH_KEY_PREFIX``,
and ``PUSH_APP_OPTIONS`` (JSON: more sessionwatch options; ``policy`` holds the
keyword arguments of a :class:`~sessionwatch.Policy`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from quart import jsonify

from sessionwatch import Policy
from support.app_factory import make_app
from support.push_processes import ORIGIN

_options = json.loads(os.environ.get("PUSH_APP_OPTIONS") or "{}")
app = make_app(
    os.environ["REDIS_URL"],
    key_prefix=os.environ["SESSIONWATCH_KEY_PREFIX"],
    cookie_secure=False,
    allowed_origins=[ORIGIN],
    policy=Policy(**_options.pop("policy", {})),
    **_options,
)


@app.get("/_test/hub")
async def hub_stats() -> Any:
    return jsonify({**app.extensions["sessionwatch"].hub.stats(), "pid": os.getpid()})
