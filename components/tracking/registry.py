"""The model registry: log a saved model folder as an MLflow pyfunc model, register it, move aliases.

``mlflow.transformers`` cannot log a vision-language model under transformers 5 (its pipeline
creation fails; ``docs/stack.md``), so the saved Hugging Face folder is logged as an artifact of a small
``PythonModel`` whose ``load_context`` only records where the folder is; ``predict`` loads the model
and processor with transformers on first use. Logging therefore never imports torch or transformers.

Everything goes through an ``MlflowClient`` bound to the run's tracking URI, never MLflow's global
"active run": a LoggedModel is created in the run's experiment with the run as its source, the pyfunc
folder is saved locally and uploaded as its artifacts, the run records it as an output, and the
version is created from ``models:/<model_id>``. Aliases follow ``DESIGN.md``: ``challenger`` on
registration, ``champion`` after the promotion gate (registry stages are deprecated in MLflow 3).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pydantic
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from components.tracking.metadata import clean
from components.tracking.redact import redacted_copy
from components.tracking.runs import RunHandle

log = logging.getLogger(__name__)

MODEL_DIR_ARTIFACT = "model_dir"
# Pinned to what runs here: written into the model's requirements.txt instead of a resolver's guess.
_REQUIREMENTS = ("mlflow", "transformers", "torch", "torchvision", "pillow", "pandas")


class VLMRequest(pydantic.BaseModel):
    """One request row: the user turn's text and its images (file paths, in order)."""

    prompt: str
    images: list[str] = []
    max_new_tokens: int = 128


class VLMFolderModel(mlflow.pyfunc.PythonModel):
    """A saved transformers image-text-to-text model folder, served as a pyfunc.

    Input: a list of ``VLMRequest`` (dicts with ``prompt``, optional ``images`` and ``max_new_tokens``).
    Output: one greedy completion per request. Untested against a real checkpoint in this module's tests
    (they log a stub folder); the model package owns the generation settings that evaluation uses.
    """

    def load_context(self, context: Any) -> None:
        self.model_dir = Path(context.artifacts[MODEL_DIR_ARTIFACT])
        self._model = self._processor = None

    def _load(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        # A served model folder comes from the registry, i.e. from whoever could register one: only
        # safetensors weights (a pickled .bin can run code when loaded) and never code shipped in the folder.
        self._processor = AutoProcessor.from_pretrained(self.model_dir, trust_remote_code=False)
        self._model = AutoModelForImageTextToText.from_pretrained(
            self.model_dir, use_safetensors=True, trust_remote_code=False
        ).eval()

    # MLflow reads this hint: it becomes the model's signature and validates every request.
    def predict(self, context: Any, model_input: list[VLMRequest], params: dict | None = None) -> list[str]:
        import torch
        from PIL import Image

        if self._model is None:
            self._load()
        outputs = []
        for row in model_input:
            images = [Image.open(p).convert("RGB") for p in row.images]
            content = [{"type": "image"} for _ in images] + [{"type": "text", "text": row.prompt}]
            text = self._processor.apply_chat_template(
                [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
            )
            inputs = self._processor(text=[text], images=images or None, return_tensors="pt")
            with torch.no_grad():
                generated = self._model.generate(**inputs, max_new_tokens=row.max_new_tokens, do_sample=False)
            new_tokens = generated[:, inputs["input_ids"].shape[1] :]
            outputs.append(self._processor.batch_decode(new_tokens, skip_special_tokens=True)[0])
        return outputs


def _pip_requirements() -> list[str]:
    pins = []
    for package in _REQUIREMENTS:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


@contextmanager
def _no_pip_check() -> Iterator[None]:
    """Offline: MLflow must not run pip to check or infer requirements (it would hang or fail)."""
    key, previous = "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK", os.environ.get("MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK")
    os.environ[key] = "true"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = previous


def register_model(
    run: RunHandle, model_dir: Path, *, name: str, alias: str = "challenger", tags: dict[str, str]
) -> int:
    """Log ``model_dir`` into ``run`` as a pyfunc model, register a version of ``name``, set ``alias``
    on it and ``tags`` (e.g. metrics) on the version; returns the version number."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        raise FileNotFoundError(f"no saved model folder at {model_dir} (expected config.json and weights)")
    client = MlflowClient(run.tracking_uri)
    safe_tags = clean(tags, MAX_TAG_VAL_LENGTH, "tag", run.root)
    logged = client.create_logged_model(run.experiment_id, name=name, source_run_id=run.run_id)
    # The folder's JSON (meta.json, configs) and MLflow's MLmodel (which records where the artifact was
    # copied from) go through the same filter as everything else logged: no secrets, no absolute paths.
    with (
        _no_pip_check(),
        tempfile.TemporaryDirectory(prefix="mllm4d-pyfunc-") as tmp,
        redacted_copy(model_dir, run.root) as clean_dir,
    ):
        local = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            str(local),
            python_model=VLMFolderModel(),
            artifacts={MODEL_DIR_ARTIFACT: str(clean_dir)},
            pip_requirements=_pip_requirements(),
        )
        with redacted_copy(local, run.root) as clean_local:
            client.log_model_artifacts(logged.model_id, str(clean_local))
    client.finalize_logged_model(logged.model_id, "READY")
    client.log_outputs(run.run_id, models=[LoggedModelOutput(logged.model_id, step=0)])
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise
    version = client.create_model_version(
        name, source=f"models:/{logged.model_id}", run_id=run.run_id, tags=safe_tags, model_id=logged.model_id
    )
    client.set_registered_model_alias(name, alias, version.version)
    log.info("registered %s version %s (@%s) from run %s", name, version.version, alias, run.run_id)
    return int(version.version)


def promote(name: str, version: int, alias: str = "champion") -> None:
    """Point ``alias`` of ``name`` at ``version`` (the tracking URI is MLflow's current one)."""
    client = MlflowClient()
    client.get_model_version(name, str(version))  # a clear error for a version that does not exist
    client.set_registered_model_alias(name, alias, str(version))
    log.info("%s version %s is now @%s", name, version, alias)
