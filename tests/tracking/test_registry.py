"""components.tracking.registry against a real MLflow on a SQLite file in tmp_path. Serving the registered
model end to end (the tiny model, `mlflow models serve`) is tests/tracking/test_serve.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from components.config import ModelConfig, TrackingConfig, to_dict
from components.io import check_folder_digest, write_folder_digest
from components.tracking import PARENT_RUN_ENV, stage_run
from components.tracking.registry import promote, read_inference_settings, register_model

CFG = TrackingConfig(experiment="mllm4d-registry-test")
MODEL = ModelConfig(num_frames=2, time_cue="marks")
SETTINGS = {"model_cfg": MODEL, "max_new_tokens": 24, "batch_size": 8}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)


def stub_folder(path: Path) -> Path:
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    (path / "weights.bin").write_bytes(b"\x00" * 64)
    return path


def test_register_alias_tags_promote(tmp_path: Path) -> None:
    model_dir = stub_folder(tmp_path / "checkpoint")
    with stage_run("register", CFG, tmp_path) as run:
        version = register_model(
            run, model_dir, **SETTINGS, name="mllm4d", tags={"bench.avg": "0.61", "bench.format_valid": "0.98"}
        )
    assert version == 1
    client = MlflowClient(run.tracking_uri)
    challenger = client.get_model_version_by_alias("mllm4d", "challenger")
    assert int(challenger.version) == 1 and challenger.run_id == run.run_id
    assert challenger.tags == {"bench.avg": "0.61", "bench.format_valid": "0.98"}
    (output,) = client.get_run(run.run_id).outputs.model_outputs  # the run records its logged model
    assert challenger.source == f"models:/{output.model_id}"

    # The pyfunc carries the folder, the settings evaluation used and the code it runs, and pins what that imports.
    local = Path(mlflow.artifacts.download_artifacts("models:/mllm4d@challenger"))
    assert sorted(p.name for p in (local / "artifacts" / "checkpoint").iterdir()) == ["config.json", "weights.bin"]
    settings = read_inference_settings(local / "artifacts" / "inference.json")
    assert settings == {"model": MODEL, "max_new_tokens": 24, "batch_size": 8}
    assert yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]["code"] == "code"
    assert (local / "code" / "components" / "models" / "inputs.py").is_file()
    assert not list((local / "code").rglob("__pycache__"))
    requirements = (local / "requirements.txt").read_text()
    for package in ("mlflow", "torch", "transformers", "pyyaml", "numpy"):
        assert f"{package}==" in requirements.lower()
    # Loading it is load_model's: pickled .bin weights are refused before anything is read.
    with pytest.raises(ValueError, match="no .safetensors weights; pickled .bin weights are refused"):
        mlflow.pyfunc.load_model("models:/mllm4d@challenger")

    promote("mllm4d", version)
    assert int(client.get_model_version_by_alias("mllm4d", "champion").version) == 1

    # A second registration is version 2 and takes the challenger alias; the champion stays.
    with stage_run("register", CFG, tmp_path) as run2:
        assert register_model(run2, model_dir, **SETTINGS, name="mllm4d", tags={}) == 2
        with pytest.raises(FileNotFoundError, match="no saved model folder"):
            register_model(run2, tmp_path / "nope", **SETTINGS, name="mllm4d", tags={})
        with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
            register_model(run2, model_dir, **(SETTINGS | {"batch_size": 0}), name="mllm4d", tags={})
    assert int(client.get_model_version_by_alias("mllm4d", "challenger").version) == 2
    assert int(client.get_model_version_by_alias("mllm4d", "champion").version) == 1


def test_a_pipeline_folder_and_the_code_are_logged_byte_for_byte(tmp_path: Path) -> None:
    """The text filter would rewrite a vocabulary entry that looks like a path ("/s" -> "<external>/s"): a folder
    with digest.json (written by this pipeline) goes as written, and still loads past its digest check."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"/s": 465, "</s>": 2}}}, indent=2))
    (model_dir / "meta.json").write_text(json.dumps({"config": to_dict(MODEL)}))
    write_folder_digest(model_dir)
    with stage_run("register", CFG, tmp_path) as run:
        register_model(run, model_dir, **SETTINGS, name="mllm4d-exact", tags={})
    local = Path(mlflow.artifacts.download_artifacts("models:/mllm4d-exact@challenger"))
    logged = local / "artifacts" / "model"
    assert (logged / "tokenizer.json").read_bytes() == (model_dir / "tokenizer.json").read_bytes()
    check_folder_digest(logged)
    source = Path(__file__).resolve().parents[2] / "components"
    for rel in ("tracking/redact.py", "tracking/registry.py"):  # redact.py has "SECRET_KEY = ..." lines
        assert (local / "code" / "components" / rel).read_bytes() == (source / rel).read_bytes()


_SERVED = ("components.tracking.registry", "components.models", "components.models.generation",
           "components.evaluation.answers")
_LIST_IMPORTS = """
import ast, importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
def module_level(tree):
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try)):
            yield from module_level(ast.Module(body=node.body + getattr(node, "orelse", []), type_ignores=[]))
names = set()
for module in [m for n, m in list(sys.modules.items()) if n.split(".")[0] == "components"]:
    if getattr(module, "__file__", None):
        for node in module_level(ast.parse(open(module.__file__).read())):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif node.level == 0:
                names.add(node.module.split(".")[0])
print(json.dumps(sorted(names)))
"""


def test_requirements_cover_what_the_served_code_imports(tmp_path: Path) -> None:
    """Every third-party package a served module imports at load is pinned in the model's requirements.txt (a
    fresh interpreter, so modules other tests imported do not count)."""
    from importlib import metadata

    from components.tracking.registry import _pip_requirements

    out = subprocess.run([sys.executable, "-c", _LIST_IMPORTS, *_SERVED], check=True, capture_output=True, text=True)
    names = set(json.loads(out.stdout.splitlines()[-1])) - set(sys.stdlib_module_names) - {"components"}
    assert {"torch", "transformers", "mlflow", "yaml"} <= names  # the walk found the served code's imports
    distributions = metadata.packages_distributions()
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in _pip_requirements()}
    missing = {name for name in names
               if not {d.lower().replace("_", "-") for d in distributions.get(name, [name])} & pinned}
    assert not missing, f"imported by the served code but not in registry._REQUIREMENTS: {sorted(missing)}"
