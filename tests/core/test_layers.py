"""The package's layering, checked on the source (docs/architecture.md).

Every import in ``server/sessionwatch`` counts, wherever it is written: module level,
inside a function, or under ``if TYPE_CHECKING:``. A cycle is a cycle even when one
edge only runs at type-checking time, because the next refactoring turns it into a
run-time one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "server" / "sessionwatch"

# Lower ranks never import higher ones, and a folder is one layer: every module of
# ``live/`` ranks below every module of ``web/``, with no exception for one module. The
# engine decides (no framework); ``live`` pushes (the hub and the socket's parts); ``web``
# holds the doors and the composition root (``web/extension.py``, which wires the rest);
# the package facade re-exports it; ``service`` (the production service) and ``demo``
# (the demo apps) are applications of the library, side by side: neither imports the
# other; ``__main__`` runs the CLI.
RANKS: Mapping[str, int] = {
    "sessionwatch.core": 0,
    "sessionwatch.backends": 1,
    "sessionwatch.engine": 2,
    "sessionwatch.live": 3,
    "sessionwatch.web": 4,
    "sessionwatch": 5,
    "sessionwatch.service": 6,
    "sessionwatch.demo": 6,
    "sessionwatch.__main__": 7,
}
# The engine decides on plain facts: no web framework in it.
ENGINE_FORBIDDEN = ("quart", "werkzeug", "hypercorn", "granian", "uvicorn")
# Third-party or standard modules a core module must not import: frameworks, clients
# and anything that does I/O on its own.
CORE_FORBIDDEN = (
    "quart",
    "werkzeug",
    "redis",
    "hypercorn",
    "granian",
    "uvicorn",
    "prometheus_client",
    "websockets",
    "asyncio",
    "socket",
)


def module_name(path: Path, root: Path = PACKAGE_ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement anywhere in the file.
    Package-internal names resolve to the module file they load."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield (submodule if submodule in known else target), node.lineno


def import_graph(root: Path = PACKAGE_ROOT) -> dict[str, dict[str, int]]:
    """module -> {imported module (all of them, internal or not): first line}."""
    modules = package_modules(root)
    known = set(modules)
    graph: dict[str, dict[str, int]] = {}
    for name, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(name, path, known):
            edges.setdefault(target, line)
        graph[name] = edges
    return graph


def internal(graph: Mapping[str, Mapping[str, int]]) -> dict[str, set[str]]:
    return {m: {t for t in edges if t in graph and t != m} for m, edges in graph.items()}


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def rank(module: str) -> int:
    best = max((p for p in RANKS if module == p or module.startswith(p + ".")), key=len)
    return RANKS[best]


def unranked_folders(root: Path = PACKAGE_ROOT) -> list[str]:
    """Sub-packages of the package that are not a layer of :data:`RANKS` (a new folder
    must say where it sits)."""
    folders = sorted(p.parent for p in root.glob("*/__init__.py"))
    names = [module_name(folder / "__init__.py", root) for folder in folders]
    return [name for name in names if name not in RANKS]


def layer_violations(graph: Mapping[str, Mapping[str, int]]) -> list[str]:
    problems = []
    for module, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            if target in graph and target != module and rank(target) > rank(module):
                problems.append(f"{module}:{line} imports {target} (a higher layer)")
            top = target.split(".")[0]
            if rank(module) == 0 and top in CORE_FORBIDDEN:
                problems.append(f"{module}:{line} imports {target} (core does no I/O)")
            if rank(module) == RANKS["sessionwatch.engine"] and top in ENGINE_FORBIDDEN:
                problems.append(f"{module}:{line} imports {target} (the engine has no framework)")
            for application in ("sessionwatch.service", "sessionwatch.demo"):
                if (
                    target.startswith(application)
                    and not module.startswith(application)
                    and module != "sessionwatch.__main__"
                ):
                    problems.append(f"{module}:{line} imports {target} (-> {application})")
    return problems


PUBLIC_MODULES = frozenset({"sessionwatch", "sessionwatch.client"})


def public_api_violations(graph: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The demo is written as any app would be: the package's public API (the names
    ``sessionwatch`` exports, and ``sessionwatch.client``, the session API's client for
    upstream apps that the proxy demo's Flask app uses) and the demo's own modules."""
    problems = []
    for module, edges in sorted(graph.items()):
        if not module.startswith("sessionwatch.demo"):
            continue
        for target, line in sorted(edges.items()):
            if (
                target in graph
                and target not in PUBLIC_MODULES
                and not target.startswith("sessionwatch.demo")
            ):
                problems.append(f"{module}:{line} imports {target} (not the public API)")
    return problems


def test_the_package_is_found() -> None:
    graph = import_graph()
    for expected in (
        "sessionwatch",
        "sessionwatch.core.tokens",
        "sessionwatch.backends.redis",
        "sessionwatch.backends.redis_cluster",
        "sessionwatch.web.extension",
        "sessionwatch.engine.check",
        "sessionwatch.live.hub",
        "sessionwatch.service.cli",
    ):
        assert expected in graph
    # every module is in some layer
    assert all(rank(m) >= 0 for m in graph)


def test_no_import_cycles() -> None:
    assert cycles(internal(import_graph())) == []


def test_layers_only_import_downwards() -> None:
    assert layer_violations(import_graph()) == []


def test_every_folder_is_a_layer() -> None:
    assert unranked_folders() == []


def test_the_demo_uses_only_the_public_api() -> None:
    assert public_api_violations(import_graph()) == []


# The checks themselves, on small packages written here: each must catch its case.


def _write(root: Path, files: Mapping[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "sessionwatch" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "sessionwatch"


@pytest.mark.parametrize(
    "files",
    [
        # a function-local import closing the circle
        {
            "__init__.py": "",
            "web/__init__.py": "",
            "web/a.py": "from . import b\n",
            "web/b.py": "def f():\n    from .a import x\n",
        },
        # a TYPE_CHECKING import closing the circle
        {
            "__init__.py": "",
            "live/__init__.py": "",
            "live/a.py": "from .b import y\n",
            "live/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n",
        },
    ],
)
def test_cycle_check_catches(tmp_path: Path, files: Mapping[str, str]) -> None:
    root = _write(tmp_path, files)
    assert len(cycles(internal(import_graph(root)))) == 1


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        (
            {"__init__.py": "", "core/__init__.py": "", "core/a.py": "import redis.asyncio\n"},
            "core does no I/O",
        ),
        (
            {
                "__init__.py": "",
                "core/__init__.py": "",
                "core/a.py": "def f():\n    from quart import request\n",
            },
            "core does no I/O",
        ),
        (
            {
                "__init__.py": "",
                "core/__init__.py": "",
                "web/__init__.py": "",
                "core/a.py": "from ..web import routes\n",
                "web/routes.py": "",
            },
            "a higher layer",
        ),
        # a folder importing the folder above it (live -> web), even for one module
        (
            {
                "__init__.py": "",
                "live/__init__.py": "",
                "web/__init__.py": "",
                "live/endpoint.py": "from ..web.responses import error_response\n",
                "web/responses.py": "",
            },
            "a higher layer",
        ),
        (
            {
                "__init__.py": "",
                "engine/__init__.py": "",
                "live/__init__.py": "",
                "engine/check.py": "from ..live import hub\n",
                "live/hub.py": "",
            },
            "a higher layer",
        ),
        (
            {"__init__.py": "", "engine/__init__.py": "", "engine/a.py": "import quart\n"},
            "the engine has no framework",
        ),
        (
            {
                "__init__.py": "",
                "live/__init__.py": "",
                "service/__init__.py": "",
                "live/hub.py": "from ..service.metrics import M\n",
                "service/metrics.py": "",
            },
            "-> sessionwatch.service",
        ),
        (
            {
                "__init__.py": "",
                "demo/__init__.py": "",
                "service/__init__.py": "",
                "service/app.py": "from ..demo import create_demo_app\n",
            },
            "-> sessionwatch.demo",
        ),
    ],
)
def test_layer_check_catches(tmp_path: Path, files: Mapping[str, str], fragment: str) -> None:
    root = _write(tmp_path, files)
    problems = layer_violations(import_graph(root))
    assert problems and all(fragment in p or "higher layer" in p for p in problems)
    assert any(fragment in p for p in problems)


def test_folder_check_catches(tmp_path: Path) -> None:
    root = _write(tmp_path, {"__init__.py": "", "doors/__init__.py": "", "doors/a.py": ""})
    assert unranked_folders(root) == ["sessionwatch.doors"]


def test_public_api_check_catches(tmp_path: Path) -> None:
    root = _write(
        tmp_path,
        {
            "__init__.py": "",
            "core/__init__.py": "",
            "core/config.py": "",
            "service/__init__.py": "",
            "service/ops.py": "",
            "demo/__init__.py": "",
            "demo/app.py": "from .. import SessionWatch\nfrom ..core.config import S\n"
            "from ..service.ops import register_ops\n",
        },
    )
    problems = public_api_violations(import_graph(root))
    assert problems == [
        "sessionwatch.demo.app:2 imports sessionwatch.core.config (not the public API)",
        "sessionwatch.demo.app:3 imports sessionwatch.service.ops (not the public API)",
    ]
