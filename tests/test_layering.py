"""Imports point one way: down the layers, never up, never in a circle.

Every module of ``cascade/``, ``analysis/``, ``pages/`` and ``app.py`` is parsed with ``ast``
(nothing is imported) and given a layer from ``LAYERS``, bottom to top:

0. core: the small top-level modules of ``cascade`` (config, run config, model, blocks, NGA,
   losses, metrics, FLOP counts, checkpoint, ...), the data config schema
   ``cascade/data/config.py``, the run-folder package ``cascade/runfolder/`` and the CLIP weights
   package ``cascade/weights/``;
1. data: ``cascade/data/``;
2. train: ``cascade/train/``;
3. commands and analysis: ``cascade/commands/``, ``cascade/{cli,evaluate,predict}.py``,
   ``cascade/bench/`` and ``analysis/`` (side by side: neither is above the other);
4. dashboard helpers: ``cascade/dashboard/`` (Streamlit-free, needs only ``cascade``) and
   ``pages/_analysis.py`` (the one pages module that needs ``analysis``);
5. pages: ``app.py`` and ``pages/``.

A module may import from its own layer and the layers below. The checks, each failing with a
list of ``file:line`` entries:

- no import points up a layer (imports at module level and inside functions alike);
- no ``from x import _name`` of another module's private name, and no import of another
  package's private module (a package's own private modules are its business);
- ``analysis`` imports nothing of ``cascade.dashboard``, and ``cascade`` imports nothing of
  ``analysis`` (``cascade`` reaches ``analysis`` only through the entry points in
  ``pyproject.toml``);
- no circle among module-level imports (``if TYPE_CHECKING:`` blocks do not run, so they
  do not count);
- imports sit at the module's top, so that its first lines show what it needs: a function
  imports for itself only a module of ``LOCAL_IMPORTS``, each there for a reason it gives.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cascade", "analysis", "pages")

CORE, DATA, TRAIN, COMMANDS, DASHBOARD, PAGES = range(6)
LAYER_NAMES = ("core", "data", "train", "commands/analysis", "dashboard helpers", "pages")

# (module or package, layer): the longest matching name decides; the one table of the layering
LAYERS: tuple[tuple[str, int], ...] = (
    ("cascade", CORE),
    ("cascade.data.config", CORE),
    ("cascade.runfolder", CORE),
    ("cascade.weights", CORE),
    ("cascade.data", DATA),
    ("cascade.train", TRAIN),
    ("cascade.commands", COMMANDS),
    ("cascade.cli", COMMANDS),
    ("cascade.__main__", COMMANDS),
    ("cascade.evaluate", COMMANDS),
    ("cascade.predict", COMMANDS),
    ("cascade.bench", COMMANDS),
    ("analysis", COMMANDS),
    ("cascade.dashboard", DASHBOARD),
    ("pages._analysis", DASHBOARD),
    ("pages", PAGES),
    ("app", PAGES),
)


# Modules a function may import for itself instead of at its module's top, and why (the one list)
LOCAL_IMPORTS: dict[str, str] = {
    "pandas": "heavy: only tables, figures and the dashboard use it",
    "plotly": "heavy: only figures use it",
    "streamlit": "heavy, and only the dashboard runs it",
    "kaleido": "heavy: only figure export uses it",
    "choreographer": "kaleido's browser driver: only figure export meets its errors",
    "torch._dynamo": "heavy: only checking a torch.compile backend needs it",
    "transformers": "heavy and optional: only Hugging Face weights need it",
    "torch_cka": "optional (the bench extra): may be absent",
    "scipy": "optional (the test extra): may be absent",
    "fcntl": "POSIX only: absent on Windows",
    "analysis.figures": "imports plotly at its top: the analysis subcommands load it only to draw",
    "analysis.run_figures": "imports plotly and pandas at its top: imported only to draw",
    "analysis.explain_figure": "imports plotly at its top: imported only to draw",
    "analysis.style": "imports plotly at its top: imported only to draw",
}


@dataclass(frozen=True)
class Import:
    source: str          # importing module
    target: str          # imported module (one of ours)
    name: str | None     # the name taken by ``from target import name`` (None for a module import)
    line: int
    top: bool            # runs when the module is imported (not inside a function or TYPE_CHECKING)

    def where(self, modules: dict[str, Path]) -> str:
        return f"{modules[self.source].relative_to(ROOT)}:{self.line}"


def find_modules() -> dict[str, Path]:
    files = [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))] + [ROOT / "app.py"]
    modules = {}
    for path in files:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str) -> int:
    best = max((name for name, _ in LAYERS if module == name or module.startswith(name + ".")), key=len, default=None)
    assert best is not None, f"{module}: no layer in LAYERS; add it to the table"
    return dict(LAYERS)[best]


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(body: list[ast.stmt], top: bool):
    """(import node, runs-at-import) for every import statement under ``body``."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, top
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(node.body, False)
        elif isinstance(node, ast.If) and _is_type_checking(node):
            yield from _walk(node.body, False)
            yield from _walk(node.orelse, top)
        else:
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _walk(getattr(node, field, None) or [], top)
            if isinstance(node, ast.ClassDef):
                continue


def imports_of(module: str, modules: dict[str, Path]) -> list[Import]:
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node, top in _walk(ast.parse(path.read_text(encoding="utf-8")).body, True):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.append(Import(module, alias.name, None, node.lineno, top))
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            base = ".".join(parts + ([base] if base else []))
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if sub in modules:
                found.append(Import(module, sub, None, node.lineno, top))
            elif base in modules:
                found.append(Import(module, base, alias.name, node.lineno, top))
    return found


def all_imports() -> tuple[dict[str, Path], list[Import]]:
    modules = find_modules()
    return modules, [imp for m in modules for imp in imports_of(m, modules)]


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _report(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n  " + "\n  ".join(sorted(problems))


def test_every_module_has_a_layer():
    modules = find_modules()
    assert "cascade.model" in modules and "analysis" in modules and "app" in modules
    for module in modules:
        layer_of(module)


def test_layer_table_places_the_known_modules():
    assert layer_of("cascade.model") == CORE
    assert layer_of("cascade.data.config") == CORE
    assert layer_of("cascade.runfolder.status") == CORE
    assert layer_of("cascade.descriptions") == layer_of("cascade.text_cache") == CORE
    assert layer_of("cascade.data.shards") == DATA
    assert layer_of("cascade.train.loop") == TRAIN
    assert layer_of("cascade.evaluate") == layer_of("analysis.cka") == COMMANDS
    assert layer_of("cascade.bench.lafter") == COMMANDS
    assert layer_of("pages._analysis") == layer_of("cascade.dashboard.runs") == DASHBOARD
    assert layer_of("pages.overview") == layer_of("app") == PAGES


def test_no_import_points_up_a_layer():
    modules, imports = all_imports()
    problems = [
        f"{imp.where(modules)}: {imp.source} ({LAYER_NAMES[layer_of(imp.source)]}) imports {imp.target} "
        f"({LAYER_NAMES[layer_of(imp.target)]})"
        for imp in imports if layer_of(imp.target) > layer_of(imp.source)
    ]
    assert not problems, _report(problems, "imports point up a layer")


def test_no_module_takes_another_modules_private_name():
    modules, imports = all_imports()
    problems = []
    for imp in imports:
        if imp.name is not None and _private(imp.name) and imp.target != imp.source:
            problems.append(f"{imp.where(modules)}: {imp.source} takes {imp.target}.{imp.name}")
        # a private module belongs to its package: importers from outside that package are reaching in
        # (app.py runs the pages through st.navigation and draws their sidebar: it is one of them)
        source = "pages.app" if imp.source == "app" else imp.source
        parts = imp.target.split(".")
        for i, part in enumerate(parts):
            owner = ".".join(parts[:i])
            if _private(part) and not (source == owner or source.startswith(owner + ".")):
                problems.append(f"{imp.where(modules)}: {imp.source} imports {imp.target}, private to {owner}")
                break
    assert not problems, _report(problems, "imports of private names")


def test_analysis_and_cascade_stay_apart():
    modules, imports = all_imports()
    problems = [
        f"{imp.where(modules)}: {imp.source} imports {imp.target}"
        for imp in imports
        if (imp.source.split(".")[0] == "analysis" and imp.target.startswith("cascade.dashboard"))
        or (imp.source.split(".")[0] == "cascade" and imp.target.split(".")[0] == "analysis")
    ]
    assert not problems, _report(problems, "imports between analysis and cascade's dashboard, or cascade and analysis")


def import_circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    circles.append(sorted(component))
    return circles


def shortest_circle(start: str, edges: dict[str, set[str]]) -> list[str]:
    """The shortest import path from ``start`` back to itself (breadth-first), ``[start, ..., start]``."""
    came_from: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges.get(node, ())):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(came_from[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in came_from:
                    came_from[child] = node
                    following.append(child)
        frontier = following
    return [start]


def test_import_circles_are_found():
    edges = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": {"a", "b"}, "e": {"e"}, "f": {"a"}}
    assert import_circles(edges) == [["a", "b", "c", "d"]]
    assert shortest_circle("a", edges) == ["a", "b", "c", "a"]
    assert shortest_circle("d", edges) == ["d", "b", "d"]


def test_no_import_circles():
    modules, imports = all_imports()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    lines: dict[tuple[str, str], str] = {}
    for imp in imports:
        if imp.top and imp.target != imp.source:
            edges[imp.source].add(imp.target)
            lines.setdefault((imp.source, imp.target), imp.where(modules))
    problems = []
    for circle in import_circles(edges):
        path = shortest_circle(circle[0], edges)
        ties = "; ".join(f"{lines[(a, b)]} -> {b}" for a, b in zip(path, path[1:]))
        problems.append(f"{len(circle)} modules ({', '.join(circle)}), e.g. {' -> '.join(path)}: {ties}")
    assert not problems, _report(problems, "import circles")


def function_imports(module: str, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """``(imported module, line)`` of every import made inside a function of ``module``."""
    path = modules[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import) and in_function:
                found.extend((alias.name, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and in_function:
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                names = {base if child.module or f"{base}.{a.name}" not in modules else f"{base}.{a.name}"
                         for a in child.names}
                found.extend((name, child.lineno) for name in sorted(names))
            else:
                visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _may_import_locally(name: str) -> bool:
    return any(name == allowed or name.startswith(allowed + ".") for allowed in LOCAL_IMPORTS)


def test_function_imports_are_found(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "import json\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from pandas import DataFrame\n"
        "def f():\n"
        "    import plotly.graph_objects as go\n"
        "    from ..model import build_model\n"
        "class A:\n"
        "    def g(self):\n"
        "        from . import sub, helper\n"
        "        return lambda: __import__('x')\n",
        encoding="utf-8")
    modules = {"pkg.inner.mod": source, "pkg.inner.sub": source}
    assert function_imports("pkg.inner.mod", modules) == [
        ("plotly.graph_objects", 6), ("pkg.model", 7), ("pkg.inner", 10), ("pkg.inner.sub", 10)]
    assert _may_import_locally("plotly.graph_objects") and _may_import_locally("torch._dynamo")
    assert not _may_import_locally("torch") and not _may_import_locally("plotlyx")


def test_functions_import_only_heavy_or_optional_modules():
    modules = find_modules()
    problems = [
        f"{modules[module].relative_to(ROOT)}:{line}: {module} imports {name} inside a function"
        for module in modules for name, line in function_imports(module, modules) if not _may_import_locally(name)
    ]
    assert not problems, _report(problems, "imports inside functions, of modules not in LOCAL_IMPORTS (move them up)")
