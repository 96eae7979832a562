"""Everything logged to MLflow passes one filter (components/tracking/redact.py): params, tags, dataset
sources, artifacts written by the project and params logged by transformers' MLflow callback.

Secrets are dropped (params, tags) or replaced by ``<redacted>`` (artifacts); absolute paths under the
project root are logged relative to it, any other absolute path as ``<external>/<name>``.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import mlflow
import pytest
from mlflow import MlflowClient

from components.config import ModelConfig, TrackingConfig
from components.tracking import PARENT_RUN_ENV, stage_run
from components.tracking.redact import redact_text, relative_path

CFG = TrackingConfig(experiment="mllm4d-redact")
FAKE_HF_TOKEN = "hf_" + "a1B2" * 8
ELSEWHERE = "/home/alice/checkpoints/base"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)
    monkeypatch.setenv("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", "true")


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    (tmp_path / "models" / "sft").mkdir(parents=True)
    return tmp_path


def _store(root: Path, run_id: str) -> Path:
    return root / "mlartifacts" / run_id / "artifacts"


def _no_absolute_paths(text: str, root: Path) -> None:
    assert str(root) not in text and str(root.resolve()) not in text
    assert "/home/alice" not in text and FAKE_HF_TOKEN not in text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{root}/models/sft/model", "models/sft/model"),
        ("{root}", "."),
        ("/home/alice/checkpoints/base", "<external>/base"),
        ("saved to {root}/x.json and /tmp/y/z.png", "saved to x.json and <external>/z.png"),
        ("sqlite:///{root}/mlflow.db", "sqlite:///mlflow.db"),
        ("file://{root}/mlartifacts", "file://mlartifacts"),
        ("['{root}/a.png', '/srv/b.png']", "['a.png', '<external>/b.png']"),
        ("http://mlflow:5000/api/2.0", "http://mlflow:5000/api/2.0"),
        ("3 km/h, 1/2 of models/sft", "3 km/h, 1/2 of models/sft"),
        ("http://admin:hunter2@127.0.0.1:8333", "http://admin:***@127.0.0.1:8333"),
        (f"token {FAKE_HF_TOKEN}", "token <redacted>"),
        ("AWS_SECRET_ACCESS_KEY=abc123\nmax_new_tokens: 64", "AWS_SECRET_ACCESS_KEY=<redacted>\nmax_new_tokens: 64"),
    ],
)
def test_redact_text(root: Path, text: str, expected: str) -> None:
    assert redact_text(text.format(root=root), root) == expected


def test_a_symlinked_root_is_recognised(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "models").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    assert relative_path(str(real / "models"), link) == "models"
    assert relative_path(str(link / "models"), link) == "models"


def test_params_tags_and_source_tag_are_filtered(root: Path) -> None:
    params = {"curated": str(root / "data" / "curated"), "cache": "/home/alice/.cache/hf", "hf_token": "x"}
    tags = {"mllm4d.clips_root": str(root / "data" / "scenes"), "note": f"see {FAKE_HF_TOKEN}"}
    with stage_run("curate", CFG, root, params=params, tags=tags) as run:
        run.set_tags({"mllm4d.model": str(root / "models" / "sft")})
    data = MlflowClient(run.tracking_uri).get_run(run.run_id).data
    assert data.params == {"curated": "data/curated", "cache": "<external>/hf"}
    assert data.tags["mllm4d.clips_root"] == "data/scenes" and data.tags["mllm4d.model"] == "models/sft"
    assert "note" not in data.tags  # a secret-shaped value drops the tag
    assert not data.tags["mlflow.source.name"].startswith("/")  # MLflow's own tag: the script's path
    _no_absolute_paths(json.dumps(data.params) + json.dumps(data.tags), root)


def test_json_artifacts_carry_no_paths_or_secrets(root: Path) -> None:
    meta = root / "models" / "sft" / "meta.json"
    meta.write_text(json.dumps({
        "inputs": {"records": {"path": str(root / "data" / "curated" / "sft.jsonl")},
                   "base_model": {"path": ELSEWHERE}},
        "config": {"hf_token": "anything", "endpoint": "http://u:pw@minio:9000", "lr": 0.001},
        "note": f"pushed with {FAKE_HF_TOKEN}",
    }, indent=2))
    with stage_run("sft", CFG, root) as run:
        run.log_artifact(meta, "sft")
    logged = (_store(root, run.run_id) / "sft" / "meta.json").read_text()
    _no_absolute_paths(logged, root)
    saved = json.loads(logged)
    assert saved["inputs"] == {"records": {"path": "data/curated/sft.jsonl"},
                               "base_model": {"path": "<external>/base"}}
    assert saved["config"] == {"hf_token": "<redacted>", "endpoint": "http://u:***@minio:9000", "lr": 0.001}
    assert saved["note"] == "pushed with <redacted>"
    assert json.loads(meta.read_text())["inputs"]["base_model"]["path"] == ELSEWHERE  # the file is untouched


def test_artifact_folders_filter_text_and_keep_binaries(root: Path) -> None:
    out = root / "reports" / "eval"
    out.mkdir(parents=True)
    (out / "report.md").write_text(f"model: {root}/models/sft/model\n")
    (out / "predictions.jsonl").write_text(json.dumps({"images": [f"{root}/data/f.png", ELSEWHERE]}) + "\n")
    (out / "run.env").write_text("DB_PASSWORD=hunter2\nSTEPS=3\n")
    png = bytes(range(256)) * 4
    (out / "frame.png").write_bytes(png)
    with stage_run("evaluate", CFG, root) as run:
        run.log_artifacts(out, "evaluation")
        run.log_text(f"written to {root}/reports\n", "notes.txt")
    store = _store(root, run.run_id)
    assert (store / "evaluation" / "report.md").read_text() == "model: models/sft/model\n"
    row = json.loads((store / "evaluation" / "predictions.jsonl").read_text())
    assert row == {"images": ["data/f.png", "<external>/base"]}
    assert (store / "evaluation" / "frame.png").read_bytes() == png
    assert (store / "evaluation" / "run.env").read_text() == "DB_PASSWORD=<redacted>\nSTEPS=3\n"
    assert (store / "notes.txt").read_text() == "written to reports\n"


def test_transformers_mlflow_callback_logs_filtered_params(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What Trainer(report_to="mlflow") logs: every TrainingArguments field and the model config.
    from transformers import TrainingArguments

    from components.tracking.callback import FilteredMLflowCallback

    monkeypatch.setenv("HF_MLFLOW_LOG_ARTIFACTS", "true")
    args = TrainingArguments(output_dir=str(root / "models" / "sft" / "checkpoints"), report_to="none",
                             use_cpu=True)
    config = {"_name_or_path": ELSEWHERE, "model_type": "qwen2_5_vl", "hub_token": FAKE_HF_TOKEN}
    model = SimpleNamespace(config=SimpleNamespace(to_dict=lambda: dict(config)))
    with stage_run("sft", CFG, root) as run:
        callback = FilteredMLflowCallback()
        callback.setup(args, SimpleNamespace(is_world_process_zero=True), model)
        assert callback._log_artifacts is False  # checkpoints never go out unfiltered
        assert mlflow.active_run().info.run_id == run.run_id  # it logged into the stage run
    params = MlflowClient(run.tracking_uri).get_run(run.run_id).data.params
    assert params["output_dir"] == "models/sft/checkpoints"
    assert params["_name_or_path"] == "<external>/base"
    assert params["model_type"] == "qwen2_5_vl" and "hub_token" not in params
    _no_absolute_paths(json.dumps(params), root)


def test_registered_model_folder_is_filtered(root: Path) -> None:
    from components.tracking.registry import register_model

    model_dir = root / "models" / "sft" / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"_name_or_path": str(root / "models" / "base")}))
    (model_dir / "meta.json").write_text(json.dumps({"base_model": {"path": ELSEWHERE}}))
    (model_dir / "model.safetensors").write_bytes(b"\x00" * 64)
    with stage_run("evaluate", CFG, root) as run:
        register_model(run, model_dir, model_cfg=ModelConfig(), max_new_tokens=8, batch_size=1, name="mllm4d-redact",
                       tags={"source": str(model_dir)})
    client = MlflowClient(run.tracking_uri)
    version = client.get_model_version_by_alias("mllm4d-redact", "challenger")
    assert version.tags == {"source": "models/sft/model"}
    local = Path(mlflow.artifacts.download_artifacts(f"models:/mllm4d-redact/{version.version}"))
    texts = {p.relative_to(local).as_posix(): p.read_text() for p in local.rglob("*")
             if p.is_file() and p.suffix in (".json", "")}
    assert json.loads(texts["artifacts/model/config.json"]) == {"_name_or_path": "models/base"}
    assert json.loads(texts["artifacts/model/meta.json"]) == {"base_model": {"path": "<external>/base"}}
    assert "MLmodel" in texts
    for text in texts.values():
        _no_absolute_paths(text, root)
        assert "mllm4d-redacted-" not in text  # MLmodel names where its artifact was copied from


