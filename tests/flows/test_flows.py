"""The Prefect flows under a real (ephemeral, test-harness) Prefect server, MLflow on SQLite."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient
from prefect.artifacts import Artifact
from prefect.testing.utilities import prefect_test_harness

from components.quality import GateFailed
from tests.conftest import SMOKE


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLLM4D_PARENT_RUN_ID", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return uri, [f"tracking.tracking_uri={uri}", f"tracking.artifact_location={tmp_path / 'mlartifacts'}"]


def test_pipeline_flow_curates_trains_evaluates_and_tracks(tmp_path, tracking):
    from flows.pipeline import pipeline

    uri, overrides = tracking
    summary = pipeline(params_path=str(SMOKE), overrides=overrides, data_root=str(tmp_path / "data"),
                       reports_root=str(tmp_path / "reports"), models_root=str(tmp_path / "models"))
    assert "MLflow parent run" in summary
    assert all(f"| {name} |" in summary for name in ("zero_shot", "sft", "p4d", "grpo", "blind (grpo)", "random",
                                                     "shuffled (sft)", "text-only trained (sft_text_only)"))
    comparison = (tmp_path / "reports/comparison.md").read_text()
    assert "| random |" in comparison and "- **sft**: " in comparison  # the learning headline with its interval
    sft_metrics = json.loads((tmp_path / "reports/eval/sft/metrics.json").read_text())
    assert all(sft_metrics[k] is not None for k in ("blind", "shuffled", "text_only", "random", "headline"))
    assert sft_metrics["headline"]["stronger_control"] in ("shuffled", "text_only")
    text_only = json.loads((tmp_path / "reports/eval/sft_text_only/metrics.json").read_text())
    assert text_only["input"] == "blank frames" and text_only["blind"] is None and text_only["shuffled"] is None
    gate = json.loads((tmp_path / "reports/quality/gate_report.json").read_text())
    assert gate["success"] is True
    assert json.loads((tmp_path / "reports/quality/prior_report.json").read_text())["success"] is True
    assert (tmp_path / "data/curated/bench.jsonl").stat().st_size > 0
    # the DVC stages' metrics files too, and they describe this run's data
    stats = json.loads((tmp_path / "data/curated/stats.json").read_text())
    curation = json.loads((tmp_path / "reports/curation.json").read_text())
    assert curation["records.sft"] == stats["records"]["sft"]
    assert json.loads((tmp_path / "reports/scenes.json").read_text())["clips"] > 0
    assert set(json.loads((tmp_path / "reports/teacher.json").read_text())) == {"heldout", "baselines"}

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mllm4d").experiment_id])
    parents = [r for r in runs if r.data.tags.get("mllm4d.pipeline") == "pipeline"]
    assert len(parents) == 1
    children = {r.data.tags["mllm4d.stage"]: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert set(children) == {"scenes", "curate", "validate_data", "prior_gate", "base_model", "sft", "sft_text_only",
                             "teacher", "teacher_targets", "p4d", "grpo", "evaluate_sft_text_only", "evaluate_zero_shot",
                             "evaluate_sft", "evaluate_p4d", "evaluate_grpo", "promote"}
    for stage in ("sft", "sft_text_only", "p4d", "grpo"):
        assert children[stage].data.metrics["gate_success"] == 1.0, stage
    assert {"p4d/ld", "p4d/depth", "p4d/flow"} <= set(children["p4d"].data.metrics)
    assert {"rewards/accuracy/mean", "rewards/format/mean", "kl"} <= set(children["grpo"].data.metrics)
    assert any(k.startswith("heldout.") for k in children["teacher"].data.metrics)
    sft_logged = children["sft"].data.metrics  # transformers' MLflow callback logged into the stage run
    assert {"loss", "grad_norm", "learning_rate", "samples_per_s", "tokens_per_s"} <= set(sft_logged)
    version = client.get_model_version_by_alias("mllm4d", "challenger")
    assert version.run_id == children["evaluate_grpo"].info.run_id
    curate_run = children["curate"]
    assert curate_run.data.metrics["records.bench"] > 0
    assert curate_run.inputs.dataset_inputs  # curated splits logged as datasets with digests
    assert children["validate_data"].data.metrics["gate_success"] == 1.0
    assert children["prior_gate"].data.metrics["gate_success"] == 1.0
    assert "headline" in children["evaluate_sft"].data.metrics

    artifact = Artifact.get("curation-summary")
    assert artifact is not None and "Data gate" in artifact.data and "Language-prior gate" in artifact.data

    # The promotion gate ran last: the first model has no champion to beat (the smoke preset turns the format
    # and learning checks off), so it is promoted, and the decision is on the version and the parent run.
    assert client.get_model_version_by_alias("mllm4d", "champion").version == version.version
    decided = client.get_model_version("mllm4d", version.version)
    assert decided.tags["mllm4d.promotion"] == "promoted" and "no champion" in decided.tags["mllm4d.promotion.reasons"]
    assert "**promoted**" in decided.description
    decision = json.loads((tmp_path / "reports/promotion/decision.json").read_text())
    assert decision["verdict"] == "promoted" and decision["challenger_version"] == int(version.version)
    parent = client.get_run(parents[0].info.run_id)
    assert parent.data.metrics["promoted"] == 1.0 and "model.overall" in parent.data.metrics
    assert parent.data.tags["mllm4d.promotion"] == "promoted"
    # The summary renders as a table: each row on its own line, no blank line between rows.
    summary_md = Artifact.get("pipeline-summary").data
    assert "| zero_shot |" in summary_md and "|\n\n|" not in summary_md and "## Promotion" in summary_md


def test_failed_gate_fails_the_flow(tmp_path, tracking):
    from flows.curation import curation

    _, overrides = tracking
    with pytest.raises(GateFailed, match="min_records|records_per_split|split"):
        curation(params_path=str(SMOKE), overrides=overrides + ["quality.min_records_per_split=100000"],
                 data_root=str(tmp_path / "data"), reports_root=str(tmp_path / "reports"))
    assert json.loads((tmp_path / "reports/quality/gate_report.json").read_text())["success"] is False


@pytest.mark.slow  # two seeds of base -> SFT -> P4D -> 3 GRPO runs on the smoke preset: ~2.5 min
def test_experiments_flow_runs_each_seed_and_pools_them(tmp_path, tracking):
    from flows.experiments import experiments

    uri, overrides = tracking
    reports = tmp_path / "reports"
    text = experiments(tables=["grpo"], params_path=str(SMOKE), overrides=overrides, seeds=[0, 1],
                       work_root=str(tmp_path / "work"), reports_root=str(reports))
    assert text.startswith("### MLLM-4D stage 3: GRPO from its start (P4D): 2 seeds")
    assert text.startswith((reports / "tables_pooled.md").read_text()) and "## seed 1" in text
    for seed in (0, 1):
        rows = json.loads((reports / f"seed-{seed}" / "tablegrpo.json").read_text())
        assert set(rows) == {"start (P4D)", "GRPO, ST-reward", "+ temporal contrast (Video-R1)",
                             "+ reverse thinking (ST-R1)"}
        assert len({r["slug"] for r in rows.values()}) == 4 and all(isinstance(r["gate_passed"], bool)
                                                                    for r in rows.values())
        assert (tmp_path / "work" / f"seed-{seed}" / "models" / "sft").is_dir()
    pooled = json.loads((reports / "tables_pooled.json").read_text())
    assert pooled["seeds"] == [0, 1] and "GRPO, ST-reward" in pooled["tables"]["grpo"]
    # the seeds differ (model init and data order), the data and the teacher are shared
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("mllm4d").experiment_id])
    stages = [r.data.tags.get("mllm4d.stage") for r in runs]
    assert stages.count("sft") == 2 and stages.count("teacher") == 1 and stages.count("grpo") == 6
    sft_seeds = {r.data.params.get("sft.seed") for r in runs if r.data.tags.get("mllm4d.stage") == "sft"}
    assert sft_seeds == {"0", "1"}


def test_experiments_rows_select_rows_and_keep_the_reference():
    from components.evaluation.ablation import TABLES
    from flows.experiments import experiments, selected_rows

    tab6 = TABLES["6"]
    assert [r.name for r in selected_rows(tab6, ["TPE"])] == ["no time cue", "TPE"]
    assert [r.name for r in selected_rows(tab6, None)] == [r.name for r in tab6.rows]
    with pytest.raises(ValueError, match=r"unknown rows \['tpe'\].*'TPE'"):  # checked before any work
        experiments.fn(tables=["6"], params_path=str(SMOKE), rows=["tpe"])
