"""The project's import graph, read from the source (nothing is imported): who imports whom, where.

Shared by ``test_architecture.py`` (cycles, arrows that run the wrong way) and ``test_dvc_deps.py`` (the
code each ``dvc.yaml`` stage runs). Every import counts, also one inside a function or under
``TYPE_CHECKING``: a lazy import still ties two modules together.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("components", "flows")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module (a project module, or the top-level name of a library)
    function: str | None  # the enclosing top-level function, None at module level
    line: int
    typing_only: bool = False  # under ``if TYPE_CHECKING:``: ties the modules, runs nothing


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _resolve(name: str, known: dict[str, Path]) -> str:
    """A project module as itself; anything else as its top-level package (``torch.nn`` -> ``torch``)."""
    return name if name in known else name.split(".")[0]


def _targets(node: ast.AST, module: str, known: dict[str, Path]) -> list[str]:
    if isinstance(node, ast.Import):
        return [_resolve(a.name, known) for a in node.names]
    assert isinstance(node, ast.ImportFrom)
    if node.level:  # relative: from the module's package
        package = module if known[module].name == "__init__.py" else module.rpartition(".")[0]
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        origin = f"{base}.{node.module}" if node.module else base
    else:
        origin = node.module or ""
    # ``from pkg import sub`` imports the submodule; ``from pkg import name`` the package itself.
    return [f"{origin}.{a.name}" if f"{origin}.{a.name}" in known else _resolve(origin, known) for a in node.names]


@cache
def imports_of(module: str) -> tuple[Import, ...]:
    known = modules()
    tree = ast.parse(known[module].read_text(), filename=str(known[module]))
    found: list[Import] = []
    for top in tree.body:
        function = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
        typing_only = isinstance(top, ast.If) and getattr(top.test, "id", "") == "TYPE_CHECKING"
        for node in ast.walk(top):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found += [Import(module, t, function, node.lineno, typing_only) for t in _targets(node, module, known)]
    return tuple(found)


def project_edges(*, runtime: bool = False) -> dict[str, set[str]]:
    """Project module -> the project modules it imports (``runtime``: leave out ``TYPE_CHECKING`` imports)."""
    known = modules()
    return {m: {i.target for i in imports_of(m) if i.target in known and i.target != m
                and not (runtime and i.typing_only)} for m in known}


def parents(module: str) -> list[str]:
    """The packages whose ``__init__`` runs before ``module`` does."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(start: set[str], skip: Callable[[str], bool] = lambda m: False) -> set[str]:
    """Every project module that importing ``start`` runs: their imports (not the ``TYPE_CHECKING`` ones),
    transitively, and their packages; a module for which ``skip`` is true is neither counted nor followed."""
    edges, seen, todo = project_edges(runtime=True), set(), list(start)
    while todo:
        m = todo.pop()
        if m in seen or m not in edges or skip(m):
            continue
        seen.add(m)
        todo += [*edges[m], *parents(m)]
    return seen


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    edges, index, low, stack, on_stack, found = project_edges(), {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def path_of(module: str) -> str:
    return modules()[module].relative_to(ROOT).as_posix()
