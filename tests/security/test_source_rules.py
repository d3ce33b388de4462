"""Rules the source of ``server/`` keeps, checked on its syntax tree (issue 22, items 7
and 9): network JSON only through the bounded parser, security events only as JSON
lines through ``core.audit.security_event``."""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "sessionwatch"
AUDIT = PACKAGE / "core" / "audit.py"
JSONLIMITS = PACKAGE / "core" / "jsonlimits.py"
# Stand-alone: an app may copy it as one file, so it imports the standard library only
# (it catches RecursionError itself; it parses the service's own answers).
CLIENT = PACKAGE / "client.py"
# The demo uses only the public API (tests/core/test_layers.py) and parses only the
# policy it stored itself.
DEMO = PACKAGE / "service" / "demo"
EVENT_NAME = re.compile(r"[a-z][a-z_]{0,39}")
LOG_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}


def modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def calls(tree: ast.Module) -> Iterator[ast.Call]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def name_of(node: ast.expr) -> str:
    """``a.b.c`` of a call's function, as written."""
    if isinstance(node, ast.Attribute):
        return f"{name_of(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else "?"


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', 0)}"


def test_json_from_outside_goes_through_the_bounded_parser() -> None:
    """``json.loads`` recursed once per level: 1,000 ``[`` answered 500. Every parse in
    the package is ``jsonlimits.loads`` (a ``ValueError`` for anything too deep)."""
    found = [
        where(path, call)
        for path, tree in modules()
        if path not in (JSONLIMITS, CLIENT) and DEMO not in path.parents
        for call in calls(tree)
        if name_of(call.func) in ("json.loads", "json.load", "loads", "load")
        and name_of(call.func) not in ("jsonlimits.loads", "bounded_json.loads")
    ]
    imports = [
        where(path, node)
        for path, tree in modules()
        if path not in (JSONLIMITS, CLIENT) and DEMO not in path.parents
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and node.module == "json"
        and any(alias.name in ("loads", "load") for alias in node.names)
    ]
    assert found == [] and imports == [], (found, imports)


def test_every_security_event_is_a_json_line_of_literal_name_and_keyword_fields() -> None:
    """No module logs on the security logger with a format string (the origin refusal
    of ``/verify`` wrote a client's ``X-Original-URI`` raw, and a NEL in it forged a
    line): only ``security_event("name", [level,] field=value, ...)``, whose values
    ``core.audit`` writes as escaped ASCII JSON."""
    direct, named, events = [], [], 0
    for path, tree in modules():
        for node in ast.walk(tree):
            if (
                path != AUDIT
                and isinstance(node, ast.Constant)
                and node.value == "sessionwatch.security"
            ):
                named.append(where(path, node))  # a second handle on the logger
        if path == AUDIT:
            continue
        for call in calls(tree):
            function = name_of(call.func)
            receiver, _, method = function.rpartition(".")
            if method in LOG_METHODS and receiver.rpartition(".")[2] == "security_log":
                direct.append(where(path, call))
            if function.rpartition(".")[2] == "security_event":
                events += 1
                first = call.args[0] if call.args else None
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), where(
                    path, call
                )
                assert EVENT_NAME.fullmatch(first.value), where(path, call)
                assert len(call.args) <= 2 and not any(
                    isinstance(arg, ast.Starred) for arg in call.args
                ), where(path, call)  # the level at most; every value a keyword field
    assert direct == [], f"log through security_event, not security_log: {direct}"
    assert named == [], f"use core.audit's logger: {named}"
    assert events >= 15  # the scan sees the call sites (login, logout, refusals, ...)


def test_a_plain_line_on_the_security_logger_is_still_one_json_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever a future call writes on the logger directly, its line is JSON with
    every control, separator and non-ASCII character escaped."""
    from sessionwatch.core.audit import security_event, security_log

    hostile = "/x\x85{}\u2028{}\u2029\r\n\x1b[31m\x00é"
    with caplog.at_level(logging.INFO, logger="sessionwatch.security"):
        security_log.warning("refused %s", hostile)
        security_event("origin_refused", logging.WARNING, uri=hostile)
    messages = [record.getMessage() for record in caplog.records]
    assert [json.loads(message) for message in messages] == [
        {"event": "message", "message": "refused " + hostile},
        {"event": "origin_refused", "uri": hostile},
    ]
    for message in messages:
        assert message.isascii() and message.isprintable() and len(message.splitlines()) == 1
