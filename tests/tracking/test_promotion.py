"""The promotion gate against a real MLflow registry on SQLite (components.tracking.promotion): versions
registered with their evaluation, the champion moved or kept, the decision recorded on the version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow import MlflowClient

from components.config import ModelConfig, PromoteConfig, TrackingConfig
from components.io import write_jsonl
from components.tracking import PARENT_RUN_ENV, stage_run
from components.tracking.promotion import promote_challenger
from components.tracking.registry import register_model
from tests.evaluation.test_promotion import CHANCE, GOOD, rows

CFG = PromoteConfig(require_learning=False, bootstrap_samples=300)
NAME = "mllm4d-gate"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)


def register(tmp_path: Path, predictions: list[dict], tag: str) -> tuple[str, int]:
    """A version whose run logged an evaluation folder, as ``stages.evaluate`` does; returns (uri, version)."""
    model_dir, evaluation = tmp_path / f"model-{tag}", tmp_path / f"eval-{tag}"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    write_jsonl(evaluation / "predictions.jsonl", predictions)
    (evaluation / "metrics.json").write_text(json.dumps({"headline": None}))
    with stage_run(f"evaluate_{tag}", TrackingConfig(experiment="gate-test"), tmp_path) as run:
        run.log_artifacts(evaluation, "evaluation")
        version = register_model(run, model_dir, model_cfg=ModelConfig(), max_new_tokens=8, batch_size=1, name=NAME,
                                 alias="challenger", tags={})
    return run.tracking_uri, version


def champion(uri: str) -> str:
    return str(MlflowClient(uri).get_model_version_by_alias(NAME, "champion").version)


def test_gate_moves_the_champion_only_for_a_better_model(tmp_path: Path) -> None:
    uri, _ = register(tmp_path, rows(CHANCE, seed=1), "v1")
    first = promote_challenger(uri, NAME, CFG)
    assert first.decision.promote and first.champion is None and champion(uri) == "1"

    register(tmp_path, rows(GOOD, seed=2), "v2")
    better = promote_challenger(uri, NAME, CFG)
    assert better.decision.promote and str(better.champion.version) == "1" and champion(uri) == "2"
    client = MlflowClient(uri)
    version = client.get_model_version(NAME, "2")
    assert version.tags["mllm4d.promotion"] == "promoted" and version.tags["mllm4d.promotion.compared_with"] == "1"
    assert float(version.tags["mllm4d.promotion.improvement"]) > 0.4
    assert "| translational |" in version.description

    register(tmp_path, rows(CHANCE, seed=3), "v3")
    worse = promote_challenger(uri, NAME, CFG)
    assert not worse.decision.promote and champion(uri) == "2"
    rejected = client.get_model_version(NAME, "3")
    assert rejected.tags["mllm4d.promotion"] == "rejected" and "lower bound" in rejected.tags["mllm4d.promotion.reasons"]

    # a dry run decides and changes nothing
    register(tmp_path, rows(GOOD, seed=4), "v4")
    lenient = PromoteConfig(require_learning=False, bootstrap_samples=300, margin=-1.0)  # v4 would pass
    dry = promote_challenger(uri, NAME, lenient, dry_run=True)
    assert dry.decision.promote and champion(uri) == "2"
    assert "mllm4d.promotion" not in client.get_model_version(NAME, "4").tags
    # a dry run on an unregistered candidate's answers: compared with the champion, nothing registered
    candidate = promote_challenger(uri, NAME, CFG, dry_run=True, challenger_rows=(rows(CHANCE, seed=6), {}))
    assert candidate.challenger is None and str(candidate.champion.version) == "2"
    assert not candidate.decision.promote and "the candidate" in candidate.summary
    assert len(client.search_model_versions(f"name='{NAME}'")) == 4


def test_champion_on_other_records_is_evaluated_again(tmp_path: Path) -> None:
    uri, _ = register(tmp_path, rows(CHANCE, clips=30, seed=1), "v1")
    promote_challenger(uri, NAME, CFG)
    register(tmp_path, rows(GOOD, seed=2), "v2")  # 40 clips: the bench grew since the champion's evaluation
    with pytest.raises(ValueError, match="other bench records"):
        promote_challenger(uri, NAME, CFG)
    asked = []

    def reevaluate(version, challenger_rows):
        asked.append(str(version.version))
        return rows(CHANCE, seed=5)  # the champion's answers on the challenger's 40 clips

    promotion = promote_challenger(uri, NAME, CFG, reevaluate=reevaluate)
    assert asked == ["1"] and promotion.decision.promote and champion(uri) == "2"


def test_no_challenger_is_a_clear_error(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(ValueError, match="no @challenger"):
        promote_challenger(uri, NAME, CFG)


def test_champion_model_is_evaluated_on_the_challengers_records(tmp_path: Path, smoke_params, smoke_curated,
                                                                tiny_base: Path) -> None:
    """The real re-evaluation: the champion's registered model (downloaded with its inference settings) answers
    the challenger's bench records, and the gate compares the two on exactly those."""
    from components.curation.schema import read_records
    from components.evaluation.harness import evaluate as run_harness
    from components.models import load_model
    from components.models.generation import make_generate_fn
    from components.stages import _champion_on

    curated, _ = smoke_curated
    bench = read_records(curated / "bench.jsonl", split="bench")[:6]
    model, processor = load_model(tiny_base, smoke_params.model)
    generate = make_generate_fn(model, processor, smoke_params.model, max_new_tokens=8)
    evaluated = run_harness(bench, generate, batch_size=2, blind_baseline=False, shuffled_baseline=False,
                            n_boot=100, progress=False).predictions

    def register_tiny(predictions: list[dict], tag: str) -> str:
        evaluation = tmp_path / f"eval-{tag}"
        write_jsonl(evaluation / "predictions.jsonl", predictions)
        (evaluation / "metrics.json").write_text(json.dumps({"headline": None}))
        with stage_run(f"evaluate_{tag}", TrackingConfig(experiment="gate-test"), tmp_path) as run:
            run.log_artifacts(evaluation, "evaluation")
            register_model(run, tiny_base, model_cfg=smoke_params.model, max_new_tokens=8, batch_size=2, name=NAME,
                           tags={})
        return run.tracking_uri

    lenient = PromoteConfig(metric="overall", require_learning=False, min_format_valid=0.0, margin=-1.0,
                            bootstrap_samples=100)
    uri = register_tiny(evaluated[:3], "v1")  # the champion saw 3 records
    promote_challenger(uri, NAME, lenient)
    register_tiny(evaluated, "v2")  # the challenger: the same model on 6
    promotion = promote_challenger(uri, NAME, lenient, reevaluate=_champion_on(smoke_params, curated, uri))
    # the same weights with the same settings on the same records: the same answers, improvement exactly 0
    assert promotion.decision.champion == promotion.decision.challenger
    assert promotion.decision.improvement["value"] == 0.0 and promotion.decision.promote
