"""The layers' arrows run one way: flows -> stages -> components; evaluation never imports training; no
import cycles. Read from the source (``import_graph``), so a new wrong-way import fails here, naming it."""

from __future__ import annotations

from tests.import_graph import Import, cycles, imports_of, modules, path_of

ORCHESTRATORS = {"flows", "prefect", "prefect_dask", "prefect_ray", "dvc"}
# The CLI's two flow commands reach the orchestrator here, lazily (``components/cli.py``): the only exception.
ALLOWED = {("components.cli", "_run_flow")}

def _all_imports() -> list[Import]:
    return [i for m in modules() for i in imports_of(m)]

def _where(found: list[Import]) -> list[str]:
    return [f"{path_of(i.source)}:{i.line} imports {i.target}" for i in found]

def test_no_import_cycles():
    assert cycles() == []

def test_components_do_not_know_the_orchestrators():
    wrong = [i for i in _all_imports() if i.source.startswith("components")
             and (i.target.split(".")[0] in ORCHESTRATORS) and (i.source, i.function) not in ALLOWED]
    assert not wrong, _where(wrong)

def test_only_the_cli_and_the_flows_call_the_stage_layer():
    wrong = [i for i in _all_imports() if i.target == "components.stages"
             and i.source not in ("components.cli",) and not i.source.startswith("flows")]
    assert not wrong, _where(wrong)

def test_evaluation_never_imports_training():
    wrong = [i for i in _all_imports() if i.source.startswith("components.evaluation")
             and i.target.startswith("components.training")]
    assert not wrong, _where(wrong)

def test_only_tracking_talks_to_mlflow():
    wrong = [i for i in _all_imports() if i.target == "mlflow" and not i.source.startswith("components.tracking")]
    assert not wrong, _where(wrong)

def test_the_graph_sees_a_cycle_and_a_wrong_way_import(tmp_path, monkeypatch):
    """The checks above can fail: a planted evaluation -> training -> evaluation loop is reported."""
    import tests.import_graph as graph

    planted = dict(graph.modules())
    for name, text in {"components.evaluation.planted": "from components.training.planted import x\n",
                       "components.training.planted": "from components.evaluation.planted import y\n"}.items():
        path = tmp_path / (name.replace(".", "_") + ".py")
        path.write_text(text)
        planted[name] = path
    monkeypatch.setattr(graph, "modules", lambda: planted)
    graph.imports_of.cache_clear()
    try:
        assert ["components.evaluation.planted", "components.training.planted"] in graph.cycles()
        assert any(i.target == "components.training.planted" for i in graph.imports_of("components.evaluation.planted"))
    finally:
        graph.imports_of.cache_clear()
