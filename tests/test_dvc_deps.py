"""Every ``dvc.yaml`` stage declares the code and the params its command really uses, so that a change
re-runs what it affects and ``dvc repro`` never thinks nothing changed when something did.

A stage's command (``mllm4d <command>``) runs one handler of ``components/cli.py``, which calls functions
of ``components/stages.py``; those import their components inside the function. The code a stage runs is
the import closure of those functions (``import_graph.closure``): each module in it must lie under one of
the stage's ``deps``. The params it reads are the ``params.<section>...`` attributes those functions touch:
each leaf of the ``Params`` dataclasses under them must be declared (a section, or the leaf itself).

Not counted, on purpose: ``components/tracking`` (what is logged to MLflow, never a stage's output),
``components/cli.py`` and ``components/env.py`` (argument parsing and quiet library defaults) and the
``tracking`` params.
"""

from __future__ import annotations

import ast
import dataclasses
import shlex
import typing

import pytest
import yaml

from components.config import Params
from tests.import_graph import ROOT, closure, imports_of, modules, path_of

NOT_OUTPUT_CODE = ("components.tracking", "components.cli", "components.env")
NOT_OUTPUT_PARAMS = ("tracking",)
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _body(stage: dict) -> dict:
    return stage.get("do", stage)


def _command(stage: dict) -> str:
    argv = shlex.split(_body(stage)["cmd"])
    assert argv[0] == "mllm4d", argv
    args = iter(argv[1:])
    for arg in args:
        if arg in ("--params", "-S", "--set"):
            next(args)
        elif not arg.startswith("-"):
            return arg
    raise AssertionError(f"no command in {argv}")


def _functions(module: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse(modules()[module].read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _handler(command: str) -> ast.FunctionDef:
    tree = ast.parse(modules()["components.cli"].read_text())
    table = next(n.value for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "HANDLERS")
    names = {k.value: v.id for k, v in zip(table.keys, table.values, strict=True)}
    return _functions("components.cli")[names[command]]


def stage_functions(command: str) -> set[str]:
    """The ``components.stages`` functions a command runs: those its handler calls as ``stages().f``, and the
    stages.py helpers they call, transitively."""
    called = {n.attr for n in ast.walk(_handler(command)) if isinstance(n, ast.Attribute)
              and isinstance(n.value, ast.Call) and getattr(n.value.func, "id", "") == "stages"}
    helpers, todo = _functions("components.stages"), list(called)
    while todo:
        for node in ast.walk(helpers[todo.pop()]):
            name = getattr(node, "func", None)
            if isinstance(name, ast.Name) and name.id in helpers and name.id not in called:
                called.add(name.id)
                todo.append(name.id)
    return called


def stage_code(command: str) -> set[str]:
    """``components/stages.py`` and the closure of what it imports at module level and in the command's functions
    (its other functions' imports belong to other stages)."""
    functions = stage_functions(command)
    start = {i.target for i in imports_of("components.stages") if not i.typing_only
             and (i.function is None or i.function in functions)}
    return closure(start & set(modules()), skip=_exempt) | {"components.stages"}


def _exempt(module: str) -> bool:
    # ``components/__init__.py`` too: a docstring, whose package every stage imports
    return module in (*NOT_OUTPUT_CODE, "components") or module.startswith(tuple(f"{e}." for e in NOT_OUTPUT_CODE))


def _chains(node: ast.AST) -> set[str]:
    """The ``params.a.b`` attribute chains in ``node``, each at its full length, as "a.b"."""
    inner = {id(n.value) for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    found = set()
    for n in ast.walk(node):
        if not isinstance(n, ast.Attribute) or id(n) in inner:
            continue
        parts = []
        while isinstance(n, ast.Attribute):
            parts.append(n.attr)
            n = n.value
        if isinstance(n, ast.Name) and n.id == "params":
            found.add(".".join(reversed(parts)))
    return found


def _leaves(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        kind = hints[f.name]
        out += _leaves(kind, key + ".") if dataclasses.is_dataclass(kind) else [key]
    return out


def _leaves_under(chain: str) -> list[str]:
    """The leaf params under ``chain`` ("sft", "sft.gate", "curation.workers")."""
    every = _leaves(Params)
    return [leaf for leaf in every if leaf == chain or leaf.startswith(chain + ".")] or [chain]


def stage_params(command: str) -> set[str]:
    helpers = _functions("components.stages")
    chains = {c for f in stage_functions(command) for c in _chains(helpers[f])}
    return {leaf for c in chains if c.split(".")[0] not in NOT_OUTPUT_PARAMS for leaf in _leaves_under(c)}


def _covered(item: str, declared: list[str], sep: str) -> bool:
    return any(item == d or item.startswith(d + sep) for d in declared)


def _declared_deps(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in _body(stage).get("deps", [])]


CODE_STAGES = sorted(name for name, stage in STAGES.items() if _command(stage) != "compare")


@pytest.mark.parametrize("name", CODE_STAGES)
def test_the_stage_declares_the_code_it_runs(name):
    stage = STAGES[name]
    declared = _declared_deps(stage)
    missing = sorted(path_of(m) for m in stage_code(_command(stage)) if not _covered(path_of(m), declared, "/"))
    assert not missing, f"dvc.yaml stage {name!r} runs code it does not declare in deps: {missing}"


@pytest.mark.parametrize("name", CODE_STAGES)
def test_the_stage_declares_the_params_it_reads(name):
    stage = STAGES[name]
    declared = [p for p in _body(stage).get("params", []) if isinstance(p, str)]
    missing = sorted(p for p in stage_params(_command(stage)) if not _covered(p, declared, "."))
    assert not missing, f"dvc.yaml stage {name!r} reads params it does not declare: {missing}"


def test_the_check_sees_what_a_stage_runs():
    """Not vacuous: the closures hold the modules the stages are known to run."""
    assert "components.time_encoding" in stage_code("teacher")
    assert {"components.curation.stereo", "components.models.inputs"} <= stage_code("teacher")
    assert "components.evaluation.checkpoint" in stage_code("sft")  # its training gate answers bench records
    assert not any(m.startswith("components.training") for m in stage_code("evaluate"))
    assert "curation.stereo.block_size" in stage_params("teacher")
    assert {"sft.max_steps", "model.tiny.hidden_size"} <= stage_params("sft")
