"""Typed parameters: one dataclass per ``params.yaml`` section.

Defaults live here and only here. ``load_params`` reads a YAML file (``params.yaml`` or a preset under
``presets/``), applies ``-S section.key=value`` overrides and builds the dataclasses; an unknown or
misspelled key is an error that names the file and the key, never silently ignored.

Files and override values are read with YAML 1.2's core schema (``_Yaml12Loader``), as DVC reads
``params.yaml``: ``1e-3`` is a float (PyYAML's YAML 1.1 reads it as a string), ``010`` is ten, and only
``true``/``false`` are booleans. Every float parameter must be finite: ``.nan`` or ``.inf`` is refused
with the key named, before any stage runs.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ParamsError(ValueError):
    """A params file or override is invalid; the message names the file and the key."""


class _Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema scalars: booleans, ints and floats.

    PyYAML implements YAML 1.1, where a float needs a dot (``1e-3`` is the string "1e-3"), ``yes``/``off``
    are booleans and ``010`` is octal; YAML 1.2 (and DVC, which reads the same ``params.yaml``) disagree.
    """


_CORE_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _CORE_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _yaml12_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):  # YAML 1.2: only these prefixes change the base ("010" is ten)
        return int(text, 8 if text[1] == "o" else 16)
    return int(text, 10)


def _yaml12_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith((".inf", ".nan")):
        return float(text.replace(".", ""))  # "-.inf" -> float("-inf"), ".nan" -> float("nan")
    return float(text)


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _yaml12_int)
_Yaml12Loader.add_constructor("tag:yaml.org,2002:float", _yaml12_float)


def parse_yaml(text: str) -> Any:
    """YAML text -> Python values, with YAML 1.2 core-schema scalars (``1e-3`` is a float)."""
    return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass: no arbitrary objects


@dataclass(frozen=True)
class ScenesConfig:
    """The synthetic stereo 4D world (``components.scenes``)."""

    seed: int = 0
    num_clips: int = 24
    num_frames: int = 16
    fps: float = 8.0
    fps_choices: tuple[float, ...] = ()  # non-empty: each clip takes one of these rates (a tuple: hashable)
    width: int = 320
    height: int = 240
    hfov_deg: float = 60.0
    baseline_m: float = 0.5
    camera_height_m: float = 1.6
    min_objects: int = 2
    max_objects: int = 4
    # Sizes are drawn in 0.4-1.5 m and multiplied by this: at 56 px a 1 m object 7 m away is ~7 px wide, so the
    # tiny presets can make objects larger (real video needs no such knob). Measured: larger objects hide the
    # background whose shift is the camera's motion, and the default learned less (learning_ladder.md).
    object_scale: float = 1.0
    # Share of clips whose camera moves (forward, backward, sideways, turning); the rest are static.
    ego_motion_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.num_clips < 1:
            raise ParamsError("scenes.num_clips must be >= 1")
        if self.num_frames < 2:
            raise ParamsError("scenes.num_frames must be >= 2: motion needs at least two frames")
        if self.width < 32 or self.height < 32:
            raise ParamsError("scenes.width/height must be >= 32 pixels")
        if any(f <= 0 for f in self.fps_choices) or self.fps <= 0:
            raise ParamsError("scenes.fps and every scenes.fps_choices entry must be > 0")
        if self.baseline_m <= 0:
            raise ParamsError("scenes.baseline_m must be > 0 (a stereo rig needs a baseline)")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ParamsError("scenes needs 1 <= min_objects <= max_objects")
        if not 0.0 <= self.ego_motion_fraction <= 1.0:
            raise ParamsError("scenes.ego_motion_fraction must be in [0, 1]")
        if not 0.1 <= self.object_scale <= 4.0:
            raise ParamsError("scenes.object_scale must be in [0.1, 4]")


@dataclass(frozen=True)
class SourceConfig:
    """Where the clips come from (the ``scenes`` stage): the synthetic renderer (the embedded default, the
    ``scenes`` section) or a real stereo dataset read by ``components.sources`` and cut into clips."""

    format: Literal["synthetic", "folder", "karlsruhe", "kitti", "stereo4d"] = "synthetic"
    root: str = ""  # the dataset's folder (a real format only)
    window: int = 16  # frames per clip
    stride: int | None = None  # frames between clip starts (None: the window, no overlap)
    poses: bool = True  # false: drop the dataset's poses, so that they are estimated from the video

    def __post_init__(self) -> None:
        if self.format != "synthetic" and not self.root:
            raise ParamsError(f"source.root is empty: the {self.format} format reads a dataset folder; set "
                              "source.root to it (or source.format: synthetic for the rendered clips)")
        if self.window < 2:
            raise ParamsError("source.window must be >= 2 frames")
        if self.stride is not None and self.stride < 1:
            raise ParamsError("source.stride must be >= 1 (or null: the window)")


@dataclass(frozen=True)
class StereoConfig:
    """The disparity estimator (``components.curation.stereo``)."""

    max_disparity: int = 64
    # The nearest depth to resolve (m): a clip whose fx * baseline / min_depth_m exceeds max_disparity gets that
    # wider search (rounded up to 16), so full-resolution driving stereo (fx 645 px, 0.57 m) sees cars at 2.5 m.
    min_depth_m: float = 2.5
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
        if not self.min_depth_m > 0:
            raise ParamsError("curation.stereo.min_depth_m must be > 0")


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
class DiscoveryConfig:
    """Moving-object discovery (``components.curation.discovery``). Pixel sizes are for the frame as given."""

    # Frames are compared with the ones this many seconds before and after (at least one frame apart):
    # slow objects need a longer interval to move further than the noise.
    pair_interval_s: float = 0.3
    blur_sigma: float = 1.0  # px: pre-smoothing of the grey images (widens the linear range of the residual)
    # Noise model of the residual: camera noise (grey levels), the warp's error apart from depth (px: pose
    # and interpolation) and the stereo disparity error (px), which moves a predicted pixel by its parallax
    # times the relative depth error.
    intensity_noise: float = 2.0
    warp_noise_px: float = 0.3
    disparity_noise_px: float = 0.25
    # A pixel moves when its residual, in units of that noise, exceeds this in both neighbouring pairs.
    residual_sigmas: float = 2.5
    # Motion in depth: the predicted depth of a still point against the depth measured where it should
    # be, in standard deviations of the stereo depth error (0 disables the depth test).
    depth_sigmas: float = 4.0
    # Absorb a global image shift left after the warp (one Lucas-Kanade translation step on the whole
    # frame): the rotation error of visually estimated poses.
    compensate_pose_error: bool = True
    open_px: int = 3  # morphological opening (removes speckle), then closing (fills an object's holes)
    close_px: int = 7
    min_area: float = 0.0015  # fraction of the frame: smaller regions are noise
    depth_jump: float = 0.06  # relative depth step between neighbouring pixels that splits a region in 3D
    refine_px: int = 3  # regions snap to the pixels at their depth within this distance (0: no refinement)
    max_object_speed: float = 5.0  # m/s: the 3D gate of frame-to-frame association (plus ``gate_margin_m``)
    gate_margin_m: float = 0.5
    # A track moves when its fitted speed exceeds ``thresholds.still_speed`` by this many standard errors of the fit.
    speed_sigmas: float = 3.0
    max_gap: int = 3  # frames a track may go unseen; gaps are filled by shifting the nearest mask
    min_track_frames: int = 3  # a track must be observed in at least max(this, fraction * T) frames
    min_track_fraction: float = 0.25
    # Keep tracks found still (rotating in place, or clutter at depth edges) with ``moving`` False.
    keep_still: bool = False
    # Large static objects (parked cars, poles, shelters...): per frame the ground plane is fitted (RANSAC on
    # the lower image half), the 3D points in a height band above it and nearer than ``static_max_depth_m``
    # (where stereo is reliable) are binned on a bird's-eye grid of ``static_cell_m`` cells and split into
    # blobs; blobs of object size are linked over the clip by their constant WORLD position (``static_gate_m``
    # plus 5% of the depth) and kept when seen in ``static_min_track_fraction`` of the frames. They get the
    # ids after the moving objects, ``moving`` False; at most ``static_max_objects`` (longest seen, largest).
    static_objects: bool = True
    static_max_depth_m: float = 40.0
    static_min_height_m: float = 0.3  # height band above the ground plane (m): below it is road / curb
    static_max_height_m: float = 4.0  # above it: canopies, upper floors
    static_ground_tolerance_m: float = 0.15  # RANSAC inlier distance to the plane
    static_cell_m: float = 0.25
    static_min_size_m: float = 0.3  # horizontal extent of a blob (its longest side on the grid)
    static_max_size_m: float = 6.0  # wider: a facade, a wall, or a row of cars (then split, see below)
    # Longer blobs are cut along their long axis where no point reaches this height (the gaps between
    # parked cars, a low fence joining them); 0 disables the split.
    static_split_height_m: float = 1.2
    static_min_object_height_m: float = 0.8  # a blob needs a point this high (curbs, ground noise stay low)
    static_min_area: float = 0.002  # fraction of the frame, per frame
    static_max_area: float = 0.25  # larger blobs are backdrop, not objects
    static_gate_m: float = 1.5
    # A static object must be detected in ``static_min_detected_fraction`` of the frames and seen (detected,
    # or its 3D points projected with the poses and confirmed by the depth there) in ``static_min_track_fraction``.
    static_min_detected_fraction: float = 0.25
    static_min_track_fraction: float = 0.5
    static_max_objects: int = 10
    # The static pass works on every n-th pixel in both directions (frames narrower than 320 px after it
    # are used whole).
    static_subsample: int = 2

    def __post_init__(self) -> None:
        for name in ("pair_interval_s", "intensity_noise", "warp_noise_px", "disparity_noise_px",
                     "residual_sigmas", "max_object_speed", "depth_jump"):
            if not getattr(self, name) > 0:
                raise ParamsError(f"curation.discovery.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("blur_sigma", "depth_sigmas", "gate_margin_m", "open_px", "close_px", "refine_px", "max_gap"):
            if getattr(self, name) < 0:
                raise ParamsError(f"curation.discovery.{name} must be >= 0 (0 disables it), got {getattr(self, name)!r}")
        if not 0 < self.min_area < 1:
            raise ParamsError(f"curation.discovery.min_area is a fraction of the frame: in (0, 1), got {self.min_area}")
        if self.min_track_frames < 1 or not 0 <= self.min_track_fraction <= 1:
            raise ParamsError("curation.discovery needs min_track_frames >= 1 and min_track_fraction in [0, 1]")
        for name in ("static_max_depth_m", "static_max_height_m", "static_ground_tolerance_m", "static_cell_m",
                     "static_max_size_m", "static_gate_m"):
            if not getattr(self, name) > 0:
                raise ParamsError(f"curation.discovery.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.static_min_height_m < self.static_max_height_m:
            raise ParamsError("curation.discovery needs 0 <= static_min_height_m < static_max_height_m, got "
                              f"{self.static_min_height_m} and {self.static_max_height_m}")
        if not 0 <= self.static_min_size_m < self.static_max_size_m or self.static_min_object_height_m < 0:
            raise ParamsError("curation.discovery needs 0 <= static_min_size_m < static_max_size_m and "
                              "static_min_object_height_m >= 0")
        if not 0 < self.static_min_area < self.static_max_area <= 1:
            raise ParamsError("curation.discovery needs 0 < static_min_area < static_max_area <= 1 (fractions of "
                              f"the frame), got {self.static_min_area} and {self.static_max_area}")
        if self.static_subsample < 1 or self.static_split_height_m < 0:
            raise ParamsError("curation.discovery needs static_subsample >= 1 and static_split_height_m >= 0, got "
                              f"{self.static_subsample} and {self.static_split_height_m}")
        if not 0 <= self.static_min_detected_fraction <= 1:
            raise ParamsError("curation.discovery.static_min_detected_fraction must be in [0, 1], got "
                              f"{self.static_min_detected_fraction}")
        if not 0 <= self.static_min_track_fraction <= 1 or self.static_max_objects < 0:
            raise ParamsError("curation.discovery needs static_min_track_fraction in [0, 1] and "
                              "static_max_objects >= 0")


@dataclass(frozen=True)
class OdometryConfig:
    """Stereo visual odometry (``estimate_poses``). Pixel thresholds are in pixels of the input frames."""

    # Corners tracked at once, their minimum spacing (spreads them over the frame: a well-spread set
    # conditions the pose better than a larger clumped one) and goodFeaturesToTrack's quality level
    # (a fraction of the strongest corner's score; low, because rendered ground and real asphalt have weak
    # but trackable texture, and bad corners are caught by the forward-backward checks and RANSAC).
    max_features: int = 400
    feature_spacing_px: int = 5
    quality_level: float = 0.002
    # Corners are tracked from the last keyframe's image (no drift along a track), and a frame becomes the
    # keyframe when its inliers fall below ``keyframe_ratio`` of the keyframe's 3D points, or
    # ``keyframe_gap`` frames after the last one (the patches' appearance changes as the camera moves).
    # A new keyframe gets new corners when fewer than ``redetect_ratio`` x ``max_features`` are tracked.
    keyframe_ratio: float = 0.7
    keyframe_gap: int = 8
    redetect_ratio: float = 0.8
    # Pyramidal Lucas-Kanade window (odd) and pyramid levels for tracking in time (seeded by the
    # constant-velocity prediction, so the residual motion is small), and the levels for the stereo match
    # of a corner without any disparity guess (it must reach the largest disparity from zero).
    lk_window: int = 7
    lk_levels: int = 3
    stereo_levels: int = 4
    # A track (left t -> t+1) or stereo match (left -> right) survives only if tracking back lands within
    # this many pixels of where it started.
    fb_max_px: float = 0.5
    # Rectified stereo: a right match more than this many rows off the left one is a mismatch.
    max_row_px: float = 1.0
    # Stereo matches with a smaller disparity are too far to triangulate (depth error grows as 1 / d^2).
    min_disparity_px: float = 1.0
    # Frame to frame: P3P RANSAC on the left image (threshold, iterations), then Gauss-Newton on the
    # reprojection error in both images; a track whose error (pixels, RMS over its left u, v and right u)
    # exceeds ``inlier_px`` is an outlier (a moving object, a drifted track) and is dropped for good.
    ransac_px: float = 2.0
    ransac_iterations: int = 100
    inlier_px: float = 1.0
    # Huber scale of the robust losses (pixels): errors beyond it count linearly, not quadratically.
    huber_px: float = 0.5
    # Fewer inlier tracks than this between two frames: the motion is not measured, OdometryError.
    min_inliers: int = 30
    # Bundle adjustment (poses and points, reprojection error in both images, Levenberg-Marquardt) over
    # windows of this many frames, half overlapping; 0 turns it off (frame-to-frame poses only).
    ba_window: int = 0
    ba_iterations: int = 8

    def __post_init__(self) -> None:
        if self.lk_window < 3 or self.lk_window % 2 == 0:
            raise ParamsError(f"curation.odometry.lk_window must be odd and >= 3, got {self.lk_window}")
        if self.min_inliers < 6:
            raise ParamsError(f"curation.odometry.min_inliers must be >= 6 (a pose has 6 unknowns), got {self.min_inliers}")
        if self.max_features < self.min_inliers:
            raise ParamsError("curation.odometry.max_features must be >= min_inliers")
        if self.keyframe_gap < 1:
            raise ParamsError(f"curation.odometry.keyframe_gap must be >= 1 frame, got {self.keyframe_gap}")
        for name in ("keyframe_ratio", "redetect_ratio"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ParamsError(f"curation.odometry.{name} must be in (0, 1], got {getattr(self, name)}")
        if not 0.0 < self.redetect_ratio <= 1.0:
            raise ParamsError(f"curation.odometry.redetect_ratio must be in (0, 1], got {self.redetect_ratio}")
        if self.ba_window != 0 and self.ba_window < 3:
            raise ParamsError(f"curation.odometry.ba_window must be 0 (off) or >= 3 frames, got {self.ba_window}")
        for name in ("fb_max_px", "max_row_px", "ransac_px", "inlier_px", "huber_px", "quality_level"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ParamsError(f"curation.odometry.{name} must be finite and > 0, got {value}")
        if not (math.isfinite(self.min_disparity_px) and self.min_disparity_px >= 0):
            raise ParamsError(f"curation.odometry.min_disparity_px must be finite and >= 0, got {self.min_disparity_px}")


@dataclass(frozen=True)
class LearnedConfig:
    """Learned perception models from local weights folders (``components.curation.learned``); empty: the
    classical path (SGBM stereo, motion and 3D-blob discovery)."""

    stereo: str = ""  # a folder with model.json + .safetensors: its disparity replaces SGBM's
    segmenter: str = ""  # the same for an instance segmenter (loaded and checked; not yet used by discovery)


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
    odometry: OdometryConfig = field(default_factory=OdometryConfig)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    learned: LearnedConfig = field(default_factory=LearnedConfig)
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
    # Each answer class of a categorical question's label set (the five translational directions, ...): its
    # share of a split's questions of that category within this fraction of uniform (0.1: 20% +- 2% of 5).
    answer_balance_tolerance: float = 0.10
    min_records_per_split: int = 10
    required_categories: list[str] = field(default_factory=list)
    max_examples: int = 5

    def __post_init__(self) -> None:
        if not 0.0 < self.letter_balance_tolerance < 1.0:
            raise ParamsError("quality.letter_balance_tolerance must be in (0, 1)")
        if not 0.0 < self.answer_balance_tolerance < 1.0:
            raise ParamsError("quality.answer_balance_tolerance must be in (0, 1)")


@dataclass(frozen=True)
class PriorConfig:
    """The language-prior gate (``components.quality.prior``): text-only guessers fitted on the sft split
    must not beat random on the bench's dynamic multiple-choice categories by more than these margins."""

    max_category_gap: float = 0.10  # the best guesser's bench accuracy - random, per dynamic category (0-1)
    max_macro_gap: float = 0.05  # the same, averaged over the dynamic categories
    # Allowance for chance: a gap fails only beyond its limit + noise_z standard errors of a chance-level
    # guesser on that many records (8 points at 30 records of 4 options, 3 at 200), so a small clean bench
    # does not fail by luck; as the bench grows the limits become exact. 0 = the limits alone.
    noise_z: float = 2.0
    # Each category's guesser is chosen on sft, cross-fitted over this many folds of sft clips (choosing the
    # best on the bench itself would make a clean bench fail by chance).
    selection_folds: int = 5
    logreg_l2: float = 0.01  # L2 weight of the logistic-regression guesser
    logreg_steps: int = 300  # its full-batch optimiser steps

    def __post_init__(self) -> None:
        if not (0.0 <= self.max_category_gap <= 1.0 and 0.0 <= self.max_macro_gap <= 1.0):
            raise ParamsError("prior.max_category_gap and prior.max_macro_gap must be in [0, 1]")
        if self.noise_z < 0 or self.logreg_steps < 1 or self.logreg_l2 < 0:
            raise ParamsError("prior.noise_z >= 0, prior.logreg_steps >= 1 and prior.logreg_l2 >= 0")
        if self.selection_folds < 2:
            raise ParamsError("prior.selection_folds must be >= 2 (fit on some sft clips, score on the others)")


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow: where runs go. ``MLFLOW_TRACKING_URI`` in the environment wins over ``tracking_uri``."""

    experiment: str = "mllm4d"
    # Relative sqlite paths resolve against the project root so that every stage writes one database.
    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlartifacts"
    example_frames: int = 3


# A Dask scheduler's address ("tcp://host:8786", "tls://...", or "host:8786") and a Ray cluster's ("ray://host:10001"
# for Ray Client, "auto" or "host:6379" from a node of the cluster): a typo fails here, not minutes into a flow.
_DASK_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ws|wss|ucx)://\S+|[^\s:/]+:\d+)$")
_RAY_ADDRESS = re.compile(r"^(?:auto|ray://\S+|[^\s:/]+:\d+)$")


@dataclass(frozen=True)
class OrchestrationConfig:
    """Where the flows run their per-clip tasks (rendering, curating): Prefect's thread pool in the flow's process,
    or a Dask / Ray cluster through Prefect's task runners (``flows/common.py``, ``docs/scale_out.md``). Only the
    flows read it; the CLI and ``dvc repro`` use a process pool (``curation.workers``). The curated output is the
    same whichever runs it."""

    task_runner: Literal["thread", "dask", "ray"] = "thread"
    # An existing cluster's scheduler (production); null starts a local cluster for the flow run and stops it after.
    address: str | None = None
    workers: int = 2  # the thread pool's threads; a local cluster's worker processes, one thread each (dask, ray)
    clips_per_task: int = 16  # a task run's own cost (~0.2 s CPU) exceeded a small clip's render: batch them

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ParamsError("orchestration.workers must be >= 1")
        if self.clips_per_task < 1:
            raise ParamsError("orchestration.clips_per_task must be >= 1")
        if self.address is None:
            return
        if self.task_runner == "thread":
            raise ParamsError(f"orchestration.address is {self.address!r} but orchestration.task_runner is thread, "
                              "which runs in the flow's process: set task_runner to dask (or ray) to use that "
                              "cluster, or address to null")
        pattern, example = ((_DASK_ADDRESS, "tcp://HOST:8786 (the Dask scheduler's address)")
                            if self.task_runner == "dask" else (_RAY_ADDRESS, "ray://HOST:10001 or auto"))
        if not pattern.match(self.address):
            raise ParamsError(f"orchestration.address {self.address!r} is not a {self.task_runner} cluster address: "
                              f"use {example}, or null for a local cluster")


@dataclass(frozen=True)
class LaunchConfig:
    """How the training flow runs the training stages (sft, sft_text_only, p4d, grpo): in the flow's own process
    (``processes: 1`` and no ``accelerate_config``, the embedded default), or each under ``accelerate launch`` in a
    child process, one rank per process, rank 0 logging (``components.training.launch``, docs/production.md).
    Only the flows read it; the CLI and ``dvc repro`` run a stage in one process."""

    processes: int = 1  # per launch: one per GPU; > 1 launches the training stages with accelerate
    # An accelerate config (infra/accelerate.yaml on the GPU pool); '' with processes > 1: one generated for this
    # machine. Its num_processes and mixed_precision are overridden: processes here, precision from model.dtype.
    accelerate_config: str = ""
    # The ranks' rendezvous port; 0 lets accelerate take a free one, so two launches on one worker never collide.
    main_process_port: int = 0

    @property
    def launched(self) -> bool:
        return self.processes > 1 or bool(self.accelerate_config)

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ParamsError(f"launch.processes must be >= 1 (1: in the flow's process), got {self.processes}")
        if self.accelerate_config and not self.accelerate_config.endswith((".yaml", ".yml", ".json")):
            raise ParamsError(f"launch.accelerate_config must be an accelerate config file (.yaml or .json, e.g. "
                              f"infra/accelerate.yaml) or '', got {self.accelerate_config!r}")
        if not 0 <= self.main_process_port <= 65535:
            raise ParamsError(f"launch.main_process_port must be a TCP port (0: a free one), got {self.main_process_port}")


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
    # Each part's learning rate is the stage's learning_rate times its scale (one optimizer, a param group per
    # part). A random-init vision tower trained at the LLM's rate collapses its tokens onto one vector within
    # ~50 steps, before the LLM reads them (benchmarks/learning_probe_notes.md); 0.1 keeps them apart.
    vision_lr_scale: float = 1.0
    projector_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if (self.vision, self.projector, self.llm) == ("frozen", "frozen", "frozen"):
            raise ParamsError("model.trainable: every part is frozen, so nothing would train; "
                              "set llm (or projector / vision) to full or lora")
        for key in ("vision_lr_scale", "projector_lr_scale"):
            if not 0.0 < getattr(self, key) <= 100.0:
                raise ParamsError(f"model.trainable.{key} must be in (0, 100], got {getattr(self, key)}")

    def lr_scales(self) -> dict[str, float]:
        return {"vision": self.vision_lr_scale, "projector": self.projector_lr_scale, "llm": 1.0}


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
    # options in a CPU budget (docs/stack.md), so the tiny presets answer with the text; checkpoints: "letter".
    answer_format: Literal["letter", "text"] = "text"
    with_cot: bool = False  # assistant target: the ST-CoT (True) or only <answer>...</answer>
    # "full": MLLM-4D's ST-CoT as curated; "state": only its Spatial State (camera and object centers at the
    # initial and final frame) before the answer: what the ST-reward scores, in ~150 tokens instead of ~300.
    cot_style: Literal["full", "state"] = "full"
    trainable: TrainableConfig = field(default_factory=TrainableConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    # CPU only: torch threads (0 = torch's default). Tiny models run faster on one thread, and on a shared
    # 2-core machine two threads per process oversubscribe the cores (measured 5-15x slower SFT).
    cpu_threads: int = 0
    # How the model learns when each frame was taken (4D-RGPT Tab. 6): "tpe" adds a sinusoidal timestamp
    # encoding to the visual features before the projector (eq. 5, no parameters); "marks" burns "t s" into
    # each frame; "prompt" states duration and fps in the question; "none" gives no time cue at all.
    time_cue: Literal["none", "prompt", "marks", "tpe"] = "tpe"
    tpe_max_timescale: float = 100.0  # T of eq. 5, in seconds: longer than any clip
    tpe_scale: float = 1.0  # multiplies p(t); 1 is eq. 5 (its norm is sqrt(D/2) whatever the features' norm)
    # Every frame blanked (black, same count and size, time cue kept) in training, gates and evaluation:
    # the text-only-trained control (the `sft_text_only` stage sets it), the best the priors give this model.
    blank_frames: bool = False

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
        if self.time_cue == "tpe" and self.visual_input != "images":
            raise ParamsError("model.time_cue 'tpe' needs visual_input 'images' (each frame carries its timestamp); "
                              "use time_cue 'prompt' or 'marks' with video input")
        if self.tpe_max_timescale <= 1.0:
            raise ParamsError("model.tpe_max_timescale must be > 1 (seconds)")
        if not self.tpe_scale > 0:
            raise ParamsError("model.tpe_scale must be > 0 (time_cue none turns TPE off)")
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


MODALITIES: tuple[str, ...] = ("depth", "flow", "motion", "camray")


@dataclass(frozen=True)
class TeacherConfig:
    """The frozen 4D perception teacher (``components.teacher``): an encoder giving ``F_4D`` on the student's
    visual token grid and one light decoder per modality (4D-RGPT eq. 1; L4P's structure)."""

    # "embedded": trained here on the synthetic clips; otherwise a folder holding an external teacher
    # (the L4P adapter), used frozen as it is.
    source: str = "embedded"
    seed: int = 0
    channels: int = 64  # c' of F_4D
    layers: int = 2  # spatio-temporal transformer blocks of the encoder
    heads: int = 4
    map_size: int = 28  # side of the per-pixel maps P_m the decoders produce
    # What the embedded teacher learns from: the clips' ground truth (synthetic) or the curation's own
    # estimates (real clips without gt/: stereo depth, flow, motion from the tracks).
    targets_from: Literal["gt", "estimates"] = "gt"
    max_steps: int = 400
    batch_size: int = 8
    learning_rate: float = 2e-3
    modalities: list[str] = field(default_factory=lambda: list(MODALITIES))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.modalities) - set(MODALITIES))
        if unknown or not self.modalities:
            raise ParamsError(f"teacher.modalities: unknown {unknown}; valid: {list(MODALITIES)} (at least one)")
        if self.channels < 1 or self.layers < 0 or self.heads < 1 or self.channels % self.heads:
            raise ParamsError("teacher.channels must be >= 1 and a multiple of teacher.heads; layers >= 0")
        if self.map_size < 4 or self.max_steps < 1 or self.batch_size < 1 or not self.learning_rate > 0:
            raise ParamsError("teacher.map_size >= 4, max_steps and batch_size >= 1, learning_rate > 0")


@dataclass(frozen=True)
class ModalityWeights:
    """lambda_m of 4D-RGPT eq. 7; 0 leaves a modality out of L_ED."""

    depth: float = 1.0
    flow: float = 1.0
    motion: float = 1.0
    camray: float = 1.0

    def __post_init__(self) -> None:
        if min(self.depth, self.flow, self.motion, self.camray) < 0:
            raise ParamsError("p4d.explicit_weights must be >= 0")


@dataclass(frozen=True)
class P4DConfig:
    """Perceptual 4D Distillation (``components.training.p4d``): SFT loss + L_LD (eq. 6) + L_ED (eq. 7),
    with the training-only ``D_4DP`` MLP and the teacher's frozen decoders. Each row of 4D-RGPT Tab. 5 is
    a setting of ``latent_weight`` and ``explicit_weights``."""

    latent_weight: float = 1.0  # weight of L_LD; 0 = ED only
    latent_loss: Literal["mse", "smooth_l1", "cosine"] = "smooth_l1"  # Delta_LD
    explicit_weights: ModalityWeights = field(default_factory=ModalityWeights)
    decoder_hidden: int = 256  # D_4DP: LLM hidden -> decoder_hidden -> c'
    hidden_layer: int = -1  # which LLM layer's hidden states at the visual tokens feed D_4DP
    depth_log_steps: int = 4  # log the student's predicted depth (Fig. 5) at this many evenly spaced steps
    train: SFTConfig = field(default_factory=SFTConfig)  # steps, batch, optimiser and gate, as for SFT

    def __post_init__(self) -> None:
        if self.latent_weight < 0:
            raise ParamsError("p4d.latent_weight must be >= 0")
        if self.decoder_hidden < 1 or self.depth_log_steps < 0:
            raise ParamsError("p4d.decoder_hidden must be >= 1 and depth_log_steps >= 0")


@dataclass(frozen=True)
class RewardTerm:
    name: str  # a key of components.rewards.REGISTRY
    weight: float


@dataclass(frozen=True)
class FormatRewardConfig:
    """The parts of MLLM-4D's format reward F (its released code): tags, Spatial State, thinking length.
    The Object Center is required only when the solution has one (camera questions have no object)."""

    tags: float = 0.5  # both <thinking>...</thinking> and <answer>...</answer>
    centers: float = 0.4  # both "Object Center: [..]" and "Camera Center: [..]"
    length: float = 0.1  # thinking longer than min_thinking_chars
    min_thinking_chars: int = 20


def _default_terms() -> list[RewardTerm]:
    # MLLM-4D's ST-reward: R = 0.2 F + 0.6 Acc + 0.1 R_cam + 0.1 R_obj
    return [RewardTerm("format", 0.2), RewardTerm("accuracy", 0.6), RewardTerm("camera", 0.1),
            RewardTerm("object", 0.1)]


@dataclass(frozen=True)
class RewardsConfig:
    """The GRPO reward (``components.rewards``): a weighted sum of pure functions from one registry."""

    terms: list[RewardTerm] = field(default_factory=_default_terms)
    format: FormatRewardConfig = field(default_factory=FormatRewardConfig)
    numeric_accuracy: Literal["mra", "exact"] = "mra"  # VSI-Bench's Mean Relative Accuracy for numbers
    # ST-R1 reverse thinking: weight of the agreement between a question's and its reverse's answers.
    consistency_weight: float = 0.0
    # Video-R1's T-GRPO: extra rollouts on shuffled frames; a correct answer earns temporal_bonus only when
    # the ordered frames' accuracy reaches (>=) temporal_ratio x the shuffled frames'. Off by default.
    temporal_contrast: bool = False
    temporal_bonus: float = 0.3
    temporal_ratio: float = 0.8

    def __post_init__(self) -> None:
        if not self.terms:
            raise ParamsError("rewards.terms must name at least one reward")
        if any(t.weight < 0 for t in self.terms) or self.consistency_weight < 0:
            raise ParamsError("rewards weights must be >= 0")


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO (``components.training.grpo``): TRL's GRPOTrainer on the rft split with ST-CoT prompts."""

    seed: int = 0
    init: Literal["p4d", "sft"] = "p4d"  # which checkpoint GRPO starts from
    max_steps: int = 50
    batch_size: int = 8  # prompts x generations per step: a multiple of num_generations
    num_generations: int = 4  # G
    beta: float = 0.001  # KL weight (MLLM-4D 0.001; ST-R1 0.1)
    temperature: float = 1.0
    learning_rate: float = 1e-4
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "grpo"
    max_completion_length: int = 64
    use_lora: bool = False  # LoRA on the LLM (model.lora sizes), as MLLM-4D's release
    reverse_thinking: bool = False  # ST-R1: add reverse questions to the rft records
    use_vllm: bool = False  # vLLM rollouts on a GPU worker where vLLM is installed
    deepspeed: str = ""  # GPU workers under `accelerate launch`: infra/deepspeed/zero2.json (as sft.deepspeed)
    logging_steps: int = 5
    save_steps: int = 50
    sample_completions: int = 4  # completions logged as text artifacts per logging step
    gate: TrainingGateConfig = field(default_factory=TrainingGateConfig)
    # The gate's "reward held": the last logged mean reward may be at most this below the first. Each
    # logged point averages batch_size x logging_steps completions: size it to that noise.
    reward_tolerance: float = 0.05

    def __post_init__(self) -> None:
        if self.num_generations < 2:
            raise ParamsError("grpo.num_generations must be >= 2 (GRPO compares completions within a group)")
        if self.batch_size % self.num_generations:
            raise ParamsError(f"grpo.batch_size ({self.batch_size}) must be a multiple of num_generations "
                              f"({self.num_generations})")
        if self.max_steps < 1 or not self.learning_rate > 0 or self.beta < 0 or not self.temperature > 0:
            raise ParamsError("grpo.max_steps >= 1, learning_rate > 0, beta >= 0, temperature > 0")
        if self.deepspeed and not self.deepspeed.endswith(".json"):
            raise ParamsError("grpo.deepspeed must be a DeepSpeed JSON config path (infra/deepspeed/*.json) or ''")


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation on the bench split (``components.evaluation``)."""

    batch_size: int = 16
    max_new_tokens: int = 32
    max_records: int = 0  # 0 = every bench record
    blind_baseline: bool = True  # the same model with blank frames: beats random but not blind = text priors
    # The same model with each bench clip's frames replaced by another bench clip's (a fixed derangement):
    # in-distribution pixels, wrong content. Blank frames are out of distribution once the vision tower trains.
    shuffled_baseline: bool = True
    shuffle_seed: int = 0  # the derangement of bench clips
    bootstrap_samples: int = 1000  # clip-level bootstrap replicates behind every 95% interval
    register: bool = True  # register the evaluated checkpoint in the MLflow registry (alias challenger)
    registered_model: str = "mllm4d"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_new_tokens < 1 or self.max_records < 0:
            raise ParamsError("evaluate.batch_size and max_new_tokens must be >= 1, max_records >= 0")
        if self.bootstrap_samples < 100:
            raise ParamsError("evaluate.bootstrap_samples must be >= 100 (a 95% interval from fewer is noise)")


@dataclass(frozen=True)
class PromoteConfig:
    """The promotion gate (``components.evaluation.promotion``): when ``@challenger`` becomes ``@champion``."""

    metric: Literal["dynamic_mc_macro", "overall"] = "dynamic_mc_macro"
    margin: float = 0.0  # the improvement's lower 95% bound must exceed this (fraction, 0.02 = 2 points)
    tolerance: float = 0.05  # a category may drop this much (or by noise) without blocking promotion
    min_format_valid: float = 0.95  # share of the challenger's answers with a readable <answer>
    require_learning: bool = True  # the challenger beats its stronger control (shuffled video / text-only)
    bootstrap_samples: int = 2000
    seed: int = 0
    alias: str = "champion"

    def __post_init__(self) -> None:
        if not 0 <= self.min_format_valid <= 1 or self.tolerance < 0:
            raise ParamsError("promote.min_format_valid must be in [0, 1] and promote.tolerance >= 0")
        if self.bootstrap_samples < 100:
            raise ParamsError("promote.bootstrap_samples must be >= 100 (a 95% interval from fewer is noise)")
        if self.alias == "challenger":
            raise ParamsError("promote.alias cannot be 'challenger': that alias marks the model under test")


@dataclass(frozen=True)
class Params:
    source: SourceConfig = field(default_factory=SourceConfig)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    curation: CurationConfig = field(default_factory=CurationConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    orchestration: OrchestrationConfig = field(default_factory=OrchestrationConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    p4d: P4DConfig = field(default_factory=P4DConfig)
    rewards: RewardsConfig = field(default_factory=RewardsConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    promote: PromoteConfig = field(default_factory=PromoteConfig)

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
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ParamsError(f"{source}: {where} must be a list, got {value!r}")
        item = (typing.get_args(tp) or (Any,))[0]
        items = [_coerce(item, v, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ParamsError(f"{source}: {where} must be {tp.__name__}, got {value!r}")
    # NaN compares false with everything, so range checks (``x > 0``, splits summing to 1) let it through
    # and it fails much later; no parameter here has a use for NaN or infinity.
    if tp is float and not math.isfinite(value):
        raise ParamsError(f"{source}: {where} must be a finite number, got {value!r}")
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
    try:
        node[keys[-1]] = parse_yaml(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ParamsError(f"override {override!r}: the value {raw!r} is not valid YAML ({problem})") from None


def load_params(path: str | Path = "params.yaml", overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read a params file, apply ``section.key=value`` overrides, and validate everything."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    try:
        tree = parse_yaml(path.read_text()) or {}
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
