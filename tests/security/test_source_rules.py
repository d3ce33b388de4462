"""Rules the source of ``server/`` keeps, checked on its syntax tree (issue 22, items 7
and 9): network JSON only through the bounded parser."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

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
