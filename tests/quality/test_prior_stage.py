"""The language-prior gate as a stage: logged to MLflow like the data gate, a failure is exit code 1 of
`mllm4d prior-gate` with the failing category named, and its failing report is what stays on disk."""

from __future__ import annotations

import json

import pytest
from mlflow import MlflowClient

from components import stages
from components.cli import main
from components.config import load_params
from components.quality.prior import PriorGateFailed
from tests.conftest import SMOKE
from tests.quality.test_prior import make_split, write_curated

LEAK = {"translational": "it does not move"}


@pytest.fixture()
def tracking(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLLM4D_PARENT_RUN_ID", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    # smaller sets than test_prior's: the stage, not the statistics, is under test here
    return uri, [f"tracking.tracking_uri={uri}", f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
                 "prior.logreg_steps=100"]


def test_the_stage_logs_its_report_and_fails_on_a_shortcut(tmp_path, tracking):
    uri, overrides = tracking
    params = load_params(SMOKE, overrides)
    clean = write_curated(tmp_path / "clean", make_split("sft", 80, 0), make_split("bench", 60, 1))
    report = stages.prior_gate(params, clean, tmp_path / "reports", root=tmp_path)
    assert report.success, report.summary()

    leaky = write_curated(tmp_path / "leaky", make_split("sft", 80, 0, LEAK), make_split("bench", 60, 1, LEAK))
    with pytest.raises(PriorGateFailed, match="translational"):
        stages.prior_gate(params, leaky, tmp_path / "reports", root=tmp_path)
    assert json.loads((tmp_path / "reports/prior_report.json").read_text())["success"] is False

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(params.tracking.experiment).experiment_id],
                              order_by=["attributes.start_time ASC"])
    assert [r.data.tags["mllm4d.stage"] for r in runs] == ["prior_gate", "prior_gate"]
    passed, failed = runs
    assert passed.info.status == "FINISHED" and failed.info.status == "FAILED"
    assert passed.data.metrics["gate_success"] == 1.0 and failed.data.metrics["gate_success"] == 0.0
    assert failed.data.metrics["gap.translational"] > 0.5 and "accuracy.translational.majority" in failed.data.metrics
    artifacts = {a.path for a in client.list_artifacts(failed.info.run_id, "prior_gate")}
    assert artifacts == {"prior_gate/prior_report.json", "prior_gate/prior_report.md"}


def test_cli_exit_codes(tmp_path, tracking, capsys):
    _, overrides = tracking
    base = ["--params", str(SMOKE), "--quiet", *[a for o in overrides for a in ("-S", o)]]
    clean = write_curated(tmp_path / "clean", make_split("sft", 80, 0), make_split("bench", 60, 1))
    assert main(base + ["prior-gate", "--curated", str(clean), "--report", str(tmp_path / "r")]) == 0
    assert "language-prior gate passed" in capsys.readouterr().out
    leaky = write_curated(tmp_path / "leaky", make_split("sft", 80, 0, LEAK), make_split("bench", 60, 1, LEAK))
    assert main(base + ["prior-gate", "--curated", str(leaky), "--report", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "language-prior gate FAILED" in err and "translational" in err
