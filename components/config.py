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
class Params:
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    curation: CurationConfig = field(default_factory=CurationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


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
