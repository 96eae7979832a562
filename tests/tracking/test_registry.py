"""components.tracking.registry against a real MLflow on a SQLite file in tmp_path."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from components.config import TrackingConfig
from components.tracking import PARENT_RUN_ENV, stage_run
from components.tracking.registry import promote, register_model


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)


def test_register_alias_tags_promote(tmp_path: Path) -> None:
    cfg = TrackingConfig(experiment="mllm4d-registry-test")
    model_dir = tmp_path / "checkpoint"
    model_dir.mkdir()
    (model_dir / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (model_dir / "weights.bin").write_bytes(b"\x00" * 64)

    with stage_run("register", cfg, tmp_path) as run:
        version = register_model(
            run, model_dir, name="mllm4d", tags={"bench.avg": "0.61", "bench.format_valid": "0.98"}
        )
    assert version == 1
    client = MlflowClient(run.tracking_uri)
    challenger = client.get_model_version_by_alias("mllm4d", "challenger")
    assert int(challenger.version) == 1 and challenger.run_id == run.run_id
    assert challenger.tags == {"bench.avg": "0.61", "bench.format_valid": "0.98"}
    (output,) = client.get_run(run.run_id).outputs.model_outputs  # the run records its logged model
    assert challenger.source == f"models:/{output.model_id}"

    # The alias resolves to a loadable pyfunc whose artifact is the folder, nothing heavy loaded.
    loaded = mlflow.pyfunc.load_model("models:/mllm4d@challenger")
    python_model = loaded.unwrap_python_model()
    assert sorted(p.name for p in python_model.model_dir.iterdir()) == ["config.json", "weights.bin"]
    assert python_model._model is None
    requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/mllm4d@challenger")).read_text()
    assert f"mlflow=={mlflow.__version__}" in requirements

    promote("mllm4d", version)
    assert int(client.get_model_version_by_alias("mllm4d", "champion").version) == 1

    # A second registration is version 2 and takes the challenger alias; the champion stays.
    with stage_run("register", cfg, tmp_path) as run2:
        assert register_model(run2, model_dir, name="mllm4d", tags={}) == 2
        with pytest.raises(FileNotFoundError, match="no saved model folder"):
            register_model(run2, tmp_path / "nope", name="mllm4d", tags={})
    assert int(client.get_model_version_by_alias("mllm4d", "challenger").version) == 2
    assert int(client.get_model_version_by_alias("mllm4d", "champion").version) == 1
