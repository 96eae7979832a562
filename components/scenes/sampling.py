"""Scene sampling: which objects, how they move, how the camera moves, for clip ``index``.

Categories (camera motion, object count, number of moving objects, motion kind, direction, rotation, shape)
are not drawn independently per clip: each one walks a stream that cycles through all its options in a
permutation re-shuffled every round (seeded by ``cfg.seed``), and objects take consecutive positions in
global streams across clips. A few dozen clips therefore cover every answer about equally, which a pure
random draw does not guarantee, and the benchmark split is not dominated by one kind of motion.

Continuous parameters (sizes, speeds, positions) are random but seeded by (seed, index, attempt). An object
is placed by choosing where it is at mid-clip in the mid-clip camera, so that its path is centred in view,
then checked on every frame (in the frustum, 3-12 m deep, apart from the others on the ground and not
hiding them in the image) and re-drawn deterministically, a little slower each time, until it fits.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from functools import lru_cache
from typing import TypeVar

import numpy as np

from components.config import ScenesConfig
from components.scenes import motion as mo
from components.scenes.spec import (
    DIRECTIONS,
    EGO_MOTIONS,
    PALETTE,
    SHAPES,
    ObjectSpec,
    SceneSpec,
    intrinsics,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Stream ids: part of the seed of each category's permutations, so that streams are independent.
_STREAMS = {
    "n_objects": 11,
    "n_moving": 12,
    "ego": 13,
    "kind": 14,
    "direction": 15,
    "rot_moving": 16,
    "rot_static": 17,
    "shape": 18,
    "fps": 19,
}
# Every rotation equally often, moving or not: "it does not rotate" must not be the likely answer.
_ROT_MOVING = ("none", "left", "right")
_ROT_STATIC = ("none", "left", "right")
# Speeding up, slowing down and a constant speed (straight or curved) equally often among moving objects,
# so that no answer to "how does its speed change" is favoured before looking.
_KINDS = ("straight", "accelerating", "decelerating", "curved", "accelerating", "decelerating")
_HEADING = {"right": 0.0, "away": math.pi / 2, "left": math.pi, "toward": -math.pi / 2}

MIN_DEPTH_M, MAX_DEPTH_M = 3.0, 12.0
MIN_IN_VIEW = 0.85  # share of an object's projected box that must lie inside the image, every frame
MAX_BOX_OVERLAP = 0.35  # intersection / smaller box of two objects' projected boxes, every frame
GAP_M = 0.25  # clearance between two objects' ground circles
MAX_TRAVEL_M = 5.0  # speeds shrink for long clips so that moving objects stay in view
OBJECT_TRIES, SCENE_TRIES = 60, 20


def _seed(seed: int) -> int:
    return seed % (1 << 63)  # SeedSequence wants non-negative entropy


@lru_cache(maxsize=4096)
def _round_permutation(seed: int, stream: int, round_index: int, n: int) -> tuple[int, ...]:
    return tuple(int(i) for i in np.random.default_rng([_seed(seed), stream, round_index]).permutation(n))


def cycle(seed: int, stream: str, k: int, options: Sequence[T]) -> T:
    """The k-th element of a stream that visits every option once per round, in a seeded order."""
    n = len(options)
    return options[_round_permutation(seed, _STREAMS[stream], k // n, n)[k % n]]


def clip_fps(cfg: ScenesConfig, index: int) -> float:
    """The clip's frame rate: ``fps``, or one of ``fps_choices`` in a balanced seeded order. Mixed rates make
    a clip's duration unknowable from its frame count, as in real data mixed from several sources, so
    speed questions need a time cue (4D-RGPT Tab. 6)."""
    return float(cycle(cfg.seed, "fps", index, cfg.fps_choices)) if cfg.fps_choices else cfg.fps


def _n_objects(cfg: ScenesConfig, index: int) -> int:
    return cycle(cfg.seed, "n_objects", index, range(cfg.min_objects, cfg.max_objects + 1))


def _n_moving(cfg: ScenesConfig, index: int) -> int:
    return min(cycle(cfg.seed, "n_moving", index, range(cfg.max_objects + 1)), _n_objects(cfg, index))


def _camera_motion(cfg: ScenesConfig, index: int) -> str:
    # A Beatty sequence: exactly floor(n * fraction) of the first n clips move the camera, spread evenly.
    f = cfg.ego_motion_fraction
    before = math.floor(index * f + 1e-9)
    if math.floor((index + 1) * f + 1e-9) == before:
        return "static"
    return cycle(cfg.seed, "ego", before, EGO_MOTIONS)


_BLOCK = 256


@lru_cache(maxsize=64)
def _offsets_at_block(cfg: ScenesConfig, block: int) -> tuple[int, int]:
    """Offsets at clip ``block * _BLOCK``, memoised so that clip i costs O(_BLOCK), not O(i)."""
    if block == 0:
        return 0, 0
    moving, static = _offsets_at_block(cfg, block - 1)
    for j in range((block - 1) * _BLOCK, block * _BLOCK):
        n, m = _n_objects(cfg, j), _n_moving(cfg, j)
        moving, static = moving + m, static + n - m
    return moving, static


def _slot_offsets(cfg: ScenesConfig, index: int) -> tuple[int, int]:
    """(moving, static) objects in clips before ``index``: where this clip starts in the object streams."""
    moving, static = _offsets_at_block(cfg, index // _BLOCK)
    for j in range(index - index % _BLOCK, index):
        n, m = _n_objects(cfg, j), _n_moving(cfg, j)
        moving, static = moving + m, static + n - m
    return moving, static


def _speed_bounds(duration: float) -> tuple[float, float]:
    hi = min(2.5, MAX_TRAVEL_M / max(duration, 1e-6))
    return min(0.5, 0.5 * hi), hi


def _sample_object(
    rng: np.random.Generator, spec: SceneSpec, base: ObjectSpec, slow: float, sector: tuple[int, int],
    scale: float = 1.0,
) -> ObjectSpec:
    """Draw sizes, speeds and a mid-clip position for an object whose categories are fixed in ``base``.

    ``sector`` = (k, n): the object's mid-clip bearing lies in the k-th of n equal slices of the central 60% of
    the field of view, so that objects start spread across the image instead of piling up behind each other.
    """
    if base.shape == "cube":
        size = tuple(float(v) for v in rng.uniform(0.5, 1.2) * rng.uniform(0.9, 1.1, size=3))
    elif base.shape == "sphere":
        d = float(rng.uniform(0.5, 1.2))
        size = (d, d, d)
    else:
        d, h = float(rng.uniform(0.4, 1.0)), float(rng.uniform(0.6, 1.5))
        size = (d, h, d)
    size = tuple(scale * v for v in size)
    lo, hi = _speed_bounds(spec.duration_s)
    speed = accel = radius = 0.0
    if base.motion in ("straight", "curved"):
        speed = float(rng.uniform(lo, hi)) * slow
    if base.motion == "curved":
        radius = float(rng.uniform(2.0, 5.0)) * (1.0 if rng.random() < 0.5 else -1.0)
    if base.motion in ("accelerating", "decelerating"):
        slow_v = float(rng.uniform(0.2, 0.6)) * slow
        fast_v = float(rng.uniform(min(1.2, hi), hi)) * slow  # visibly changes: several times faster or slower
        fast_v = max(fast_v, slow_v + 0.3)
        speed, v_end = (slow_v, fast_v) if base.motion == "accelerating" else (fast_v, slow_v)
        accel = (v_end - speed) / max(spec.duration_s, 1e-6)
    heading = _HEADING.get(base.direction, 0.0) + float(rng.uniform(-1, 1)) * math.radians(10)
    yaw_rate = 0.0
    if base.rotation != "none":
        yaw_rate = math.radians(float(rng.uniform(40, 100))) * (1.0 if base.rotation == "left" else -1.0)
    obj = dataclasses.replace(
        base,
        size=size,
        speed=speed,
        accel=accel,
        turn_radius=radius,
        heading=heading,
        start=(0.0, 0.0),
        yaw0=float(rng.uniform(-math.pi, math.pi)),
        yaw_rate=yaw_rate,
        tex_offset=(float(rng.uniform(0, 256)), float(rng.uniform(0, 256))),
    )
    # Where the object is at mid-clip, in the mid-clip camera: centred paths stay in view longest.
    mid = spec.duration_s / 2
    depth = float(rng.uniform(MIN_DEPTH_M + 0.5, 10.0))
    half = math.atan(0.6 * spec.cx / spec.fx)
    k, n = sector
    bearing = -half + 2 * half * (k + float(rng.random())) / n
    lateral = depth * math.tan(bearing)
    cam_mid = mo.camera_poses(spec, np.array([mid]))[0]
    target = cam_mid[:3, :3] @ np.array([lateral, 0.0, depth]) + cam_mid[:3, 3]
    offset = mo.object_centers(obj, np.array([mid]), spec.camera_height_m)[0]
    return dataclasses.replace(obj, start=(float(target[0] - offset[0]), float(target[2] - offset[2])))


def _boxes(spec: SceneSpec, obj: ObjectSpec, poses: np.ndarray, times: np.ndarray) -> np.ndarray | None:
    """Per-frame projected boxes (T x 4: x0, y0, x1, y1), or None if the object leaves the allowed view."""
    centres = mo.object_centers(obj, times, spec.camera_height_m)
    yaws = mo.object_yaws(obj, times)
    K = spec.K
    boxes = np.empty((len(times), 4))
    for t in range(len(times)):
        _, zc = mo.project(centres[t : t + 1], poses[t], K)
        uv, z = mo.project(mo.box_corners(obj, centres[t], float(yaws[t])), poses[t], K)
        if not MIN_DEPTH_M <= zc[0] <= MAX_DEPTH_M or z.min() < 1.0:
            return None
        x0, y0 = uv.min(axis=0)
        x1, y1 = uv.max(axis=0)
        inside = max(0.0, min(x1, spec.width) - max(x0, 0)) * max(0.0, min(y1, spec.height) - max(y0, 0))
        if inside < MIN_IN_VIEW * (x1 - x0) * (y1 - y0):
            return None
        boxes[t] = (x0, y0, x1, y1)
    return boxes


def _compatible(
    a: ObjectSpec, box_a: np.ndarray, b: ObjectSpec, box_b: np.ndarray, spec: SceneSpec, times: np.ndarray
) -> bool:
    ca = mo.object_centers(a, times, spec.camera_height_m)
    cb = mo.object_centers(b, times, spec.camera_height_m)
    ground = np.hypot(ca[:, 0] - cb[:, 0], ca[:, 2] - cb[:, 2])
    if (ground < a.footprint_radius + b.footprint_radius + GAP_M).any():
        return False
    w = np.clip(np.minimum(box_a[:, 2], box_b[:, 2]) - np.maximum(box_a[:, 0], box_b[:, 0]), 0, None)
    h = np.clip(np.minimum(box_a[:, 3], box_b[:, 3]) - np.maximum(box_a[:, 1], box_b[:, 1]), 0, None)
    smaller = np.minimum(
        (box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1]),
        (box_b[:, 2] - box_b[:, 0]) * (box_b[:, 3] - box_b[:, 1]),
    )
    return bool((w * h <= MAX_BOX_OVERLAP * smaller).all())


def _plan(cfg: ScenesConfig, index: int, rng: np.random.Generator) -> list[ObjectSpec]:
    """The categorical part of each object (shape, colour, motion kind, direction, rotation)."""
    n, n_moving = _n_objects(cfg, index), _n_moving(cfg, index)
    moving0, static0 = _slot_offsets(cfg, index)
    colors = [list(PALETTE)[i] for i in rng.permutation(len(PALETTE))[:n]]
    moving_ids = {int(i) for i in rng.permutation(n)[:n_moving]}
    objects, m, s = [], moving0, static0
    for k in range(n):
        if k in moving_ids:
            kind = cycle(cfg.seed, "kind", m, _KINDS)
            direction = cycle(cfg.seed, "direction", m, DIRECTIONS)
            rotation = cycle(cfg.seed, "rot_moving", m, _ROT_MOVING)
            m += 1
        else:
            kind, direction = "static", "none"
            rotation = cycle(cfg.seed, "rot_static", s, _ROT_STATIC)
            s += 1
        objects.append(
            ObjectSpec(
                id=k + 1,
                shape=cycle(cfg.seed, "shape", moving0 + static0 + k, SHAPES),
                color=colors[k],
                rgb=PALETTE[colors[k]],
                size=(1.0, 1.0, 1.0),  # drawn with the trajectory in _sample_object
                motion=kind,
                direction=direction,
                rotation=rotation,
            )
        )
    return objects


def sample_scene(cfg: ScenesConfig, index: int) -> SceneSpec:
    """The scene of clip ``index``: a pure function of (cfg, index)."""
    if cfg.max_objects > len(PALETTE):
        raise ValueError(
            f"scenes.max_objects={cfg.max_objects} but only {len(PALETTE)} distinct colours exist; "
            "labels like 'the red cube' would become ambiguous. Lower scenes.max_objects."
        )
    fx, fy, cx, cy = intrinsics(cfg.width, cfg.height, cfg.hfov_deg)
    rng = np.random.default_rng([_seed(cfg.seed), index, 0])
    camera_motion = _camera_motion(cfg, index)
    fps = clip_fps(cfg, index)
    duration = (cfg.num_frames - 1) / fps
    camera_speed = 0.0
    if camera_motion in ("turn_left", "turn_right"):
        # Turn at most 40% of the field of view so that a region stays in view for the whole clip.
        cap = 0.4 * math.radians(cfg.hfov_deg) / max(duration, 1e-6)
        camera_speed = min(math.radians(float(rng.uniform(10, 20))), cap)
    elif camera_motion != "static":
        camera_speed = min(float(rng.uniform(0.6, 1.2)), 3.0 / max(duration, 1e-6))
    spec = SceneSpec(
        index=index,
        clip_id=f"scene_{index:04d}",
        seed=cfg.seed,
        width=cfg.width,
        height=cfg.height,
        num_frames=cfg.num_frames,
        fps=fps,
        fx=fx,
        fy=fy,
        cx=cx,
        cy=cy,
        baseline_m=cfg.baseline_m,
        camera_height_m=cfg.camera_height_m,
        camera_motion=camera_motion,
        camera_speed=camera_speed,
        objects=(),
    )
    plan = _plan(cfg, index, rng)
    times = np.arange(cfg.num_frames) / fps
    poses = mo.camera_poses(spec, times)
    for attempt in range(SCENE_TRIES):
        placed: list[tuple[ObjectSpec, np.ndarray]] = []
        sectors = np.random.default_rng([_seed(cfg.seed), index, 1 + attempt]).permutation(len(plan))
        for base in plan:
            obj_rng = np.random.default_rng([_seed(cfg.seed), index, 1 + attempt, base.id])
            sector = (int(sectors[base.id - 1]), len(plan))
            for tries in range(OBJECT_TRIES):
                # Later tries slow the object down (and later attempts the whole scene): slower paths fit.
                obj = _sample_object(obj_rng, spec, base, 0.98**tries * 0.9**attempt, sector, cfg.object_scale)
                boxes = _boxes(spec, obj, poses, times)
                if boxes is not None and all(_compatible(obj, boxes, o, b, spec, times) for o, b in placed):
                    placed.append((obj, boxes))
                    break
            else:
                break  # this object found no place next to the others: start the scene over
        if len(placed) == len(plan):
            return dataclasses.replace(spec, objects=tuple(o for o, _ in placed))
        logger.debug(
            "%s: attempt %d could not place object %d; retrying", spec.clip_id, attempt, len(placed) + 1
        )
    raise RuntimeError(
        f"{spec.clip_id}: could not place {len(plan)} objects in view after {SCENE_TRIES} attempts; "
        "the view is too small for them (raise scenes.hfov_deg or lower scenes.max_objects)"
    )
