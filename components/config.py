"""Typed parameters: one dataclass per ``params.yaml`` section.

Defaults live here and only here. ``load_params`` reads a YAML file (``params.yaml`` or a preset under
``presets/``), applies ``-S section.key=value`` overrides and builds the dataclasses; an unknown or
misspelled key is an error that names the file and the key, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ParamsError(ValueError):
    """A params file or override is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class ScenesConfig:
    """The synthetic stereo 4D world (``components.scenes``)."""

    seed: int = 0
    num_clips: int = 24
    num_frames: int = 16
    fps: float = 8.0
    width: int = 320
    height: int = 240
    hfov_deg: float = 60.0
    baseline_m: float = 0.5
    camera_height_m: float = 1.6
    min_objects: int = 2
    max_objects: int = 4
    # Share of clips whose camera moves (forward, backward, sideways, turning); the rest are static.
    ego_motion_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.num_clips < 1:
            raise ParamsError("scenes.num_clips must be >= 1")
        if self.num_frames < 2:
            raise ParamsError("scenes.num_frames must be >= 2: motion needs at least two frames")
        if self.width < 32 or self.height < 32:
            raise ParamsError("scenes.width/height must be >= 32 pixels")
        if self.baseline_m <= 0:
            raise ParamsError("scenes.baseline_m must be > 0 (a stereo rig needs a baseline)")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ParamsError("scenes needs 1 <= min_objects <= max_objects")
        if not 0.0 <= self.ego_motion_fraction <= 1.0:
            raise ParamsError("scenes.ego_motion_fraction must be in [0, 1]")


@dataclass(frozen=True)
class StereoConfig:
    """The disparity estimator (``components.curation.stereo``)."""

    max_disparity: int = 64
    block_size: int = 5
    # Left-right consistency: a pixel whose left and right disparities differ by more than this is invalid.
    lr_max_diff: float = 1.0
    uniqueness_ratio: int = 10
    speckle_window: int = 100
    speckle_range: int = 2
    fill_holes: bool = True

    def __post_init__(self) -> None:
        if self.max_disparity < 16 or self.max_disparity % 16:
            raise ParamsError("curation.stereo.max_disparity must be a positive multiple of 16 (OpenCV SGBM)")
        if self.block_size < 1 or self.block_size % 2 == 0:
            raise ParamsError("curation.stereo.block_size must be odd and >= 1")


@dataclass(frozen=True)
class ThresholdsConfig:
    """Decision thresholds of the question labels. A quantity within ``margin`` (relative) of its
    threshold is ambiguous: a few centimetres of depth noise could flip the label, so it is not asked."""

    still_speed: float = 0.2  # m/s: slower is "not moving"
    distance_change: float = 0.5  # m: a smaller object-camera distance change is "about the same"
    rotation_rate: float = 0.35  # rad/s: slower yaw is "not rotating"
    accel_ratio: float = 1.4  # second-half / first-half speed beyond this is "speeds up" (1/x: "slows down")
    min_distance: float = 0.5  # m: displacement / path questions need at least this much motion
    relation_gap: float = 0.4  # m: left/right and front/behind need at least this separation
    camera_move: float = 0.4  # m: camera displacement that counts as moving
    camera_turn_deg: float = 12.0  # heading change that counts as turning
    margin: float = 0.35

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < 1.0:
            raise ParamsError("curation.thresholds.margin must be in [0, 1)")
        if self.accel_ratio <= 1.0:
            raise ParamsError("curation.thresholds.accel_ratio must be > 1")


@dataclass(frozen=True)
class SplitConfig:
    sft: float = 0.6
    rft: float = 0.2
    bench: float = 0.2

    def __post_init__(self) -> None:
        total = self.sft + self.rft + self.bench
        if abs(total - 1.0) > 1e-6 or min(self.sft, self.rft, self.bench) < 0:
            raise ParamsError(f"curation.splits must be non-negative and sum to 1 (got {total:.3f})")


@dataclass(frozen=True)
class CurationConfig:
    """Stereo video -> 4D QA records (``components.curation``)."""

    seed: int = 0
    frames_per_record: int = 8
    questions_per_clip: int = 24
    num_options: int = 4
    numeric_fraction: float = 0.25
    thresholds: ThresholdsConfig = field(default_factory=ThresholdsConfig)
    stereo: StereoConfig = field(default_factory=StereoConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    workers: int = 2

    def __post_init__(self) -> None:
        if self.frames_per_record < 2:
            raise ParamsError("curation.frames_per_record must be >= 2")
        if self.num_options not in (4, 5):
            raise ParamsError("curation.num_options must be 4 or 5 (the benchmarks' formats)")
        if not 0.0 <= self.numeric_fraction <= 1.0:
            raise ParamsError("curation.numeric_fraction must be in [0, 1]")
        if self.questions_per_clip < 1:
            raise ParamsError("curation.questions_per_clip must be >= 1")
        if self.workers < 1:
            raise ParamsError("curation.workers must be >= 1")


@dataclass(frozen=True)
class QualityConfig:
    """The data gate (``components.quality``)."""

    # Each option letter's share of a split's multiple-choice answers must be within this of uniform.
    letter_balance_tolerance: float = 0.15
    min_records_per_split: int = 10
    required_categories: list[str] = field(default_factory=list)
    max_examples: int = 5

    def __post_init__(self) -> None:
        if not 0.0 < self.letter_balance_tolerance < 1.0:
            raise ParamsError("quality.letter_balance_tolerance must be in (0, 1)")


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: where runs go. ``MLFLOW_TRACKING_URI`` in the environment wins over ``tracking_uri``."""

    experiment: str = "mllm4d"
    # Relative sqlite paths resolve against the project root so that every stage writes one database.
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"
    example_frames: int = 3


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes of the random-init Qwen2.5-VL built when ``model.source`` is ``"tiny"``. The merger's
    output size is the text ``hidden_size`` (Qwen2.5-VL adds image embeddings into the text stream)."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    vocab_size: int = 1024  # BPE vocabulary asked of the tokenizer trainer (templated texts may give fewer)
    vision_depth: int = 2
    vision_hidden_size: int = 64
    vision_heads: int = 4
    vision_intermediate_size: int = 128
    patch_size: int = 14
    spatial_merge_size: int = 2
    temporal_patch_size: int = 2

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size", "vision_depth",
                     "vision_hidden_size", "vision_heads", "vision_intermediate_size", "patch_size",
                     "spatial_merge_size", "temporal_patch_size"):
            if getattr(self, name) < 1:
                raise ParamsError(f"model.tiny.{name} must be >= 1")
        # M-RoPE splits each text head's rotary half into (time, height, width) sections: head_dim % 8.
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 8:
            raise ParamsError("model.tiny.hidden_size / num_heads must be a whole multiple of 8 (M-RoPE sections); "
                              "e.g. hidden_size 128 with 4 heads")
        if self.num_heads % self.num_kv_heads:
            raise ParamsError("model.tiny.num_heads must be a multiple of num_kv_heads (grouped-query attention)")
        # The vision rotary embedding splits each head in (height, width) halves: head_dim % 4.
        if self.vision_hidden_size % self.vision_heads or (self.vision_hidden_size // self.vision_heads) % 4:
            raise ParamsError("model.tiny.vision_hidden_size / vision_heads must be a whole multiple of 4 "
                              "(2D rotary embedding); e.g. 64 with 4 heads")
        if self.vocab_size < 512:
            raise ParamsError("model.tiny.vocab_size must be >= 512 (256 byte symbols + specials + merges)")


@dataclass(frozen=True)
class LoraConfig:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05

    def __post_init__(self) -> None:
        if self.r < 1 or self.alpha < 1:
            raise ParamsError("model.lora.r and model.lora.alpha must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ParamsError("model.lora.dropout must be in [0, 1)")


@dataclass(frozen=True)
class TrainableConfig:
    """Which parts train (torchtune's ``encoder_trainable``). Default: 4D-RGPT Tab. 7's best setting,
    vision tower frozen, projector and LLM trained in full."""

    vision: Literal["frozen", "full", "lora"] = "frozen"
    projector: Literal["frozen", "full"] = "full"
    llm: Literal["frozen", "full", "lora"] = "full"

    def __post_init__(self) -> None:
        if (self.vision, self.projector, self.llm) == ("frozen", "frozen", "frozen"):
            raise ParamsError("model.trainable: every part is frozen, so nothing would train; "
                              "set llm (or projector / vision) to full or lora")


@dataclass(frozen=True)
class ModelConfig:
    """The model and how records become its inputs (``components.models``).

    ``source`` is ``"tiny"`` (a random-init Qwen2.5-VL of ``tiny``'s sizes, built with a local tokenizer)
    or a local folder / pre-downloaded hub name of a Qwen2.5-VL or Qwen3-VL checkpoint."""

    source: str = "tiny"
    seed: int = 0
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    num_frames: int = 4  # of a record's frames, picked uniformly with the first and the last
    frame_size: int = 56  # square side in pixels, a multiple of patch_size * spatial_merge_size
    # "images": one image per frame (both TRL trainers pass them to the loss); "video": one video input.
    visual_input: Literal["images", "video"] = "images"
    # "text": answer with the option's text. A random-init model cannot bind letters to shuffled
    # options in a CPU budget (STACK.md), so the tiny presets answer with the text; checkpoints: "letter".
    answer_format: Literal["letter", "text"] = "text"
    with_cot: bool = False  # assistant target: the ST-CoT (True) or only <answer>...</answer>
    trainable: TrainableConfig = field(default_factory=TrainableConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    # CPU only: torch threads (0 = torch's default). Tiny models run faster on one thread, and on a shared
    # 2-core machine two threads per process oversubscribe the cores (measured 5-15x slower SFT).
    cpu_threads: int = 0

    def __post_init__(self) -> None:
        if not self.source.strip():
            raise ParamsError("model.source must be 'tiny' or a checkpoint folder / hub name")
        if self.num_frames < 1:
            raise ParamsError("model.num_frames must be >= 1")
        factor = self.tiny.patch_size * self.tiny.spatial_merge_size
        if self.source == "tiny" and (self.frame_size < factor or self.frame_size % factor):
            raise ParamsError(f"model.frame_size must be a positive multiple of {factor} (patch_size x "
                              f"spatial_merge_size), or the processor rescales every frame; e.g. {2 * factor}")
        if self.visual_input == "video" and self.num_frames % self.tiny.temporal_patch_size:
            raise ParamsError(f"model.num_frames must be a multiple of temporal_patch_size "
                              f"({self.tiny.temporal_patch_size}) with visual_input 'video', or the last frame is "
                              "duplicated to fill a patch; pick an even number")
        if self.attn_implementation == "flash_attention_2" and self.dtype == "float32":
            raise ParamsError("model.attn_implementation flash_attention_2 needs dtype bfloat16 or float16; "
                              "use sdpa for float32")


@dataclass(frozen=True)
class TrainingGateConfig:
    """The gate after a training stage: loss finite and fallen, the checkpoint reloads and answers."""

    records: int = 16  # bench records the reloaded checkpoint answers
    min_format_valid: float = 0.5  # share of those answers with a parseable <answer> tag
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_format_valid <= 1.0:
            raise ParamsError("gate.min_format_valid must be in [0, 1]")


@dataclass(frozen=True)
class SFTConfig:
    """Supervised fine-tuning (``components.training.sft``): TRL's SFTTrainer on the sft split."""

    seed: int = 0
    max_steps: int = 300
    batch_size: int = 32
    grad_accum: int = 1
    learning_rate: float = 1e-3
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logging_steps: int = 10
    save_steps: int = 100
    gradient_checkpointing: bool = False  # GPU only: it slows a CPU run and saves nothing worth having
    deepspeed: str = ""  # GPU workers: infra/deepspeed/zero2.json or zero3.json
    gate: TrainingGateConfig = field(default_factory=TrainingGateConfig)

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ParamsError("sft.max_steps, batch_size and grad_accum must be >= 1")
        if not self.learning_rate > 0:
            raise ParamsError("sft.learning_rate must be > 0")
        if self.deepspeed and not self.deepspeed.endswith(".json"):
            raise ParamsError("sft.deepspeed must be a DeepSpeed JSON config path (infra/deepspeed/*.json) or ''")


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation on the bench split (``components.evaluation``)."""

    batch_size: int = 16
    max_new_tokens: int = 32
    max_records: int = 0  # 0 = every bench record
    blind_baseline: bool = True  # the same model with blank frames: beats random but not blind = text priors
    register: bool = True  # register the evaluated checkpoint in the MLflow registry (alias challenger)
    registered_model: str = "mllm4d"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.max_records < 0:
            raise ParamsError("evaluate.batch_size and max_new_tokens must be >= 1, max_records >= 0")


@dataclass(frozen=True)
class Params:
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    curation: CurationConfig = field(default_factory=CurationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def __post_init__(self) -> None:
        if self.model.num_frames > self.curation.frames_per_record:
            raise ParamsError(f"model.num_frames ({self.model.num_frames}) exceeds curation.frames_per_record "
                              f"({self.curation.frames_per_record}): records carry only that many frames")


def _build(cls: type, data: Any, where: str, source: str) -> Any:
    """Build dataclass ``cls`` from a mapping, recursing into nested dataclasses; strict on keys."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"{source}: '{where}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ParamsError(
            f"{source}: unknown key(s) {', '.join(where + '.' + k if where else k for k in unknown)}; "
            f"valid keys of '{where or 'params'}': {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}" if where else name, source)
    try:
        return cls(**kwargs)
    except ParamsError as exc:
        raise ParamsError(f"{source}: {exc}") from None


def _coerce(tp: Any, value: Any, where: str, source: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ParamsError(f"{source}: {where} must be one of {typing.get_args(tp)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(args[0], value, where, source)
    if origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{source}: {where} must be a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(item, v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ParamsError(f"{source}: {where} must be {tp.__name__}, got {value!r}")
    return value


def _apply_override(tree: dict, override: str) -> None:
    if "=" not in override:
        raise ParamsError(f"override {override!r} must look like section.key=value")
    dotted, raw = override.split("=", 1)
    keys = dotted.strip().split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ParamsError(f"override {override!r}: '{key}' is not a section")
    node[keys[-1]] = yaml.safe_load(raw)


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read a params file, apply ``section.key=value`` overrides, and validate everything."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    for override in overrides:
        _apply_override(tree, override)
    return _build(Params, tree, "", str(path))


def to_dict(obj: Any) -> dict:
    return dataclasses.asdict(obj)


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the form MLflow params take."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out
