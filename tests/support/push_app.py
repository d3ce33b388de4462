"""The app each server process of the multi-process tests runs (``support.push_app:app``).

The test app of ``app_factory`` on the shared Redis, plus ``GET /_test/hub`` (the hub's
figures and the process id). Environment: ``REDIS_URL``, ``SESSIONWATCH_KEY_PREFIX``,
and ``PUSH_APP_OPTIONS`` (JSON: more sessionwatch options; ``policy`` holds the
keyword arguments of a :class:`~sessionwatch.Policy`).

With ``PUSH_APP_HOOK_LOG`` set, a hook on every audit event appends a JSON line (record
id, event, session, this pid) to that file; with ``PUSH_APP_HOOK_SLEEP``, a plain (not
async) hook blocks its thread that many seconds (``time.sleep``) on every event; the first hook call to find ``<log>.hang`` removes it and never returns (a worker
killed between a record's delivery and its acknowledgement).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from quart import jsonify

from sessionwatch import AuditRecord, Policy
from sessionwatch.core.trail import AUDIT_EVENTS
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


_hook_log = os.environ.get("PUSH_APP_HOOK_LOG")


async def _hook(record: AuditRecord) -> None:
    assert _hook_log is not None
    line = {"id": record.id, "event": record.event, "session": record.session, "pid": os.getpid()}
    fd = os.open(_hook_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())  # one write: lines never mix
    finally:
        os.close(fd)
    try:
        os.unlink(_hook_log + ".hang")
    except FileNotFoundError:
        pass
    else:
        await asyncio.sleep(3600)


def _blocking_hook(record: AuditRecord) -> None:
    time.sleep(float(os.environ["PUSH_APP_HOOK_SLEEP"]))  # a blocking hook, as apps write


if _hook_log:
    for _event in AUDIT_EVENTS:
        app.extensions["sessionwatch"].on(_event)(_hook)
        if os.environ.get("PUSH_APP_HOOK_SLEEP"):
            app.extensions["sessionwatch"].on(_event)(_blocking_hook)
