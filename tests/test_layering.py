"""The layering promised in ARCHITECTURE.md, checked on the import statements of every module.

Every ``import`` counts, also the ones inside functions (a lazy import is still a dependency):

* packages depend one way: ``ui → realtime → kernels`` and ``training → realtime, kernels``; only the
  command line (``ui.cli``, ``ui.cli_training``) may import ``training``;
* Qt (PyQt6) is imported only in ``ui/``;
* the live app (every ``ui`` module but the command line) reaches no ``training`` module, even
  through other modules;
* only benchmarks and the tools that run them import benchmark modules;
* no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("kernels", "realtime", "training", "ui")

# What each package may import from the project (itself included).
ALLOWED = {
    "kernels": {"kernels"},
    "realtime": {"realtime", "kernels"},
    "training": {"training", "realtime", "kernels"},
    "ui": {"ui", "realtime", "kernels"},
}
COMMAND_LINE = {"ui.cli", "ui.cli_training"}  # ui → training, for the training subcommands
BENCHMARK_RUNNERS = {"ui.cli", "kernels.check"}  # `stylecam bench`, `make kernels-check`
QT = {"PyQt6", "PyQt5", "PySide6", "PySide2"}


def is_benchmark(module: str) -> bool:
    """Benchmark modules: ``*.benchmarks`` and what is under it, and ``*_bench``."""
    parts = module.split(".")
    return "benchmarks" in parts or parts[-1].endswith("_bench")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_sources(root: Path = ROOT) -> dict[str, str]:
    """Dotted module name -> source of every module in the project's packages."""
    return {module_name(p, root): p.read_text(encoding="utf-8")
            for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def imports_of(module: str, source: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """Every module ``source`` imports, absolute names; ``from pkg import mod`` counts as ``pkg.mod``
    when ``pkg.mod`` is one of the ``known`` modules."""
    known = set(known)
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    tree = ast.parse(source)
    type_only = {id(n) for block in ast.walk(tree) if _is_type_checking_block(block)
                 for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in type_only:  # annotations only: no import at run time, so no dependency
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{alias.name}" for alias in node.names} & known
            found.update(subs or {target})
    return found


def _is_type_checking_block(node: ast.AST) -> bool:
    """``if TYPE_CHECKING:`` / ``if typing.TYPE_CHECKING:``."""
    if not isinstance(node, ast.If):
        return False
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def import_graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """Module -> the modules it imports (project modules and third-party top-level names)."""
    packages = {m for m in sources if "." not in m} | {
        m for m in sources if any(k.startswith(m + ".") for k in sources)}
    return {m: imports_of(m, src, m in packages, sources) for m, src in sources.items()}


def _in_project(name: str, modules: Iterable[str]) -> str | None:
    """The project module ``name`` refers to (itself or the nearest enclosing package), or None."""
    modules = set(modules)
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted; a package importing its own
    submodules from ``__init__`` is not a cycle unless the submodule imports the package back."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w == v or w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _reachable(graph: Mapping[str, set[str]], start: str) -> dict[str, str]:
    """Modules reachable from ``start`` -> the module that imports it on one path."""
    via: dict[str, str] = {}
    todo = [start]
    while todo:
        v = todo.pop()
        for w in graph.get(v, ()):
            if w in graph and w not in via and w != start:
                via[w] = v
                todo.append(w)
    return via


def violations(sources: Mapping[str, str]) -> list[str]:
    """Every broken rule, one line each (empty when the layering holds)."""
    raw = import_graph(sources)
    graph = {m: {p for name in names if (p := _in_project(name, sources)) and p != m} for m, names in raw.items()}
    out: list[str] = []
    for m in sorted(raw):
        pkg = m.split(".")[0]
        for name in sorted(raw[m]):
            top = name.split(".")[0]
            if top in QT and pkg != "ui":
                out.append(f"{m} imports {name}: Qt belongs in ui/ only")
        for dep in sorted(graph[m]):
            dep_pkg = dep.split(".")[0]
            if dep_pkg not in ALLOWED.get(pkg, {pkg}) and not (m in COMMAND_LINE and dep_pkg == "training"):
                out.append(f"{m} imports {dep}: {pkg} must not depend on {dep_pkg}")
            if is_benchmark(dep) and not is_benchmark(m) and m not in BENCHMARK_RUNNERS:
                out.append(f"{m} imports {dep}: live code must not import benchmark modules")
    for m in sorted(graph):
        if m.split(".")[0] != "ui" or m in COMMAND_LINE or is_benchmark(m):
            continue
        via = _reachable(graph, m)
        for dep in sorted(d for d in via if d.split(".")[0] == "training"):
            chain = [dep]
            while chain[-1] != m:
                chain.append(via[chain[-1]])
            out.append(f"live app module {m} reaches {dep}: {' → '.join(reversed(chain))}")
            break
    out += [f"import cycle: {' ↔ '.join(group)}" for group in cycles(graph)]
    return out


# ---------------------------------------------------------------------------------------------- tests
def test_project_keeps_its_layering() -> None:
    sources = project_sources()
    assert {"realtime.pipeline", "kernels.reference", "ui.cli", "training.distill"} <= sources.keys()
    assert violations(sources) == []


def test_lazy_and_relative_imports_are_resolved() -> None:
    known = {"realtime", "realtime.sinks", "realtime.sources", "kernels", "kernels.reference"}
    src = "from .sinks import Recorder\nfrom kernels import reference\ndef f():\n    import numpy.linalg\n"
    assert imports_of("realtime.sources", src, False, known) == {"realtime.sinks", "kernels.reference",
                                                                 "numpy.linalg"}
    assert imports_of("realtime", "from . import sources\n", True, known) == {"realtime.sources"}


LAYERED = {
    "kernels": "", "kernels.reference": "import torch\n",
    "realtime": "", "realtime.pipeline": "from kernels import reference\n",
    "realtime.benchmarks": "", "realtime.benchmarks.pipeline": "from realtime.pipeline import x\n",
    "training": "", "training.distill": "from realtime import pipeline\n",
    "ui": "", "ui.main_window": "from PyQt6.QtWidgets import QWidget\nfrom realtime.pipeline import x\n",
    "ui.cli": "from training import distill\nfrom realtime.benchmarks import pipeline\n",
}


@pytest.mark.parametrize("module,source,message", [
    ("realtime.pipeline", "def f():\n    from ui import main_window\n", "realtime must not depend on ui"),
    ("kernels.reference", "from realtime.pipeline import x\n", "kernels must not depend on realtime"),
    ("realtime.pipeline", "from PyQt6 import QtCore\n", "Qt belongs in ui/ only"),
    ("training.distill", "import PyQt6.QtGui\n", "Qt belongs in ui/ only"),
    ("ui.main_window", "from training.distill import x\n", "ui must not depend on training"),
    ("ui.main_window", "from ui.cli import main\n", "live app module ui.main_window reaches training.distill"),
    ("realtime.pipeline", "from realtime.benchmarks.pipeline import run\n", "must not import benchmark modules"),
    ("ui.main_window", "import ui.window_bench\n", "must not import benchmark modules"),
    ("kernels.reference", "from . import reference\nfrom kernels import dispatch\n", "import cycle"),
])
def test_checker_catches_a_broken_rule(module: str, source: str, message: str) -> None:
    sources = dict(LAYERED, **{"ui.window_bench": "", "kernels.dispatch": "from kernels import reference\n"})
    assert violations(sources) == []
    sources[module] = source
    found = violations(sources)
    assert any(message in line for line in found), found


def test_type_checking_imports_are_no_dependency() -> None:
    sources = {"realtime": "", "realtime.sinks": "from realtime import sources\n",
               "realtime.sources": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from realtime import sinks\n"}
    assert violations(sources) == []
    sources["realtime.sources"] += "else:\n    from realtime import sinks\n"
    assert violations(sources) == ["import cycle: realtime.sinks ↔ realtime.sources"]


def test_checker_names_both_ends_of_a_cycle() -> None:
    sources = dict(LAYERED, **{"realtime.sources": "from realtime.sinks import Recorder\n",
                               "realtime.sinks": "def bench():\n    from realtime import sources\n"})
    assert violations(sources) == ["import cycle: realtime.sinks ↔ realtime.sources"]
