"""Target maps the embedded teacher learns from: depth, flow, motion and Pluecker camera rays of the
frames a student sees, on the decoders' ``S x S`` grid (the squashed square frame the student sees).

L4P trains its decoders on large synthetic and real datasets with ground truth or pseudo-labels for each
modality; 4D-RGPT then uses it frozen. Here the teacher is trained on the project's own clips:

``source="gt"`` (synthetic clips) reads ``gt/``:
  depth   ``gt/depth.npz`` resized by a masked *area mean of log-depth* (the geometric mean of the metres
          a map pixel covers): at an object edge a map pixel covers two surfaces, and the log-space mean is
          what an L1-on-log-depth model converges to there anyway; nearest would alias thin objects away.
  flow    ``gt/flow.npz`` holds flow between *adjacent rendered* frames; the student's frames are further
          apart, so the flow from sampled frame a to b is chained: x -> x + F_a(x) -> ... with a bilinear
          lookup of each next flow at the moved, sub-pixel position. Approximation: at a motion boundary
          the lookup blends the two surfaces' flows, and a point that becomes occluded in between follows
          its occluder from then on; a pixel whose path leaves the image before the last step has no
          flow to look up and is masked. For adjacent frames the chain is the GT flow exactly. Vectors
          are then area-averaged to the map and scaled to map pixels (x by S/W, y by S/H).
  motion  ``gt/motion.npz``, as the fraction of each map pixel on a moving object (a soft BCE target).

``source="estimates"`` (real clips without ``gt/``) uses what the project can compute itself:
  depth   the curation's stereo matcher (``estimate_disparity``), depth = fx * baseline / disparity;
  flow    OpenCV DIS between each pair of adjacent clip frames, masked where the forward and backward
          flows disagree (occlusions, mismatches), chained like the GT (DIS on the sampled pair directly
          measured 1.08 map pixels EPE against 0.05 chained, on a turning-camera clip);
  motion  pixels whose flow departs from the flow the camera motion alone induces (estimated depth,
          poses) by more than ``MOTION_PX + MOTION_REL * |camera flow|``. Needs poses.

``camray`` always comes from ``K`` and the poses, in the first sampled frame's camera (x right, y down,
z forward): direction d = R0^T R_n K^-1 [u, v, 1] (unit), origin o = R0^T (t_n - t0), moment o x d.
Every map comes with a validity mask; losses and metrics count only valid pixels.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from components.config import MODALITIES, StereoConfig
from components.curation.stereo import disparity_to_depth, estimate_disparity
from components.sources.clip import ClipError, ClipMeta, frame_name, read_meta, read_rgb
from components.teacher.base import CHANNELS, TeacherError

# Estimated motion: a residual flow above 2 px (DIS is accurate to about a pixel on textured surfaces)
# plus 15% of the camera-induced flow (stereo depth errors scale that flow) marks a pixel as moving.
MOTION_PX = 2.0
MOTION_REL = 0.15
# DIS forward-backward check: a round trip off by more than this (px, plus 5% of the flow) is occluded.
FB_PX = 1.0
FB_REL = 0.05
# A map pixel is valid when at least half of the image pixels it covers are.
MIN_COVER = 0.5


@dataclass(frozen=True)
class Maps:
    """``values[m]`` (N, C_m, S, S) float32 and ``valid[m]`` (N, 1, S, S) bool per modality."""

    values: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]


def target_maps(clip: str | Path, frames: Sequence[int], map_size: int, *,
                modalities: Sequence[str] = MODALITIES, source: str = "gt",
                stereo: StereoConfig | None = None) -> Maps:
    """Target maps of clip frames ``frames`` (the student's, in order) at ``map_size``; ``source`` is
    ``"gt"`` or ``"estimates"`` (``stereo`` configures the matcher; the curation's defaults otherwise)."""
    clip = Path(clip)
    try:
        meta = read_meta(clip)
    except ClipError as exc:
        raise TeacherError(str(exc)) from exc
    frames = [int(f) for f in frames]
    if not frames or min(frames) < 0 or max(frames) >= meta.num_frames:
        raise TeacherError(f"{clip}: frames {frames} outside 0..{meta.num_frames - 1}")
    if frames != sorted(frames):
        raise TeacherError(f"{clip}: frames {frames} must be in time order")
    unknown = sorted(set(modalities) - set(CHANNELS))
    if unknown:
        raise TeacherError(f"unknown modalities {unknown}; valid: {list(CHANNELS)}")
    if source == "gt":
        maps = _gt_maps(clip, meta, frames, map_size, modalities)
    elif source == "estimates":
        maps = _estimated_maps(clip, meta, frames, map_size, modalities, stereo or StereoConfig())
    else:
        raise TeacherError(f"targets source {source!r}: use 'gt' or 'estimates'")
    if "camray" in modalities:
        maps.values["camray"] = camray_maps(meta, frames, map_size, clip=clip)
        maps.valid["camray"] = np.ones((len(frames), 1, map_size, map_size), bool)
    return maps


def camray_maps(meta: ClipMeta, frames: Sequence[int], map_size: int, *, clip: Path | None = None) -> np.ndarray:
    """(N, 6, S, S) Pluecker rays (unit direction, moment o x d) in the first frame's camera."""
    if meta.poses is None:
        raise TeacherError(f"{clip or meta.clip_id} (meta.json): no camera poses; camray maps and estimated "
                           "motion need them: add poses to meta.json or drop those from teacher.modalities")
    s = np.arange(map_size, dtype=np.float64) + 0.5  # map pixel centres, in image pixels below
    u, v = np.meshgrid(s * meta.width / map_size - 0.5, s * meta.height / map_size - 0.5)
    rays = np.stack([(u - meta.cx) / meta.fx, (v - meta.cy) / meta.fy, np.ones_like(u)], axis=-1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    first = meta.poses[frames[0]]
    out = np.empty((len(frames), 6, map_size, map_size), np.float32)
    for n, f in enumerate(frames):
        pose = meta.poses[f]
        d = rays @ (first[:3, :3].T @ pose[:3, :3]).T
        o = first[:3, :3].T @ (pose[:3, 3] - first[:3, 3])
        out[n] = np.concatenate([d, np.cross(o, d)], axis=-1).transpose(2, 0, 1)
    return out


def compose_flow(flows: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Chain adjacent flows ``(k, H, W, 2)`` (t -> t+1, ..., t+k-1 -> t+k) into the flow t -> t+k
    ``(H, W, 2)`` and a validity mask: bilinear lookups at the moved positions (see the module docstring).
    ``valid`` (k, H, W) masks each step's flow (looked up at the nearest pixel)."""
    _, h, w, _ = flows.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    px, py = gx + flows[0, ..., 0], gy + flows[0, ..., 1]  # the first step is exact: integer positions
    ok = np.ones((h, w), bool) if valid is None else valid[0].copy()
    for i in range(1, len(flows)):
        ok &= (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
        if valid is not None:
            ok &= cv2.remap(valid[i].astype(np.uint8), px, py, cv2.INTER_NEAREST).astype(bool)
        step = cv2.remap(np.ascontiguousarray(flows[i]), px, py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        px, py = px + step[..., 0], py + step[..., 1]
    return np.stack([px - gx, py - gy], axis=-1), ok


def resize_masked(values: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-mean of ``values`` (H, W[, C]) over its ``valid`` pixels onto ``size x size``; a map pixel is
    valid when at least ``MIN_COVER`` of what it covers is."""
    cover = cv2.resize(valid.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    mask = valid if values.ndim == 2 else valid[..., None]
    total = cv2.resize(np.where(mask, values, 0).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    weight = np.maximum(cover, 1e-6) if values.ndim == 2 else np.maximum(cover, 1e-6)[..., None]
    return (total / weight).astype(np.float32), cover >= MIN_COVER


def _pack(per_frame: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """[(S, S[, C]) values, (S, S) valid] per frame -> (N, C, S, S), (N, 1, S, S)."""
    values = np.stack([v if v.ndim == 3 else v[..., None] for v, _ in per_frame]).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(values, np.float32), np.stack([m for _, m in per_frame])[:, None]


def _depth_map(depth: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    valid = valid & np.isfinite(depth) & (depth > 0)
    log, ok = resize_masked(np.log(np.where(valid, depth, 1.0)), valid, size)
    return np.exp(log), ok


def _flow_map(flow: np.ndarray, valid: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = valid.shape
    values, ok = resize_masked(flow, valid, size)
    return values * np.array([size / w, size / h], np.float32), ok


def _zero_flow(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The last frame has no next one: zero flow, masked out of losses and metrics."""
    return np.zeros((size, size, 2), np.float32), np.zeros((size, size), bool)


@functools.lru_cache(maxsize=6)
def _load_npz(path: str, key: str, mtime_ns: int) -> np.ndarray:
    with np.load(path) as data:
        return data[key]


def _gt(clip: Path, name: str) -> np.ndarray:
    path = clip / "gt" / f"{name}.npz"
    if not path.is_file():
        raise TeacherError(f"{clip} (gt/{name}.npz): missing; teacher.targets_from 'gt' needs the clip's ground "
                           "truth: use targets_from 'estimates' for clips without gt/")
    try:
        return _load_npz(str(path), name, path.stat().st_mtime_ns)
    except (OSError, ValueError, KeyError) as exc:
        raise TeacherError(f"{clip} (gt/{name}.npz): unreadable or without a {name!r} array: {exc}") from None


def _gt_maps(clip: Path, meta: ClipMeta, frames: list[int], size: int, modalities: Sequence[str]) -> Maps:
    values, valid = {}, {}
    everywhere = np.ones((meta.height, meta.width), bool)
    if "depth" in modalities:
        depth = _gt(clip, "depth")
        values["depth"], valid["depth"] = _pack([_depth_map(depth[f], everywhere, size) for f in frames])
    if "flow" in modalities:
        flow = _gt(clip, "flow")
        per = [_flow_map(*compose_flow(flow[a:b]), size) if b > a else _zero_flow(size)
               for a, b in itertools.pairwise(frames)]
        values["flow"], valid["flow"] = _pack([*per, _zero_flow(size)])
    if "motion" in modalities:
        motion = _gt(clip, "motion")
        values["motion"], valid["motion"] = _pack(
            [resize_masked(motion[f].astype(np.float32), everywhere, size) for f in frames])
    return Maps(values, valid)


def _read(clip: Path, side: str, frame: int) -> np.ndarray:
    try:
        return read_rgb(clip, f"{side}/{frame_name(frame)}")
    except ClipError as exc:
        raise TeacherError(str(exc)) from exc


def _read_left(clip: Path, frame: int) -> np.ndarray:
    return _read(clip, "left", frame)


def _dis_flows(frames: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """DIS flow between each pair of adjacent RGB frames: (forward, its mask, backward, its mask); a mask
    keeps the pixels whose round trip through the other direction comes back (forward-backward check)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    h, w = grey[0].shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))

    def consistent(there: np.ndarray, back: np.ndarray) -> np.ndarray:
        round_trip = there + cv2.remap(back, gx + there[..., 0], gy + there[..., 1], cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_REPLICATE)
        return np.linalg.norm(round_trip, axis=-1) <= FB_PX + FB_REL * np.linalg.norm(there, axis=-1)

    out = []
    for a, b in itertools.pairwise(grey):
        fwd, bwd = dis.calc(a, b, None), dis.calc(b, a, None)
        out.append((fwd, consistent(fwd, bwd), bwd, consistent(bwd, fwd)))
    return out


def _chained(steps: list, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Estimated flow clip frame a -> b (either direction) chained from adjacent DIS flows (``steps[t]``:
    t <-> t+1, counted from the first sampled frame), as ``compose_flow`` chains the GT."""
    if b > a:
        flows, masks = [steps[t][0] for t in range(a, b)], [steps[t][1] for t in range(a, b)]
    else:
        flows, masks = [steps[t][2] for t in range(a - 1, b - 1, -1)], [steps[t][3] for t in range(a - 1, b - 1, -1)]
    return compose_flow(np.stack(flows), np.stack(masks))


def camera_flow(depth: np.ndarray, meta: ClipMeta, a: int, b: int) -> np.ndarray:
    """(H, W, 2) flow frame a -> b that the camera motion alone induces on a static scene of ``depth``."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    points = np.stack([(u - meta.cx) / meta.fx * depth, (v - meta.cy) / meta.fy * depth, depth], axis=-1)
    pa, pb = meta.poses[a], meta.poses[b]
    rel = np.linalg.inv(pb) @ pa  # camera a -> world -> camera b
    q = points @ rel[:3, :3].T + rel[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([meta.fx * q[..., 0] / q[..., 2] + meta.cx - u,
                         meta.fy * q[..., 1] / q[..., 2] + meta.cy - v], axis=-1).astype(np.float32)


def _estimated_maps(clip: Path, meta: ClipMeta, frames: list[int], size: int, modalities: Sequence[str],
                    stereo: StereoConfig) -> Maps:
    values, valid = {}, {}
    if "motion" in modalities and meta.poses is None:
        camray_maps(meta, frames, size, clip=clip)  # raises the error that names what is missing
    depths = []
    if "depth" in modalities or "motion" in modalities:
        for f in frames:
            left, right = _read_left(clip, f), _read(clip, "right", f)
            disparity = estimate_disparity(left, right, max_disparity=stereo.max_disparity, cfg=stereo)
            depths.append(disparity_to_depth(disparity, meta.fx, meta.baseline_m))
    if "depth" in modalities:
        values["depth"], valid["depth"] = _pack([_depth_map(d, np.isfinite(d), size) for d in depths])
    if "flow" not in modalities and "motion" not in modalities:
        return Maps(values, valid)
    # Each frame's flow partner: the next sampled frame; the last frame (motion only) looks back. Flow is
    # chained through every clip frame in between: DIS is far more accurate on small displacements.
    partners = list(range(1, len(frames))) + ([len(frames) - 2] if len(frames) > 1 else [])
    first = frames[0]
    steps = _dis_flows([_read_left(clip, f) for f in range(first, frames[-1] + 1)])
    flows = [_chained(steps, frames[n] - first, frames[p] - first) if frames[p] != frames[n]
             else (np.zeros((meta.height, meta.width, 2), np.float32), np.ones((meta.height, meta.width), bool))
             for n, p in enumerate(partners)]
    if "flow" in modalities:
        values["flow"], valid["flow"] = _pack([_flow_map(f, ok, size) for f, ok in flows[:len(frames) - 1]]
                                              + [_zero_flow(size)])
    if "motion" in modalities:
        per = []
        for n, p in enumerate(partners):
            flow, ok = flows[n]
            cam = camera_flow(np.nan_to_num(depths[n], nan=1.0), meta, frames[n], frames[p])
            cam_mag = np.linalg.norm(cam, axis=-1)
            residual = np.linalg.norm(flow - cam, axis=-1)
            moving = (residual > MOTION_PX + MOTION_REL * cam_mag).astype(np.float32)
            per.append(resize_masked(moving, ok & np.isfinite(depths[n]) & np.isfinite(cam_mag), size))
        if len(frames) == 1:  # no second frame: motion is unknown
            per = [(np.zeros((size, size), np.float32), np.zeros((size, size), bool))]
        values["motion"], valid["motion"] = _pack(per)
    return Maps(values, valid)

