"""The model factory: build the base model once, then load it (and anything trained from it) by path.

Departure from the papers: MLLM-4D and 4D-RGPT fine-tune 7-8B Qwen-VL checkpoints. Nothing can be
downloaded here, so the embedded default (``model.source: tiny``) builds a seeded, random-init
``Qwen2_5_VLForConditionalGeneration`` of the same architecture (vision tower, merger, M-RoPE LLM) with
a tokenizer trained on the curated texts: every later stage runs on a CPU in seconds, through the same
code that loads a real checkpoint (``model.source: Qwen/Qwen2.5-VL-7B-Instruct`` or a local folder).

Lineage: ``build_base_model`` writes ``meta.json`` (config, parameter counts per part, seed,
digest of the tokenizer texts); for a real checkpoint it copies nothing and ``meta.json`` points at it,
so downstream code always calls ``load_model(base_dir)``. Loading checks folder, ``model_type`` and
safetensors weights before any weight is read, and never runs remote code or unpickles ``.bin`` files.

Integrity: every folder this module writes carries ``digest.json`` (the sha256 of each file, and one over
them all, which the stages' ``meta.json`` record as lineage). ``load_model`` checks it when present (the
training stages insist on it), checks each safetensors file is whole, and refuses weights that leave a
parameter missing, bring unexpected ones, do not match the architecture or are not finite: such a model
would otherwise load with a random-init part and train or score silently wrong.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedModel,
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLImageProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.image_utils import SizeDict

from components.config import ModelConfig, to_dict
from components.io import (
    check_folder_digest,
    combined_digest,
    folder_file_digests,
    read_folder_digest,
    write_folder_digest,
    write_json,
)
from components.models.tokenizer import EOS_TOKEN, PAD_TOKEN, train_tokenizer
from components.models.tpe import enable_timestamps, install_tpe
from components.models.trainable import parameter_counts

log = logging.getLogger(__name__)

SUPPORTED_MODEL_TYPES = ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe")
_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DIGEST = "digest.json"  # in every model folder a stage writes: sha256 per file (components.io.write_folder_digest)


class ModelNotAvailableError(FileNotFoundError):
    """A hub name that is neither a local folder nor in the local Hugging Face cache."""


class ModelIntegrityError(ValueError):
    """A model folder (or checkpoint) whose weights are not what loading it promises: a file changed since it
    was written, truncated, with missing, unexpected or misshaped tensors, or with non-finite values."""


@contextlib.contextmanager
def _atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``out_dir``; it replaces ``out_dir`` only if the block succeeds."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        yield tmp
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        if out_dir.exists():
            os.replace(out_dir, old)  # a folder cannot be os.replace'd over a non-empty one
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tiny_config(cfg: ModelConfig, tokenizer: Any) -> Qwen2_5_VLConfig:
    t = cfg.tiny
    # M-RoPE sections over the rotary half of a head, in Qwen2.5-VL's proportions (16, 24, 24 of 64).
    half = t.hidden_size // t.num_heads // 2
    temporal = half // 4
    height = (half - temporal) // 2
    token_id = tokenizer.convert_tokens_to_ids
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_layers,
            "num_attention_heads": t.num_heads,
            "num_key_value_heads": t.num_kv_heads,
            "max_position_embeddings": 32768,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                                "mrope_section": [temporal, height, half - temporal - height]},
            "bos_token_id": None,
            "eos_token_id": token_id(EOS_TOKEN),
            "pad_token_id": token_id(PAD_TOKEN),
        },
        vision_config={
            "depth": t.vision_depth,
            "hidden_size": t.vision_hidden_size,
            "intermediate_size": t.vision_intermediate_size,
            "num_heads": t.vision_heads,
            "patch_size": t.patch_size,
            "spatial_merge_size": t.spatial_merge_size,
            "temporal_patch_size": t.temporal_patch_size,
            "out_hidden_size": t.hidden_size,  # the merger feeds the LLM's embedding stream
            "window_size": 112,  # Qwen2.5-VL's window attention; the last block attends globally
            "fullatt_block_indexes": [t.vision_depth - 1],
            "tokens_per_second": 2,
        },
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def _fit_processor(processor: ProcessorMixin, cfg: ModelConfig) -> None:
    """Pixel bounds for ``frame_size`` frames: the processor neither upscales (Qwen's video default would
    blow a 56x56 frame up to ~316x316) nor downscales them. ``frames_for`` already resizes exactly."""
    image_processor = processor.image_processor
    factor = image_processor.patch_size * image_processor.merge_size
    if cfg.frame_size % factor:
        raise ValueError(f"model.frame_size {cfg.frame_size} is not a multiple of {factor} (patch x merge of this "
                         f"checkpoint); use e.g. {factor * max(1, round(cfg.frame_size / factor))}")
    for sub in (image_processor, getattr(processor, "video_processor", None)):
        if sub is not None:
            sub.size = SizeDict(shortest_edge=factor * factor, longest_edge=cfg.frame_size * cfg.frame_size)


def build_base_model(cfg: ModelConfig, texts: Iterable[str], out_dir: Path) -> Path:
    """Write the base model to ``out_dir`` (tiny) or validate the checkpoint (real); returns ``out_dir``.

    ``texts`` train the tiny model's tokenizer (the curated prompts and targets: ``tokenizer_corpus``);
    they are ignored for a real checkpoint, whose own tokenizer is used.
    """
    out_dir = Path(out_dir)
    texts = list(texts)
    digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()
    meta: dict[str, Any] = {"source": cfg.source, "seed": cfg.seed, "config": to_dict(cfg),
                            "texts": {"count": len(texts), "sha256": digest}}
    if cfg.source != "tiny":
        path = resolve_source(cfg.source)
        model_type = _check_folder(path)
        _fit_processor(AutoProcessor.from_pretrained(path, trust_remote_code=False), cfg)
        with _atomic_dir(out_dir) as tmp:
            write_json(tmp / "meta.json", {**meta, "model_path": str(path.resolve()), "model_type": model_type,
                                           "parameters": _safetensors_counts(path)})
        log.info("base model: %s (%s) at %s; nothing copied", cfg.source, model_type, path)
        return out_dir
    if not texts:
        raise ValueError("build_base_model needs texts to train the tiny model's tokenizer (the curated prompts)")
    tokenizer = train_tokenizer(texts, cfg.tiny.vocab_size)
    hf_config = _tiny_config(cfg, tokenizer)
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
        torch.manual_seed(cfg.seed)
        model = Qwen2_5_VLForConditionalGeneration(hf_config)
    model.generation_config.eos_token_id = [tokenizer.convert_tokens_to_ids(EOS_TOKEN), tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    t = cfg.tiny
    kwargs = {"patch_size": t.patch_size, "merge_size": t.spatial_merge_size, "temporal_patch_size": t.temporal_patch_size}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**kwargs),
        video_processor=Qwen2VLVideoProcessor(**kwargs, cap_pixels_per_frame=False),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    _fit_processor(processor, cfg)
    counts = {part: c["total"] for part, c in parameter_counts(model).items()}
    with _atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        write_json(tmp / "meta.json", {**meta, "model_type": hf_config.model_type, "parameters": counts,
                                       "vocab_size": len(tokenizer)})
        write_folder_digest(tmp, DIGEST)
    log.info("built tiny Qwen2.5-VL: %s parameters (%s) in %s", f"{counts['all']:,}",
             ", ".join(f"{p} {counts[p]:,}" for p in ("vision", "projector", "llm")), out_dir)
    return out_dir


def save_model(model: PreTrainedModel, processor: ProcessorMixin, out_dir: Path) -> Path:
    """Save a (trained) model, its processor and their ``digest.json`` atomically; LoRA adapters are merged
    into the weights, so the folder loads with ``load_model`` like any checkpoint."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    with _atomic_dir(Path(out_dir)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        processor.save_pretrained(tmp)
        write_folder_digest(tmp, DIGEST)
    return Path(out_dir)


def model_digest(source: str | Path) -> str:
    """The identity of the model folder ``source`` loads from, for lineage and resuming: the digest its
    ``digest.json`` records (every folder a stage writes has one), else one sha256 over its files (a hub model
    or an external folder; for a 7B checkpoint that reads its ~15 GB once)."""
    path = resolve_source(source)
    return read_folder_digest(path, DIGEST) or combined_digest(folder_file_digests(path))


def resolve_source(source: str | Path) -> Path:
    """A checkpoint folder for ``source``: a local path, a ``build_base_model`` folder pointing at one,
    or a hub name already in the local Hugging Face cache. Never downloads."""
    if str(source) == "tiny":
        raise ValueError("model.source 'tiny' is built, not loaded: build_base_model(cfg, texts, out_dir), then "
                         "load_model(out_dir, cfg)")
    path = Path(source).expanduser()
    if path.is_dir():
        meta = path / "meta.json"
        if not (path / "config.json").exists() and meta.exists():
            target = json.loads(meta.read_text()).get("model_path")
            if target:
                return resolve_source(target)
        return path
    if path.exists():
        raise ValueError(f"model source {path} is a file; it must be a checkpoint folder")
    text = str(source)
    if _HUB_NAME.fullmatch(text) and not text.startswith(("./", "../", "~")):
        from huggingface_hub import constants, snapshot_download

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except Exception as exc:  # LocalEntryNotFoundError and friends: the message below says what to do
            raise ModelNotAvailableError(
                f"model '{text}' is neither a local folder ({path.resolve()}) nor in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}); this machine cannot download it. On a machine with network run "
                f"`hf download {text}` with HF_HOME pointing at a cache this machine can read, then set HF_HOME "
                f"here too; or download to a folder and set model.source to that path."
            ) from exc
    raise FileNotFoundError(f"model folder not found: {path.resolve()} (model.source={text!r})")


def _check_folder(path: Path) -> str:
    """``model_type`` of a checkpoint folder, after checking it is a supported, safetensors checkpoint."""
    config = path / "config.json"
    if not config.exists():
        raise ValueError(f"{path} has no config.json: not a transformers checkpoint (nor a base-model folder)")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{path} holds a model of type {model_type!r}; this pipeline needs one of "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)} (a Qwen2.5-VL or Qwen3-VL checkpoint)")
    if not list(path.glob("*.safetensors")) and not (path / "model.safetensors.index.json").exists():
        raise ValueError(f"{path} has no .safetensors weights; pickled .bin weights are refused (they can run "
                         "code when loaded): convert the checkpoint to safetensors first")
    return model_type


def _safetensors_counts(path: Path) -> dict[str, int]:
    """Parameter counts per part from the safetensors headers, without reading any weight."""
    from safetensors import safe_open

    from components.models.trainable import part_of

    counts = {"vision": 0, "projector": 0, "llm": 0, "all": 0}
    for file in sorted(path.glob("*.safetensors")):
        with safe_open(file, framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 (safe_open is not a mapping)
                n = 1
                for dim in fh.get_slice(name).get_shape():
                    n *= dim
                counts[part_of(name)] += n
                counts["all"] += n
    return counts


def apply_cpu_threads(cfg: ModelConfig) -> None:
    """``model.cpu_threads`` on a machine without CUDA (0: torch's default), for this process: the student and
    the teacher (which trains beside the SFTs in ``make run``) alike."""
    if cfg.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(cfg.cpu_threads)


def load_model(source: str | Path, cfg: ModelConfig, *, for_training: bool = False,
               require_digest: bool = False) -> tuple[PreTrainedModel, ProcessorMixin]:
    """``(model, processor)`` from a checkpoint folder, a base-model folder or a cached hub name.

    On a machine without CUDA the model loads in float32 with sdpa whatever ``cfg`` asks (bf16 matmuls
    and flash-attention do not run there). The processor pads on the right for training and on the
    left for generation. The model stays on the CPU: the trainer or caller moves it.

    The folder's ``digest.json`` is checked when there is one (``require_digest``: it must be there, as in a
    folder an earlier stage wrote); the weights must be whole, fit the architecture exactly and be finite
    (``ModelIntegrityError`` naming the folder and the first bad file or tensor).
    """
    path = resolve_source(source)
    model_type = _check_folder(path)
    _check_digest(path, require=require_digest)
    for file in sorted(path.glob("*.safetensors")):
        _check_safetensors_file(file)
    apply_cpu_threads(cfg)
    dtype, attn = _DTYPES[cfg.dtype], cfg.attn_implementation
    if not torch.cuda.is_available() and (dtype != torch.float32 or attn == "flash_attention_2"):
        log.warning("no CUDA device: loading %s in float32 with sdpa instead of %s / %s", path, cfg.dtype, attn)
        dtype, attn = torch.float32, "sdpa"
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    _fit_processor(processor, cfg)
    processor.tokenizer.padding_side = "right" if for_training else "left"
    model, info = AutoModelForImageTextToText.from_pretrained(
        path, dtype=dtype, attn_implementation=attn, trust_remote_code=False, use_safetensors=True,
        output_loading_info=True,
    )
    _check_loaded(path, model, info)
    model.train(for_training)  # use_cache stays on: GRPO generates with the training model
    if cfg.time_cue == "tpe":
        enable_timestamps(processor)
        install_tpe(model, cfg.tpe_max_timescale, cfg.tpe_scale)
    log.info("loaded %s (%s, %s, %s) from %s", type(model).__name__, model_type, dtype, attn, path)
    return model, processor


def _check_digest(path: Path, *, require: bool) -> None:
    """A folder this pipeline wrote must still hold what it wrote: a swapped, edited or cut file is refused."""
    if not (path / DIGEST).is_file():
        if require:
            raise ModelIntegrityError(f"{path} has no {DIGEST}: every model folder a stage writes has one, so this "
                                      "one was not written whole or not by this pipeline; re-run the stage that makes it")
        log.debug("%s has no %s: an external checkpoint, loaded without a digest check", path, DIGEST)
        return
    try:
        check_folder_digest(path, DIGEST)
    except ValueError as exc:
        raise ModelIntegrityError(f"model folder {path}: {exc}") from None


def _check_safetensors_file(file: Path) -> None:
    """The file opens as whole safetensors: safetensors' own error for a truncated file does not name it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt"):
            pass
    except (SafetensorError, OSError) as exc:
        raise ModelIntegrityError(f"{file}: not a whole safetensors file ({exc}): truncated or corrupted") from None


def _first(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    return f"{len(keys)} (first: {keys[0]})"


def _check_loaded(path: Path, model: PreTrainedModel, info: dict) -> None:
    """Every parameter came from the checkpoint with its shape, nothing was left over, the class is the one the
    checkpoint was saved from, and every weight is finite. transformers only warns about the first three and
    fills the gaps with random values (a Qwen config beside GPT-2 weights loads as a random model)."""
    problems = []
    if info.get("missing_keys"):
        problems.append(f"missing {_first(info['missing_keys'])}")
    if info.get("unexpected_keys"):
        problems.append(f"unexpected {_first(info['unexpected_keys'])}")
    if info.get("mismatched_keys"):
        name, got, want = min(info["mismatched_keys"])
        problems.append(f"misshaped {len(info['mismatched_keys'])} (first: {name} {tuple(got)}, the model needs "
                        f"{tuple(want)})")
    if info.get("conversion_errors"):
        problems.append(f"not convertible {_first(info['conversion_errors'])}")
    if problems:
        raise ModelIntegrityError(f"{path}: the weights do not fit {type(model).__name__}: {'; '.join(problems)}. "
                                  "They belong to another model or configuration, or were saved partially")
    architectures = model.config.architectures or []
    if architectures and type(model).__name__ not in architectures:
        raise ModelIntegrityError(f"{path}: config.json declares {architectures}, loaded as {type(model).__name__}: "
                                  "not the architecture this pipeline trains and evaluates")
    bad = first_non_finite(model.state_dict().items())
    if bad is not None:
        raise ModelIntegrityError(f"{path}: tensor {bad} holds NaN or infinite values")


def first_non_finite(tensors: Iterable[tuple[str, torch.Tensor]]) -> str | None:
    """The name of the first floating-point tensor with a NaN or an infinity; None when all are finite."""
    for name, tensor in tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def load_checkpoint_weights(model: PreTrainedModel, folder: Path) -> int:
    """Load a training checkpoint's full weights into ``model`` under the model's own parameter names, all or
    nothing; returns how many tensors were loaded.

    Why this exists: transformers 5 keeps Qwen-VL weights under new names in memory (``model.language_model.*``,
    ``model.visual.*``) and ``save_pretrained`` (so every Trainer checkpoint) writes them back under the original
    ones (``model.layers.*``, ``visual.*``). ``Trainer._load_from_checkpoint`` loads them with
    ``load_state_dict(strict=False)`` and no renaming: every weight but ``lm_head`` was skipped with a warning
    (huggingface/transformers#43701). Here the renaming ``from_pretrained`` applied to this model is applied to the
    checkpoint, and anything missing, unexpected, misshaped or non-finite is refused before a weight changes.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    saved: dict[str, torch.Tensor] = {}
    for file in _weight_files(folder):
        _check_safetensors_file(file)
        saved.update(load_file(str(file), device="cpu"))
    state = _to_model_names(model, saved, folder)
    expected = model.state_dict()
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})  # saved once, under their source's name
    problems = []
    if missing := set(expected) - set(state) - tied:
        problems.append(f"missing {_first(missing)}")
    if unexpected := set(state) - set(expected):
        problems.append(f"unexpected {_first(unexpected)}")
    if misshaped := {k for k in set(state) & set(expected) if state[k].shape != expected[k].shape}:
        problems.append(f"misshaped {_first(misshaped)}")
    if problems:
        raise ModelIntegrityError(f"checkpoint {folder} does not fit the model being trained: {'; '.join(problems)}")
    if (bad := first_non_finite(state.items())) is not None:
        raise ModelIntegrityError(f"checkpoint {folder}: tensor {bad} holds NaN or infinite values")
    model.load_state_dict(state, strict=False)  # strict but for the tied copies, checked above
    return len(state)


def _weight_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [folder / "model.safetensors"]


def _to_model_names(model: PreTrainedModel, saved: dict[str, torch.Tensor], folder: Path) -> dict[str, torch.Tensor]:
    """Checkpoint names -> the model's names, with the renamings ``from_pretrained`` used for this model (the ones
    ``save_pretrained`` reverted); the default mapping of its class when it was built, not loaded."""
    from transformers.conversion_mapping import get_model_conversion_mapping
    from transformers.core_model_loading import (
        PrefixChange,
        WeightConverter,
        WeightRenaming,
        rename_source_key,
    )

    conversions = getattr(model, "_weight_conversions", None)
    if conversions is None:  # as revert_weight_conversion does for a model that was not loaded
        conversions = [c for c in get_model_conversion_mapping(model, add_legacy=False) if not isinstance(c, PrefixChange)]
    renamings = [c for c in conversions if isinstance(c, WeightRenaming)]
    converters = [c for c in conversions if isinstance(c, WeightConverter)]
    state = {}
    for key, tensor in saved.items():
        name, converter = rename_source_key(key, renamings, converters)
        if converter is not None:  # fused or split tensors (MoE experts): not a renaming, not handled here
            raise NotImplementedError(f"checkpoint {folder}: {key} is stored in a converted layout ({converter}); "
                                      "resuming such a model needs DeepSpeed or FSDP checkpoints")
        state[name] = tensor
    return state
