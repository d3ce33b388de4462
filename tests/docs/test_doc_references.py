"""The documents name files and modules that exist (issue 24: ``rawsocket.py``,
``websocket.py``, ``service.py``, ``DESIGN.md``, ``python -m sessionwatch.demo_proxy``
and ``sessionwatch.service.demo`` outlived the code they named; ``sec/`` became
``security/``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP = {"node_modules", ".venv", ".git", ".venv-lowest"}


def _documents() -> list[Path]:
    found = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for pattern in ("*.md", "package.json"):
        found += [p for p in sorted((ROOT / "client_js").rglob(pattern)) if not SKIP & set(p.parts)]
    return found


def _files_named(name: str) -> bool:
    return any(not SKIP & set(p.parts) for p in ROOT.rglob(name))


def test_every_python_file_a_document_names_exists() -> None:
    missing = []
    for document in _documents():
        for name in re.findall(r"`([\w./-]+\.py)(?:::\w+)?`", document.read_text()):
            if "/" in name:
                # named from the repository, the package or the tests folder
                bases = (ROOT, ROOT / "server" / "sessionwatch", ROOT / "tests")
                if not any((base / name).is_file() for base in bases):
                    missing.append((document.name, name))
            elif not _files_named(name):
                missing.append((document.name, name))
    assert not missing, missing


def test_every_module_a_document_runs_exists() -> None:
    missing = []
    for document in _documents():
        for module in re.findall(r"python3? -m (sessionwatch[\w.]*)", document.read_text()):
            if importlib.util.find_spec(module) is None:
                missing.append((document.name, module))
    assert not missing, missing


def test_no_document_names_the_unpublished_first_design_as_a_file() -> None:
    """The first design document was never part of the repository: naming it as a file
    sends a newcomer looking for it."""
    assert not [d.name for d in _documents() if "DESIGN.md" in d.read_text()]
