"""``sessionwatch sessions list|revoke``: the admin tools on the configured backend.

The commands read the backend as ``sessionwatch serve`` does (``--backend``, else
``SESSIONWATCH_BACKEND``, else ``REDIS_URL``; ``SESSIONWATCH_KEY_PREFIX`` and the
timeouts from the environment) and act through the session engine, so a revocation is
the same atomic step as any other: the service's workers tell the tabs
``revoked{reason}`` live. The actor of a revocation is ``cli:<login name>``.
``memory://`` lives inside one serving process: there the admin API is the way
(docs/admin.md).

Exit codes: 0 done, 1 no such session (``session_not_found``), 2 bad input or
configuration (``bad_reason``, ``bad_session_id``, ``bad_user_id``, ``bad_page``), 3 the
backend cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, TextIO

from ..backends import backend_from_url
from ..backends.base import Backend, Timeouts
from ..core.audit import check_user_id
from ..core.codes import MESSAGES, Code
from ..core.config import Settings, settings_from_env
from ..core.exceptions import ConfigurationError, InvalidPage, InvalidUserId
from ..core.policy import policy_from_env
from ..core.tokens import PUBLIC_ID_RE
from ..core.trail import ACTOR_RE
from ..engine import REASON_RE, SessionEngine
from ..engine.roster import roster, session_json
from .admin_api import ADMIN_REASON

__all__ = ["add_sessions_command", "run_sessions"]

EXIT_NOT_FOUND = 1
EXIT_BAD_INPUT = 2


def _reason(value: str) -> str:
    if not REASON_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{Code.BAD_REASON}: must match {REASON_RE.pattern}")
    return value


def _public_id(value: str) -> str:
    if not PUBLIC_ID_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{Code.BAD_SESSION_ID}: {MESSAGES[Code.BAD_SESSION_ID]}")
    return value


def _user(value: str) -> str:
    try:
        return check_user_id(value)
    except InvalidUserId as exc:
        raise argparse.ArgumentTypeError(f"{Code.BAD_USER_ID}: {exc}") from None


def add_sessions_command(commands: Any) -> None:
    """``sessions list`` and ``sessions revoke`` on the CLI's subcommands."""
    sessions = commands.add_parser(
        "sessions", help="list or revoke users' sessions on the configured backend"
    )
    actions = sessions.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="live sessions: one user's, or every user's")
    listing.add_argument("--user", type=_user, help="only this user's sessions")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = actions.add_parser(
        "revoke", help="revoke one session, or a user's; their tabs are told live"
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--session", type=_public_id, metavar="PUBLIC_ID", help="one session")
    which.add_argument("--user", type=_user, help="every session of this user")
    revoke.add_argument(
        "--except", dest="keep", type=_public_id, metavar="PUBLIC_ID", help="with --user: keep it"
    )
    revoke.add_argument(
        "--reason",
        type=_reason,
        default=ADMIN_REASON,
        help=f"what the tabs are told (a code; default {ADMIN_REASON})",
    )
    for command in (listing, revoke):
        command.add_argument(
            "--backend", default=None, help="backend URL (default $REDIS_URL, as serve)"
        )


def _settings(backend: str | None) -> Settings:
    if backend:
        os.environ["SESSIONWATCH_BACKEND"] = backend
    settings = settings_from_env()  # raises ConfigurationError naming the key
    if settings.backend.startswith("memory:"):
        raise ConfigurationError(
            "the memory:// backend lives inside the serving process: give the service's "
            "Redis URL (--backend or REDIS_URL), or use the admin API (docs/admin.md)"
        )
    return settings


def _actor() -> str:
    """``admin:cli:<login name>`` (the trail's actor shape, core/trail.ACTOR_RE)."""
    try:
        login = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "admin:cli"
    return f"admin:cli:{login}" if ACTOR_RE.fullmatch(f"admin:cli:{login}") else "admin:cli"


@contextlib.asynccontextmanager
async def _engine(settings: Settings) -> AsyncIterator[SessionEngine]:
    backend: Backend = backend_from_url(
        settings.backend,
        key_prefix=settings.key_prefix,
        durable_ends=settings.durable_ends,
        durable_ends_timeout=settings.durable_ends_timeout,
    )
    await backend.connect()  # raises BackendUnavailable
    try:
        yield SessionEngine(
            backend,
            timeouts=Timeouts.from_settings(settings),
            policy=policy_from_env(),
            now_ms=lambda: int(time.time() * 1000),
            max_sessions_per_user=settings.max_sessions_per_user,
        )
    finally:
        await backend.disconnect()


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_session(item: dict[str, Any], *, as_json: bool, out: TextIO) -> None:
    if as_json:
        print(json.dumps(item, separators=(",", ":")), file=out)
        return
    device = f"{item['browser']} on {item['os']}".replace("\t", " ")
    print(
        f"{item['user']}\t{item['id']}\t{device}\t{item['place']}\t"
        f"{_when(item['last_seen'])}\t{item['live_tabs']}",
        file=out,
    )


async def _list(engine: SessionEngine, user: str | None, as_json: bool, out: TextIO) -> int:
    if not as_json:
        print("USER\tSESSION\tDEVICE\tPLACE\tLAST SEEN\tTABS", file=out)
    if user is not None:
        cursor: str | None = None
        while True:
            page = await engine.list_sessions(user, cursor=cursor, limit=100)
            for info in page.sessions:
                _print_session(session_json(info), as_json=as_json, out=out)
            cursor = page.next_cursor
            if cursor is None:
                return 0
    cursor = None
    while True:
        found = await roster(engine, cursor=cursor, limit=100)
        for entry in found.users:
            for info in entry.sessions:
                _print_session(session_json(info), as_json=as_json, out=out)
            more = entry.next_cursor
            while more is not None:  # a user with more than the roster shows
                page = await engine.list_sessions(entry.user, cursor=more, limit=100)
                for info in page.sessions:
                    _print_session(session_json(info), as_json=as_json, out=out)
                more = page.next_cursor
        cursor = found.next_cursor
        if cursor is None:
            return 0


async def _revoke(engine: SessionEngine, args: argparse.Namespace, out: TextIO) -> int:
    actor = _actor()
    if args.session is not None:
        if args.keep is not None:
            raise ConfigurationError("--except goes with --user, not --session")
        if not await engine.revoke_session(args.session, reason=args.reason, actor=actor):
            print(
                f"sessionwatch: {Code.SESSION_NOT_FOUND}: no live session {args.session}",
                file=sys.stderr,
            )
            return EXIT_NOT_FOUND
        count = 1
    else:
        count = await engine.revoke_user(
            args.user, except_id=args.keep, reason=args.reason, via="cli", actor=actor
        )
    print(f"revoked {count} session(s) (reason {args.reason}, actor {actor})", file=out)
    return 0


def run_sessions(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run ``sessions list`` or ``sessions revoke``; the exit code.

    Raises:
        ConfigurationError: a bad setting or ``memory://``.
        BackendUnavailable: the backend cannot be reached.
    """
    settings = _settings(args.backend)

    async def run() -> int:
        async with _engine(settings) as engine:
            try:
                if args.action == "list":
                    return await _list(engine, args.user, args.json, out)
                return await _revoke(engine, args, out)
            except InvalidPage as exc:
                print(f"sessionwatch: {Code.BAD_PAGE}: {exc}", file=sys.stderr)
                return EXIT_BAD_INPUT

    return asyncio.run(run())
