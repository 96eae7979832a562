"""The model registry: log a saved model folder as an MLflow pyfunc model, register it, move aliases.

``mlflow.transformers`` cannot log a vision-language model under transformers 5 (its pipeline
creation fails; ``docs/stack.md``), so the saved Hugging Face folder is logged as an artifact of a small
``PythonModel``. It serves what evaluation measured: ``load_context`` loads the folder with
``components.models.load_model`` and the model section of params that evaluation used (``inference.json``
beside the folder: TPE hook, frame size, time cue, prompt format), and ``predict`` generates with
evaluation's ``make_generate_fn`` (prompt from ``build_conversation``, frames from ``frames_for``), in
batches of evaluation's size. Requests carry the record fields the prompt reads and the frames as
base64-encoded images (``VLMRequest``, docs/serving.md). Logging never imports torch or transformers.

The pickled class resolves from the ``components`` package shipped with the model (``code_paths``), so
``mlflow models serve`` runs outside this repository; ``requirements.txt`` pins what that code imports.

Everything goes through an ``MlflowClient`` bound to the run's tracking URI, never MLflow's global
"active run": a LoggedModel is created in the run's experiment with the run as its source, the pyfunc
folder is saved locally and uploaded as its artifacts, the run records it as an output, and the
version is created from ``models:/<model_id>``. Aliases follow ``DESIGN.md``: ``challenger`` on
registration, ``champion`` after the promotion gate (registry stages are deprecated in MLflow 3).
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pydantic
import yaml
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

# _build: the strict params builder (unknown keys, Literal choices, nested sections), so a served
# model's ModelConfig is checked exactly as params.yaml's model section was.
from components.config import ModelConfig, _build, to_dict
from components.tracking.metadata import clean
from components.tracking.redact import redacted_copy
from components.tracking.runs import RunHandle

log = logging.getLogger(__name__)

MODEL_DIR_ARTIFACT = "model_dir"
DIGEST_FILE = "digest.json"  # components.models.factory.DIGEST (importing it here would import torch)
INFERENCE_ARTIFACT = "inference"  # inference.json: {"model": <params' model section>, "max_new_tokens", "batch_size"}
MEDIA_ROOT_ENV = "MLLM4D_SERVE_MEDIA_ROOT"  # the one folder a server may read request image paths from
_CODE = Path(__file__).resolve().parents[1]  # the ``components`` package, shipped with the model
# What the served code imports (the pyfunc, components.models, generation, answer extraction), pinned to
# what runs here: written into the model's requirements.txt instead of a resolver's guess.
# tests/tracking/test_registry.py checks the list covers the served modules' imports.
_REQUIREMENTS = ("mlflow", "pydantic", "numpy", "pandas", "pyyaml", "pillow", "torch", "torchvision",
                 "transformers", "tokenizers", "safetensors", "huggingface-hub", "peft", "tqdm")


class VLMRequest(pydantic.BaseModel):
    """One question about one clip, in the fields of a curated record that the prompt and frames read.

    ``frames``: the clip's frames, base64-encoded image files, one per ``timestamps`` entry (seconds); the
    model picks ``model.num_frames`` of them uniformly, as in evaluation. ``som_image``: the Set-of-Marks
    image (the first frame with the regions drawn), required exactly when ``regions`` names region tokens.
    ``frame_numbers``: the frames' indices in the source video (the ``prompt`` time cue states the fps).
    ``frame_paths`` / ``som_image_path``: file paths instead, refused unless the server was started with
    ``MLLM4D_SERVE_MEDIA_ROOT`` and they resolve inside it. MLflow rejects a row that misses a required
    field or has an unknown one; ``record_from_request`` checks the rest, naming the field.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    question: str
    answer_type: str  # "mc" or "numeric" (MLflow's type-hint schema has no Literal)
    options: list[str] | None = None
    unit: str | None = None
    regions: list[str] | None = None
    timestamps: list[float]
    frame_numbers: list[int] | None = None
    frames: list[str] | None = None
    som_image: str | None = None
    frame_paths: list[str] | None = None
    som_image_path: str | None = None


class RequestError(ValueError):
    """A request the served model refuses; the message names the row and the field."""


_Fail = Callable[[str, str], RequestError]  # (field, why) -> the error to raise


def record_from_request(row: VLMRequest, index: int, cfg: ModelConfig, media_root: Path | None) -> dict:
    """The record ``build_conversation`` and ``frames_for`` read, with the frames decoded in memory."""
    from components.models.inputs import FRAME_IMAGES, SOM_FRAME

    def fail(field: str, why: str) -> RequestError:
        return RequestError(f"request {index}: {field}: {why}")

    if row.answer_type not in ("mc", "numeric"):
        raise fail("answer_type", f"must be 'mc' or 'numeric', got {row.answer_type!r}")
    options = row.options or []
    if row.answer_type == "mc" and len(options) < 2:
        raise fail("options", "a multiple-choice question needs its options (at least two)")
    if row.answer_type == "numeric" and options:
        raise fail("options", "a numeric question has no options")
    times = row.timestamps
    if not times or not all(math.isfinite(t) for t in times) or any(b < a for a, b in itertools.pairwise(times)):
        raise fail("timestamps", "must be the frames' times in seconds, finite and in order")
    if row.frame_numbers is not None and len(row.frame_numbers) != len(times):
        raise fail("frame_numbers", f"{len(row.frame_numbers)} entries for {len(times)} timestamps")
    if cfg.time_cue == "prompt" and row.frame_numbers is None:
        raise fail("frame_numbers", "required by this model: its prompt states the video's fps (time_cue 'prompt')")
    regions = row.regions or []
    has_som = row.som_image is not None or row.som_image_path is not None
    if regions and not has_som:
        raise fail("som_image", "required when regions are named: the prompt says the first image marks them")
    if has_som and not regions:
        raise fail("regions", "a Set-of-Marks image was sent but no region tokens name what it marks")
    for encoded, path in (("frames", "frame_paths"), ("som_image", "som_image_path")):
        if getattr(row, encoded) is not None and getattr(row, path) is not None:
            raise fail(path, f"send either '{encoded}' (base64) or '{path}', not both")
    if row.frames is None and row.frame_paths is None:
        raise fail("frames", "required: the clip's frames as base64-encoded image files, one per timestamp")
    if row.frames is not None:
        frames = [_decode_image(text, f"frames[{i}]", fail) for i, text in enumerate(row.frames)]
    else:
        frames = [_read_image(p, f"frame_paths[{i}]", media_root, fail) for i, p in enumerate(row.frame_paths)]
    if len(frames) != len(times):
        raise fail("frames", f"{len(frames)} images for {len(times)} timestamps: send one frame per timestamp")
    if len(frames) < cfg.num_frames:
        raise fail("frames", f"{len(frames)} frames, but the model takes {cfg.num_frames} (model.num_frames)")
    som = None
    if row.som_image is not None:
        som = _decode_image(row.som_image, "som_image", fail)
    elif row.som_image_path is not None:
        som = _read_image(row.som_image_path, "som_image_path", media_root, fail)
    return {
        "question": row.question, "answer_type": row.answer_type, "options": options, "unit": row.unit,
        "regions": [{"token": token} for token in regions], "timestamps": list(times),
        "frames": row.frame_numbers, FRAME_IMAGES: frames, SOM_FRAME: som,
    }


def _decode_image(text: str, field: str, fail: _Fail) -> Any:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        if _looks_like_path(text):
            raise fail(field, "looks like a file path; paths are refused here: send the image file's bytes "
                              f"base64-encoded (or start the server with {MEDIA_ROOT_ENV}=DIR and send "
                              "frame_paths / som_image_path under DIR)") from None
        raise fail(field, "not valid base64 (send the image file's bytes, base64-encoded)") from None
    return _open_image(data, field, fail)


def _looks_like_path(text: str) -> bool:
    return (text.startswith(("/", "./", "../", "~", "file:")) or "\\" in text
            or text.lower().endswith((".png", ".jpg", ".jpeg", ".webp", ".bmp")))


def _read_image(path: str, field: str, media_root: Path | None, fail: _Fail) -> Any:
    if media_root is None:
        raise fail(field, f"file paths are refused: this server reads no files (start it with {MEDIA_ROOT_ENV}=DIR "
                          "to allow paths under DIR), or send the images base64-encoded in 'frames' / 'som_image'")
    # resolve() follows symlinks and "..", so a link or a relative path cannot leave the media root
    resolved = (media_root / path).resolve()
    if not resolved.is_relative_to(media_root):
        raise fail(field, f"{path!r} is outside {MEDIA_ROOT_ENV} ({media_root})")
    if not resolved.is_file():
        raise fail(field, f"no file {path!r} under {MEDIA_ROOT_ENV} ({media_root})")
    return _open_image(resolved.read_bytes(), field, fail)


def _open_image(data: bytes, field: str, fail: _Fail) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()  # PIL decodes lazily: a truncated file must fail here, naming the field
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise fail(field, f"not a readable image ({exc})") from None
    return image


def media_root_from_env() -> Path | None:
    """``MLLM4D_SERVE_MEDIA_ROOT`` resolved, or None (the default: requests may not name files)."""
    value = os.environ.get(MEDIA_ROOT_ENV)
    if not value:
        return None
    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{MEDIA_ROOT_ENV}={value!r} is not a folder; unset it to refuse file paths")
    return root


def _answer_text(extracted: Any) -> str | None:
    if extracted.letter is not None:
        return extracted.letter
    return None if extracted.value is None else str(extracted.value)


def read_inference_settings(path: Path) -> dict:
    """``inference.json``: the ModelConfig and generation settings that evaluation used, checked."""
    settings = json.loads(Path(path).read_text())
    for key in ("max_new_tokens", "batch_size"):
        if isinstance(settings.get(key), bool) or not isinstance(settings.get(key), int) or settings[key] < 1:
            raise ValueError(f"{path}: {key} must be an integer >= 1, got {settings.get(key)!r}")
    return {**settings, "model": _build(ModelConfig, settings.get("model"), "model", str(path))}


class VLMFolderModel(mlflow.pyfunc.PythonModel):
    """A saved model folder, served through evaluation's code path (``load_model`` + ``make_generate_fn``).

    Input: a list of ``VLMRequest``. Output: per request ``{"completion": text, "answer": ...}``, the answer
    as ``components.evaluation.answers.extract_answer`` reads it (option letter, number as text, or None).
    """

    def load_context(self, context: Any) -> None:
        from components.models import load_model
        from components.models.generation import make_generate_fn

        settings = read_inference_settings(Path(context.artifacts[INFERENCE_ARTIFACT]))
        self.cfg: ModelConfig = settings["model"]
        self.batch_size: int = settings["batch_size"]
        self.model_dir = Path(context.artifacts[MODEL_DIR_ARTIFACT])
        self.media_root = media_root_from_env()
        # load_model refuses pickled .bin weights and remote code, and checks digest.json: the folder comes
        # from the registry, i.e. from whoever could register one.
        model, processor = load_model(self.model_dir, self.cfg)
        self._generate = make_generate_fn(model, processor, self.cfg, max_new_tokens=settings["max_new_tokens"])
        # The server runs predict in a thread pool; the TPE hooks keep the current forward's timestamps on
        # the model, so two generations at once would mix them up.
        self._lock = threading.Lock()

    # MLflow reads these hints: they become the model's signature and validate every request.
    def predict(self, context: Any, model_input: list[VLMRequest], params: dict | None = None
                ) -> list[dict[str, str | None]]:
        from components.evaluation.answers import extract_answer

        try:
            records = [record_from_request(row, i, self.cfg, self.media_root) for i, row in enumerate(model_input)]
        except RequestError as exc:
            raise MlflowException.invalid_parameter_value(str(exc)) from None
        texts: list[str] = []
        with self._lock:
            # evaluation's batches (evaluate.batch_size, in order): padding a row with others can move a
            # greedy token, so the same batches give the same completions
            for start in range(0, len(records), self.batch_size):
                texts += self._generate(records[start : start + self.batch_size], False)
        return [{"completion": text, "answer": _answer_text(extract_answer(text, record))}
                for text, record in zip(texts, records, strict=True)]


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # weights can be large: a hard link costs nothing
    except OSError:
        shutil.copy2(src, dst)


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
    run: RunHandle,
    model_dir: Path,
    *,
    model_cfg: ModelConfig,
    max_new_tokens: int,
    batch_size: int,
    name: str,
    alias: str = "challenger",
    tags: dict[str, str],
) -> int:
    """Log ``model_dir`` into ``run`` as a pyfunc model, register a version of ``name``, set ``alias``
    on it and ``tags`` (e.g. metrics) on the version; returns the version number.

    ``model_cfg``, ``max_new_tokens`` and ``batch_size`` are what evaluation ran with (``params.model``,
    ``params.evaluate``): the served model generates with them."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir() or not any(model_dir.iterdir()):
        raise FileNotFoundError(f"no saved model folder at {model_dir} (expected config.json and weights)")
    for key, value in (("max_new_tokens", max_new_tokens), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"register_model: {key} must be an integer >= 1, got {value!r}")
    client = MlflowClient(run.tracking_uri)
    safe_tags = clean(tags, MAX_TAG_VAL_LENGTH, "tag", run.root)
    logged = client.create_logged_model(run.experiment_id, name=name, source_run_id=run.run_id)
    # Everything logged goes through the same filter (no secrets, no absolute paths): MLflow's MLmodel (it
    # records where the artifact was copied from), inference.json, and a model folder from elsewhere (its
    # meta.json, configs). Two things go exactly as written, because the text filter would change what runs:
    # a folder this pipeline wrote (its digest.json says so; the filter rewrote the tiny tokenizer's "/s"
    # token to "<external>/s", and the server's load_model checks the digest), and the shipped code (this
    # repository's source, not run data: a "SECRET_KEY = ..." line would lose its value).
    exact = (model_dir / DIGEST_FILE).is_file()
    with (
        _no_pip_check(),
        tempfile.TemporaryDirectory(prefix="mllm4d-pyfunc-") as tmp,
        (nullcontext(model_dir) if exact else redacted_copy(model_dir, run.root)) as folder,
    ):
        inference = Path(tmp) / "inference.json"
        inference.write_text(json.dumps({"model": to_dict(model_cfg), "max_new_tokens": max_new_tokens,
                                         "batch_size": batch_size}, indent=2))
        local = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            str(local),
            python_model=VLMFolderModel(),
            artifacts={MODEL_DIR_ARTIFACT: str(folder), INFERENCE_ARTIFACT: str(inference)},
            code_paths=[str(_CODE)],
            pip_requirements=_pip_requirements(),
        )
        with redacted_copy(local, run.root) as clean_local:
            for unfiltered in ["code", *([f"artifacts/{model_dir.name}"] if exact else [])]:
                shutil.rmtree(clean_local / unfiltered)
                shutil.copytree(local / unfiltered, clean_local / unfiltered, copy_function=_link_or_copy)
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


def download_model_folder(tracking_uri: str, name: str, version: str | int, dst: Path) -> tuple[Path, dict]:
    """A registered version's model folder and the settings its evaluation used (``read_inference_settings``),
    downloaded under ``dst``: what the promotion gate needs to evaluate a champion on new bench records."""
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst),
                                                     tracking_uri=tracking_uri))
    artifacts = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"].get("artifacts", {})
    missing = [a for a in (MODEL_DIR_ARTIFACT, INFERENCE_ARTIFACT) if a not in artifacts]
    if missing:
        raise ValueError(f"{name} version {version} has no {' or '.join(missing)} artifact: it was registered before "
                         "the served model carried its inference settings; register it again")
    return (local / artifacts[MODEL_DIR_ARTIFACT]["path"],
            read_inference_settings(local / artifacts[INFERENCE_ARTIFACT]["path"]))


def promote(name: str, version: int | str, alias: str = "champion", *, tracking_uri: str | None = None) -> None:
    """Point ``alias`` of ``name`` at ``version`` (MLflow's current tracking URI unless given). The promotion
    gate (``components.tracking.promotion``) decides when; this only moves the alias."""
    client = MlflowClient(tracking_uri)
    client.get_model_version(name, str(version))  # a clear error for a version that does not exist
    client.set_registered_model_alias(name, alias, str(version))
    log.info("%s version %s is now @%s", name, version, alias)
