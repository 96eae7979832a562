"""components.tracking against a real MLflow on a SQLite file (one database for the module)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from components.config import TrackingConfig
from components.tracking import (
    PARENT_RUN_ENV,
    RunHandle,
    flatten_params,
    pipeline_run,
    resolve_tracking_uri,
    setup,
    stage_run,
)
from components.tracking.metadata import dvc_lock_tag

REPO = Path(__file__).resolve().parents[2]
CFG = TrackingConfig(experiment="mllm4d-test")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    monkeypatch.setenv("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")  # offline: no pip resolution


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("project")


@pytest.fixture(scope="module")
def client(root: Path) -> MlflowClient:
    setup(CFG, root)
    return MlflowClient(resolve_tracking_uri(CFG, root))


def test_resolve_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_tracking_uri(CFG, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    absolute = TrackingConfig(tracking_uri="sqlite:////srv/mlflow.db")
    assert resolve_tracking_uri(absolute, tmp_path) == "sqlite:////srv/mlflow.db"
    server = TrackingConfig(tracking_uri="http://mlflow:5000")
    assert resolve_tracking_uri(server, tmp_path) == "http://mlflow:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://elsewhere:5000")
    assert resolve_tracking_uri(CFG, tmp_path) == "http://elsewhere:5000"


def test_setup_is_quiet_idempotent_and_puts_artifacts_under_the_root(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        first = setup(CFG, tmp_path)
    assert "database tables" not in capfd.readouterr().err + caplog.text
    assert setup(CFG, tmp_path) == first
    assert "MLFLOW_TRACKING_URI" not in os.environ  # mlflow exports it; left there it would beat the config
    assert (tmp_path / "mlflow.db").is_file()
    experiment = MlflowClient(resolve_tracking_uri(CFG, tmp_path)).get_experiment(first)
    assert experiment.artifact_location.removeprefix("file://") == str(tmp_path.resolve() / "mlartifacts")


def test_pipeline_run_nests_stages_in_process_threads_and_subprocesses(
    root: Path, client: MlflowClient
) -> None:
    child_code = (
        "from pathlib import Path; from components.config import TrackingConfig;"
        "from components.tracking import stage_run\n"
        f"with stage_run('sub', TrackingConfig(experiment={CFG.experiment!r}), Path({str(root)!r})) as r:\n"
        "    r.log_metrics({'x': 1.0}); print(r.run_id)"
    )
    with pipeline_run("e2e", CFG, root, params={"preset": "smoke"}) as parent:
        assert os.environ[PARENT_RUN_ENV] == parent.run_id
        assert mlflow.active_run() is None  # the parent never captures stray fluent logging
        with stage_run("curate", CFG, root) as a:
            assert mlflow.active_run().info.run_id == a.run_id  # library callbacks log into the stage
        with stage_run("train", CFG, root, tags={"kind": "sft"}) as b:
            pass
        ids: list[str] = []
        thread = threading.Thread(target=lambda: ids.append(_stage_in_thread(root)))
        thread.start()
        thread.join()
        done = subprocess.run(
            [sys.executable, "-c", child_code], cwd=REPO, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        sub_id = done.stdout.strip().splitlines()[-1]
    assert PARENT_RUN_ENV not in os.environ

    children = {a.run_id: "curate", b.run_id: "train", ids[0]: "thread", sub_id: "sub"}
    for run_id, stage in children.items():
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent.run_id
        assert run.data.tags["mllm4d.stage"] == stage
        assert run.data.tags["mllm4d.git.commit"] == "unknown"  # tmp dir: not a git repo
        assert run.info.status == "FINISHED"
    assert client.get_run(b.run_id).data.tags["kind"] == "sft"
    top = client.get_run(parent.run_id)
    assert top.info.status == "FINISHED" and top.data.params == {"preset": "smoke"}
    assert "mlflow.parentRunId" not in top.data.tags
    found = client.search_runs([top.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.run_id}'")
    assert {r.info.run_id for r in found} == set(children)


def _stage_in_thread(root: Path) -> str:
    with stage_run("thread", CFG, root) as run:
        return run.run_id


def test_stage_without_parent_is_top_level_and_has_a_url(root: Path, client: MlflowClient) -> None:
    with stage_run("alone", CFG, root) as run:
        assert run.run_id in run.url() and run.url().startswith("sqlite:///")
    assert "mlflow.parentRunId" not in client.get_run(run.run_id).data.tags
    http = RunHandle("abc", "http://mlflow:5000/", "7")
    assert http.url() == "http://mlflow:5000/#/experiments/7/runs/abc"


def test_metrics_per_step_and_non_finite_values_skipped(
    root: Path, client: MlflowClient, caplog: pytest.LogCaptureFixture
) -> None:
    with stage_run("sft", CFG, root) as run:
        for step, loss in enumerate([2.0, 1.5, 1.25]):
            run.log_metrics({"loss": loss, "lr": np.float32(1e-3)}, step=step)
        with caplog.at_level(logging.WARNING):
            run.log_metrics({"bad": math.nan, "worse": float("inf"), "good": 1.0}, step=3)
    history = client.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 2.0), (1, 1.5), (2, 1.25)]
    metrics = client.get_run(run.run_id).data.metrics
    assert metrics["good"] == 1.0 and "bad" not in metrics and "worse" not in metrics
    assert "bad" in caplog.text and "worse" in caplog.text


def test_failing_stage_is_marked_failed_and_reraises(root: Path, client: MlflowClient) -> None:
    with pytest.raises(RuntimeError, match="boom"), stage_run("gate", CFG, root) as run:
        raise RuntimeError("boom")
    assert client.get_run(run.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None
    with pytest.raises(ValueError), pipeline_run("broken", CFG, root) as parent:
        raise ValueError
    assert client.get_run(parent.run_id).info.status == "FAILED"
    assert PARENT_RUN_ENV not in os.environ


def test_datasets_logged_with_digest_and_context(root: Path, client: MlflowClient, tmp_path: Path) -> None:
    rows = [
        {"id": "q1", "answer": "A", "options": ["a", "b"], "solution": {"camera_center": [0, 1, 2]}},
        {"id": "q2", "answer": 3.5, "options": [], "solution": {}},
    ]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(r) + "\n" for r in rows))
    folder = tmp_path / "records"
    (folder / "sft").mkdir(parents=True)
    (folder / "sft" / "part-0.jsonl").write_text(json.dumps(rows[0]) + "\n")
    (folder / "bench.jsonl").write_text(json.dumps(rows[1]) + "\n")
    with stage_run("curate", CFG, root) as run:
        digest_in = run.log_dataset(qa, name="qa", context="training")
        digest_out = run.log_dataset(folder, name="records", context="curation", role="output")
        with pytest.raises(ValueError, match="role"):
            run.log_dataset(qa, name="qa", context="x", role="sideways")
    assert digest_in == hashlib.md5(qa.read_bytes()).hexdigest()  # what dvc.lock records for the file
    got = client.get_run(run.run_id)
    inputs = {d.dataset.name: d for d in got.inputs.dataset_inputs}
    assert inputs["qa"].dataset.digest == digest_in
    # qa.jsonl lies outside the project root: only its name is logged (components/tracking/redact.py).
    assert inputs["qa"].dataset.source == json.dumps({"uri": "<external>/qa.jsonl"})
    assert json.loads(inputs["qa"].dataset.profile)["num_rows"] == 2
    assert inputs["qa"].dataset.schema  # nested and mixed columns did not defeat schema inference
    assert {t.key: t.value for t in inputs["qa"].tags} == {"mlflow.data.context": "training"}
    assert inputs["records"].dataset.digest == digest_out
    assert {t.key: t.value for t in inputs["records"].tags} == {
        "mlflow.data.context": "output:curation",
        "mllm4d.dataset.role": "output",
    }
    assert got.data.tags["mllm4d.output.records.digest"] == digest_out


def test_artifacts_images_and_text_land_in_the_artifact_store(
    root: Path, client: MlflowClient, tmp_path: Path
) -> None:
    from PIL import Image

    (tmp_path / "report.json").write_text("{}")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    frame = np.zeros((8, 12, 3), dtype=np.uint8)
    frame[..., 0] = 255
    Image.fromarray(frame).save(tmp_path / "frame.png")
    with stage_run("evaluate", CFG, root) as run:
        run.log_artifact(tmp_path / "report.json", "reports")
        run.log_artifacts(tmp_path / "ckpt", "model")
        run.log_image(frame, "examples/array.png")
        run.log_image(tmp_path / "frame.png", "examples/file.png")
        run.log_text("# Report\n", "report.md")
    store = root / "mlartifacts" / run.run_id / "artifacts"
    for name in ["reports/report.json", "model/config.json", "examples/array.png", "report.md"]:
        assert (store / name).is_file(), name
    assert np.array_equal(np.asarray(Image.open(store / "examples/file.png").convert("RGB")), frame)
    assert {a.path for a in client.list_artifacts(run.run_id)} >= {
        "reports",
        "model",
        "examples",
        "report.md",
    }


def test_secret_looking_params_and_tags_are_never_logged(root: Path, client: MlflowClient) -> None:
    params = {
        "s3": {
            "endpoint": "http://admin:hunter2@127.0.0.1:8333",
            "secret_access_key": "x",
            "aws_access_key_id": "y",
        },
        "hf_token": "abc",
        "db": {"password": "pw"},
        "note": "AKIA" + "A" * 16,
        "tokenizer": "bpe",
        "max_new_tokens": 64,
        "long": "x" * 7000,
    }
    flat = flatten_params(params)
    assert set(flat) == {"s3.endpoint", "tokenizer", "max_new_tokens", "long"}
    with stage_run("secrets", CFG, root, params=params, tags={"api_key": "k", "ok": "1"}) as run:
        pass
    got = client.get_run(run.run_id).data
    assert got.params["s3.endpoint"] == "http://admin:***@127.0.0.1:8333"
    assert "hunter2" not in json.dumps(got.params) and "hunter2" not in json.dumps(got.tags)
    assert got.params["max_new_tokens"] == "64" and len(got.params["long"]) == 6000
    assert "api_key" not in got.tags and got.tags["ok"] == "1"


def test_lineage_tags_in_a_git_repo(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args]
        return subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "reports").mkdir()
    for name in ("dvc.lock", "reports/comparison.md", "code.py"):
        (tmp_path / name).write_text("v1\n")
    git("add", ".")
    git("commit", "-qm", "init")
    uri = resolve_tracking_uri(CFG, tmp_path)
    with stage_run("curate", CFG, tmp_path) as clean:
        pass
    # what a pipeline run itself rewrites (reports, dvc.lock) does not make the next run "dirty"
    (tmp_path / "dvc.lock").write_text("v2\n")
    (tmp_path / "reports/comparison.md").write_text("v2\n")
    with stage_run("curate", CFG, tmp_path) as outputs_changed:
        pass
    (tmp_path / "code.py").write_text("v2\n")
    with stage_run("curate", CFG, tmp_path) as dirty:
        pass
    tags = [MlflowClient(uri).get_run(r.run_id).data.tags for r in (clean, outputs_changed, dirty)]
    assert tags[0]["mllm4d.git.commit"] == git("rev-parse", "HEAD") == tags[0]["mlflow.source.git.commit"]
    assert [t["mllm4d.git.dirty"] for t in tags] == ["false", "false", "true"]
    # a stage run names no dvc.lock (its own entry is written after it); dvc_lock_tag names the current one
    assert all("mllm4d.dvc_lock.sha256" not in t for t in tags)
    assert dvc_lock_tag(tmp_path) == {
        "mllm4d.dvc_lock.sha256": hashlib.sha256((tmp_path / "dvc.lock").read_bytes()).hexdigest()}
