"""``sessionwatch audit tail`` and ``sessionwatch audit export``: the trail from a shell.

Both read the configured backend (``--backend``, else ``$REDIS_URL`` and the
``SESSIONWATCH_*`` settings, as ``serve``). ``tail`` prints the newest records (one per
line, or JSON lines) and with ``--follow`` the ones that come after. ``export`` writes
JSON lines for a SIEM through the consumer group ``export``, resuming where it stopped:
a record is acknowledged only once its line is on disk (flushed and fsynced), and after
a kill the records left pending are written again unless the file's complete lines
already hold them (a torn last line is cut off first), so the output never loses nor
repeats a record (docs/audit.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from ..backends import Backend, backend_from_url
from ..core import jsonlimits
from ..core.config import settings_from_env
from ..core.trail import AuditRecord, AuditSettings, entry_order

__all__ = ["add_audit_parser", "run_audit"]

_CONSUMER = "exporter"  # one exporter per group: its pending records are its own
_BATCH = 500
_POLL = 0.5  # seconds between reads when nothing came (--follow)


def add_audit_parser(commands: Any) -> None:
    """The ``audit`` command and its ``tail`` and ``export`` subcommands."""
    audit = commands.add_parser("audit", help="read the audit trail (docs/audit.md)")
    what = audit.add_subparsers(dest="audit_command", required=True)
    tail = what.add_parser("tail", help="the newest records; --follow for what comes next")
    tail.add_argument("--user", default=None, help="only this user's records")
    tail.add_argument("--follow", action="store_true", help="keep printing new records")
    tail.add_argument("--json", action="store_true", help="JSON lines instead of text")
    tail.add_argument("-n", type=int, default=20, help="how many records first (default 20)")
    export = what.add_parser("export", help="JSON lines for a SIEM, resuming where it stopped")
    export.add_argument("--since", default=None, help="skip records before this id (ms-seq)")
    export.add_argument("--to", default=None, help="append to this file (default stdout)")
    export.add_argument("--group", default="export", help="consumer group (default export)")
    export.add_argument("--follow", action="store_true", help="keep exporting new records")
    for command in (tail, export):
        command.add_argument("--backend", default=None, help="backend URL (default $REDIS_URL)")


def _backend(url: str | None) -> Backend:
    settings = settings_from_env(backend=url) if url else settings_from_env()
    return backend_from_url(
        settings.backend, key_prefix=settings.key_prefix, audit=AuditSettings.of(settings)
    )


def run_audit(args: argparse.Namespace) -> int:
    """Run ``sessionwatch audit …``; the exit status."""
    backend = _backend(args.backend)
    if args.audit_command == "tail":
        job = tail(backend, user=args.user, follow=args.follow, as_json=args.json, count=args.n)
    else:
        job = export(backend, since=args.since, to=args.to, group=args.group, follow=args.follow)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(job)
    return 0


def line_of(record: AuditRecord) -> str:
    """One record as one human line."""
    at = datetime.fromtimestamp(record.at / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    device = f"{record.device.get('browser', '?')} on {record.device.get('os', '?')}"
    parts = [at[:-4] + "Z", record.event, f"user={record.user or '-'}"]
    parts += [f"session={record.session or '-'}", f"device={device!r}"]
    parts += [f"place={record.place or '-'}", f"actor={record.actor}"]
    if record.reason:
        parts.append(f"reason={record.reason}")
    if record.by:
        parts.append(f"by={record.by.get('browser', '?')!r}@{record.by.get('place', '?')}")
    parts += [
        flag
        for flag, on in (("NEW-DEVICE", record.new_device), ("NEW-PLACE", record.new_place))
        if on
    ]
    return " ".join(parts)


def json_line(record: AuditRecord) -> str:
    return json.dumps(record.to_json(), ensure_ascii=True, separators=(",", ":"))


async def tail(
    backend: Backend, *, user: str | None, follow: bool, as_json: bool, count: int
) -> None:
    await backend.connect()
    try:
        latest, cursor = await backend.audit_latest(count if user is None else max(count, 1000))
        shown = [r for r in latest if user is None or r.user == user][-count:] if count > 0 else []
        _print(shown, as_json)
        while follow:
            await asyncio.sleep(_POLL)
            records, cursor = await backend.audit_after(cursor)
            _print([r for r in records if user is None or r.user == user], as_json)
    finally:
        await backend.disconnect()


def _print(records: Iterable[AuditRecord], as_json: bool) -> None:
    for record in records:
        print(json_line(record) if as_json else line_of(record), flush=True)


def written_ids(path: Path) -> set[str]:
    """The ids in the complete lines of an export file, after cutting off a torn last
    line (a write the kill interrupted: its record is still pending, written again)."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(complete))
    ids = set()
    for line in complete.splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            ids.add(jsonlimits.loads(line)["id"])
    return ids


async def export(
    backend: Backend, *, since: str | None, to: str | None, group: str, follow: bool
) -> None:
    """Write the group's records as JSON lines (see the module docstring)."""
    floor = entry_order(since if "-" in since else since + "-0") if since else None
    path = Path(to) if to else None
    done = written_ids(path) if path is not None else set()
    out: IO[str] = path.open("a", encoding="utf-8") if path is not None else sys.stdout
    await backend.connect()
    try:
        # What a killed run was given but never acknowledged comes first.
        batch = await backend.audit_reclaim(group, _CONSUMER, idle_ms=0, count=_BATCH)
        while True:
            if not batch:
                batch = await backend.audit_read(group, _CONSUMER, count=_BATCH)
            if not batch:
                if not follow:
                    return
                await asyncio.sleep(_POLL)
                continue
            for record in batch:
                if record.id not in done and (floor is None or entry_order(record.id) >= floor):
                    out.write(json_line(record) + "\n")
            out.flush()
            if path is not None:
                os.fsync(out.fileno())
            await backend.audit_ack(group, [record.id for record in batch])
            done.clear()  # ids seen before the restart are behind us now
            batch = []
    finally:
        if path is not None:
            out.close()
        await backend.disconnect()
