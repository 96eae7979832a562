"""One clip -> estimated geometry (and, when the clip has ``gt/``, ground-truth geometry) -> questions.

``curate_clip`` is the unit of fan-out (a process pool in the CLI, ``.map`` in the Prefect flow). It reads
only what a real stereo dataset gives: frames, calibration, poses and instance masks when present. It
reads ``gt/`` afterwards, separately, only to label the same questions from ground truth.

It writes nothing: the Set-of-Marks image travels in the result and ``finalize`` writes it with every
other output, so a clip never leaves a file behind (a killed or retried task included). Any failure in
one clip quarantines that clip, named with the file at fault where it is known, and never stops the others.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from components.config import CurationConfig
from components.curation import questions as q
from components.curation.geometry import (
    Geometry,
    Track,
    bearing_angles,
    fit_track,
    observe_object,
    relative_poses,
    to_world,
    yaw_rate,
)
from components.curation.regions import encode_som, mask_box, rle_encode, som_relpath
from components.curation.stereo import disparity_range, disparity_to_depth, estimate_disparity
from components.sources.clip import ClipError, ClipMeta, frame_name, read_mask, read_meta, read_rgb

log = logging.getLogger(__name__)

GT_TRACKS = "gt/tracks.json"


@dataclass
class ClipResult:
    """What one clip contributes; picklable so it crosses process and task boundaries."""

    clip_id: str
    clip_dir: str
    frames: list[int] = field(default_factory=list)
    timestamps: list[float] = field(default_factory=list)
    frame_paths: list[str] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)
    regions: dict[int, dict] = field(default_factory=dict)  # object id -> {box, mask_rle}
    som_image: str | None = None  # where finalize writes ``som_png`` (under the final output folder)
    som_png: bytes | None = None  # encoded here, written by finalize: a clip never writes into the output
    est: dict[str, q.QuestionSpec] = field(default_factory=dict)
    gt: dict[str, q.QuestionSpec] | None = None
    # For the ST-CoT: camera and object centers at the first and last sampled frame, per geometry source.
    centers: dict[str, dict] = field(default_factory=dict)
    depth_source: str = ""
    pose_source: str = ""
    object_source: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    stereo_frames: int = 0
    center_errors_m: list[float] = field(default_factory=list)  # estimated vs GT object centers
    error: str | None = None  # quarantine reason (names the clip and the file)


def sample_frames(num_frames: int, n: int) -> list[int]:
    """``n`` indices spread uniformly over the clip, always including the first and the last frame."""
    n = min(n, num_frames)
    return sorted({round(x) for x in np.linspace(0, num_frames - 1, n)})


@contextmanager
def _reading(clip: Path, file: str) -> Iterator[None]:
    """Turn an unforeseen failure while handling ``file`` into a ClipError naming the clip and the file,
    so one odd clip is quarantined instead of aborting the whole curation."""
    try:
        yield
    except ClipError:
        raise
    except Exception as exc:
        log.debug("unexpected error in %s (%s)", clip, file, exc_info=True)
        raise ClipError(clip, file, f"{type(exc).__name__}: {exc}") from exc


def _check_pair(clip: Path, name: str, left: np.ndarray, right: np.ndarray, meta: ClipMeta, max_disparity: int,
                cfg: CurationConfig) -> None:
    if left.shape != right.shape:
        raise ClipError(clip, f"right/{name}", f"size {right.shape[1]}x{right.shape[0]} differs from the left "
                        f"frame's {left.shape[1]}x{left.shape[0]}")
    if left.shape[:2] != (meta.height, meta.width):
        raise ClipError(clip, f"left/{name}", f"size {left.shape[1]}x{left.shape[0]} differs from meta.json's "
                        f"{meta.width}x{meta.height}")
    # The matcher searches max_disparity columns with a block_size window: a smaller frame has no depth.
    min_w, min_h = max_disparity + 1, cfg.stereo.block_size
    if left.shape[1] < min_w or left.shape[0] < min_h:
        raise ClipError(clip, f"left/{name}", f"size {left.shape[1]}x{left.shape[0]} is too small for stereo "
                        f"(at least {min_w}x{min_h}: wider than the disparity range {max_disparity} "
                        "(curation.stereo.max_disparity, min_depth_m), as tall as curation.stereo.block_size)")


DEPTH_SGBM = "stereo (SGBM + left-right check + sub-pixel refinement + hole filling)"
POSES_GIVEN = "meta.json poses"
POSES_ESTIMATED = "estimated: stereo visual odometry (meta.json has no poses)"
OBJECTS_GIVEN = "instance masks (masks/)"
OBJECTS_DISCOVERED = "discovered: motion segmentation of stereo depth and optical flow (no masks/)"


# An object discovery found standing still is tracked at one world position: its stillness is the tracker's
# assumption, not a measurement, so questions about its own motion are not asked (its distance to the moving
# camera, its size and its place are measured).
IMPOSED_BY_DISCOVERY = frozenset({"translational", "rotational", "speed_acceleration", "displacement_path_length"})


def _read_stereo(clip: Path, meta: ClipMeta, cfg: CurationConfig, timings: dict) -> tuple[np.ndarray, np.ndarray,
                                                                                             np.ndarray]:
    """Every frame pair (T x H x W x 3 left and right) and its disparity (T x H x W pixels, NaN unknown)."""
    d = disparity_range(cfg.stereo, meta.fx, meta.baseline_m)
    if cfg.learned.stereo:
        from components.curation.learned import learned_stereo

        model = learned_stereo(cfg.learned.stereo)
        match = model.disparity
    else:
        def match(left: np.ndarray, right: np.ndarray) -> np.ndarray:
            return estimate_disparity(left, right, max_disparity=d, cfg=cfg.stereo)
    lefts, rights, disparities = [], [], []
    for t in range(meta.num_frames):
        name = frame_name(t)
        t0 = time.perf_counter()
        left, right = read_rgb(clip, f"left/{name}"), read_rgb(clip, f"right/{name}")
        _check_pair(clip, name, left, right, meta, d, cfg)
        timings["read"] += time.perf_counter() - t0
        with _reading(clip, f"left/{name}, right/{name}"):
            t0 = time.perf_counter()
            disparities.append(match(left, right))
            timings["stereo"] += time.perf_counter() - t0
        lefts.append(left)
        rights.append(right)
    return np.stack(lefts), np.stack(rights), np.stack(disparities)


def _camera_poses(clip: Path, meta: ClipMeta, lefts: np.ndarray, rights: np.ndarray, disparities: np.ndarray,
                  cfg: CurationConfig, timings: dict) -> tuple[np.ndarray, str]:
    """The clip's camera-to-world poses (the first frame the identity) and where they come from.

    A clip without poses is never taken as a static camera: its poses are estimated from the video, or the
    clip is refused with the odometry's reason.
    """
    if meta.poses is not None:
        return relative_poses(meta.poses), POSES_GIVEN
    from components.curation.odometry import OdometryError, estimate_poses

    t0 = time.perf_counter()
    try:
        poses = estimate_poses(lefts, rights, K=meta.K, baseline=meta.baseline_m, cfg=cfg.odometry,
                               disparities=disparities)
    except OdometryError as exc:
        raise ClipError(clip, "left/", f"meta.json has no poses and visual odometry failed: {exc}") from None
    timings["odometry"] += time.perf_counter() - t0
    return poses, POSES_ESTIMATED


def _instances(clip: Path, meta: ClipMeta, lefts: np.ndarray, rights: np.ndarray, depths: np.ndarray,
               poses: np.ndarray, cfg: CurationConfig, timings: dict) -> tuple[np.ndarray, dict[int, str], str,
                                                                set[int]]:
    """Per-frame instance ids (T x H x W uint8), the objects' names ("" when unknown), their source, and the
    ids discovery found standing still.

    A clip with instance masks and named objects uses them; any other clip (real video) gets its moving
    objects discovered from the video, unnamed: questions then refer to them by region marks only.
    """
    T, H, W = depths.shape
    if meta.objects and (clip / "masks").is_dir():
        t0 = time.perf_counter()
        masks = np.stack([read_mask(clip, f"masks/{frame_name(t)}", size=(H, W)) for t in range(T)])
        timings["read"] += time.perf_counter() - t0
        return masks, {o.id: o.label for o in meta.objects}, OBJECTS_GIVEN, set()
    if meta.objects:
        log.info("%s: meta.json names objects but there is no masks/ folder: discovering objects instead", clip)
    from components.curation.discovery import discover_objects

    t0 = time.perf_counter()
    with _reading(clip, "left/, right/ (object discovery)"):
        found = discover_objects(lefts, rights, K=meta.K, baseline=meta.baseline_m, poses=poses, fps=meta.fps,
                                 depths=depths, still_speed=cfg.thresholds.still_speed, cfg=cfg.discovery)
    timings["discovery"] += time.perf_counter() - t0
    return found.masks, {i: "" for i in found.ids}, OBJECTS_DISCOVERED, {i for i in found.ids if not found.moving[i]}


def estimate_geometry(clip: Path, meta: ClipMeta, cfg: CurationConfig, timings: dict) -> tuple[Geometry, dict]:
    """Stereo depth per frame, camera poses (given or estimated), objects (annotated or discovered)
    back-projected and tracked in world coordinates."""
    lefts, rights, disparities = _read_stereo(clip, meta, cfg, timings)
    depths = disparity_to_depth(disparities, meta.fx, meta.baseline_m)
    poses, pose_source = _camera_poses(clip, meta, lefts, rights, disparities, cfg, timings)
    instance, labels, object_source, still = _instances(clip, meta, lefts, rights, depths, poses, cfg, timings)
    t0 = time.perf_counter()
    T, ids = meta.num_frames, sorted(labels)
    masks = {i: [instance[t] == i for t in range(T)] for i in ids}
    obs = {i: [observe_object(depths[t], m, meta.K) if m.any() else None for t, m in enumerate(masks[i])]
           for i in ids}
    grays = [cv2.cvtColor(left, cv2.COLOR_RGB2GRAY).astype(np.float32) for left in lefts]
    times = np.arange(T) / meta.fps
    tracks = {}
    for i in ids:
        seen = [o for o in obs[i] if o is not None]
        if len(seen) < max(2, T // 2):  # too often occluded or out of view to track
            continue
        centers = np.array([to_world(o.center_cam, poses[t]) if o else [np.nan] * 3 for t, o in enumerate(obs[i])])
        z = [float(o.center_cam[2]) if o else float("nan") for o in obs[i]]
        w = [o.width if o else 0.0 for o in obs[i]]
        if i in still:
            # Found standing still (tracked at one world position): driving past it slides its visible
            # surface by metres, which would read as motion and rotation. It stays where it is.
            smooth, rate = np.tile(np.nanmedian(centers, axis=0), (T, 1)), 0.0
        else:
            smooth = fit_track(times, centers)
            bearing = bearing_angles(smooth, poses[:, :3, 3])
            rate = yaw_rate(grays, masks[i], z, w, bearing, meta.fx, 1.0 / meta.fps)
        tracks[i] = Track(i, labels[i], centers, smooth, float(np.median([o.height for o in seen])),
                          float(np.median([o.width for o in seen])), rate, len(seen) / T)
    timings["tracks"] += time.perf_counter() - t0
    return Geometry(times, poses, tracks), {"first_left": lefts[0], "first_masks": {i: masks[i][0] for i in ids},
                                            "labels": labels, "still": still, "pose_source": pose_source,
                                            "depth_source": (f"learned stereo ({cfg.learned.stereo})"
                                                             if cfg.learned.stereo else DEPTH_SGBM),
                                            "object_source": object_source}


def ground_truth_geometry(clip: Path, meta: ClipMeta) -> Geometry | None:
    """The same ``Geometry`` from ``gt/tracks.json`` and the poses; None when the clip has no ground truth."""
    path = clip / "gt" / "tracks.json"
    if not path.is_file():
        return None
    try:
        gt = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipError(clip, GT_TRACKS, f"not valid JSON: {exc}") from None
    objects = gt.get("objects") if isinstance(gt, dict) else None
    if not isinstance(objects, list):
        raise ClipError(clip, GT_TRACKS, "must be an object with an 'objects' list")
    T = meta.num_frames
    times = np.arange(T) / meta.fps
    poses = meta.poses if meta.poses is not None else np.tile(np.eye(4), (T, 1, 1))
    first_inv = np.linalg.inv(poses[0])
    duration = max(times[-1] - times[0], 1e-9)
    tracks = {}
    for k, o in enumerate(objects):
        track = _gt_track(clip, k, o, T, duration, first_inv)
        tracks[track.object_id] = track
    return Geometry(times, relative_poses(poses), tracks)


def _gt_field(clip: Path, where: str, o: dict, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """``o[key]`` as a finite float array of ``shape``; a ClipError naming the object and the field if not."""
    if key not in o:
        raise ClipError(clip, GT_TRACKS, f"{where}: missing field {key!r}")
    try:
        value = np.asarray(o[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise ClipError(clip, GT_TRACKS, f"{where}: {key} must be numbers") from None
    if value.shape != shape:
        raise ClipError(clip, GT_TRACKS, f"{where}: {key} must have shape {shape}, got {value.shape}")
    if not np.isfinite(value).all():
        raise ClipError(clip, GT_TRACKS, f"{where}: {key} has NaN or infinite values")
    return value


def _gt_track(clip: Path, index: int, o: object, T: int, duration: float, world_to_first: np.ndarray) -> Track:
    """One ground-truth object of ``gt/tracks.json``, validated, in the first camera's coordinates."""
    where = f"objects[{index}]"
    if not isinstance(o, dict):
        raise ClipError(clip, GT_TRACKS, f"{where} must be an object")
    if isinstance(o.get("id"), bool) or not isinstance(o.get("id"), int):
        raise ClipError(clip, GT_TRACKS, f"{where}: id must be an integer, got {o.get('id')!r}")
    if not isinstance(o.get("label"), str):
        raise ClipError(clip, GT_TRACKS, f"{where}: label must be a string, got {o.get('label')!r}")
    where = f"objects[{index}] (id {o['id']})"
    centers = _gt_field(clip, where, o, "center", (T, 3)) @ world_to_first[:3, :3].T + world_to_first[:3, 3]
    yaw = np.unwrap(_gt_field(clip, where, o, "yaw", (T,)))  # + = counter-clockwise seen from above
    size = _gt_field(clip, where, o, "size", (3,))
    rate = float((yaw[-1] - yaw[0]) / duration)
    return Track(o["id"], o["label"], centers, centers, float(size[1]), float(size[0]), rate, 1.0)


def _centers(geo: Geometry, frames: list[int]) -> dict:
    f0, f1 = frames[0], frames[-1]
    return {
        "camera": [geo.camera_centers[f0].tolist(), geo.camera_centers[f1].tolist()],
        "objects": {i: [t.smooth[f0].tolist(), t.smooth[f1].tolist()] for i, t in geo.tracks.items()},
    }


def _restrict(geo: Geometry, frames: list[int]) -> Geometry:
    """The geometry between the first and the last sampled frame (the span the questions talk about)."""
    span = slice(frames[0], frames[-1] + 1)
    tracks = {i: Track(t.object_id, t.label, t.centers[span], t.smooth[span], t.height, t.width, t.yaw_rate,
                       t.visible_fraction) for i, t in geo.tracks.items()}
    return Geometry(geo.times[span] - geo.times[frames[0]], geo.cam_to_world[span], tracks)


def curate_clip(clip_dir: str | Path, cfg: CurationConfig, out_dir: str | Path) -> ClipResult:
    """Curate one clip; a bad clip returns a result with ``error`` set (quarantined), never raises ClipError."""
    clip = Path(clip_dir)
    result = ClipResult(clip_id=clip.name, clip_dir=str(clip))
    timings = {"read": 0.0, "stereo": 0.0, "odometry": 0.0, "discovery": 0.0, "tracks": 0.0, "questions": 0.0}
    start = time.perf_counter()
    try:
        meta = read_meta(clip)
        result.clip_id = meta.clip_id
        geo_full, first = estimate_geometry(clip, meta, cfg, timings)
        # With no trackable object the clip still has its camera's motion to ask about.
        t0 = time.perf_counter()
        frames = sample_frames(meta.num_frames, cfg.frames_per_record)
        result.frames = frames
        result.timestamps = [round(meta.timestamp(f), 4) for f in frames]
        result.frame_paths = [str(clip / "left" / frame_name(f)) for f in frames]
        result.labels = {i: name for i, name in first["labels"].items() if i in geo_full.tracks}
        result.pose_source, result.object_source = first["pose_source"], first["object_source"]
        result.depth_source = first["depth_source"]
        geo = _restrict(geo_full, frames)
        rng = np.random.default_rng([cfg.seed, int.from_bytes(meta.clip_id.encode()[-8:], "little")])
        absent = q.absent_label(set(result.labels.values()), rng)
        result.est = q.all_questions(geo, result.labels, cfg.thresholds, absent)
        for spec in result.est.values():
            if spec.category in IMPOSED_BY_DISCOVERY and set(spec.object_ids) & first["still"]:
                spec.clear = False
        result.centers["est"] = _centers(geo_full, frames)
        with _reading(clip, GT_TRACKS):
            gt_full = ground_truth_geometry(clip, meta)
        if gt_full is not None and result.object_source != OBJECTS_GIVEN:
            # Discovered ids are not the annotation's: ``benchmarks/discovery.py`` matches them to the truth.
            gt_full = None
        if gt_full is not None:
            gt_full.tracks = {i: t for i, t in gt_full.tracks.items() if i in result.labels}
            missing = sorted(set(result.labels) - set(gt_full.tracks))
            if missing:
                raise ClipError(clip, GT_TRACKS, f"no ground truth for object ids {missing} (in meta.json objects)")
            result.gt = q.all_questions(_restrict(gt_full, frames), result.labels, cfg.thresholds, absent)
            result.centers["gt"] = _centers(gt_full, frames)
            result.center_errors_m = [
                float(np.linalg.norm(geo_full.tracks[i].smooth[f] - gt_full.tracks[i].smooth[f]))
                for i in geo_full.tracks for f in frames
            ]
        ids = sorted(result.labels)
        for i in ids:
            m = first["first_masks"][i]
            if m.any():
                result.regions[i] = {"box": mask_box(m), "mask_rle": rle_encode(m)}
        marked = [i for i in ids if i in result.regions]
        result.som_png = encode_som(first["first_left"], [first["first_masks"][i] for i in marked],
                                    [f"<R{k + 1}>" for k in range(len(marked))])
        result.som_image = str(Path(out_dir) / som_relpath(meta.clip_id))
        result.stereo_frames = meta.num_frames
        timings["questions"] += time.perf_counter() - t0
    except ClipError as exc:
        log.warning("quarantined %s", exc)
        result.error = str(exc)
    except Exception as exc:  # a failure nobody foresaw must not abort the other clips
        log.warning("quarantined %s: unexpected %s", clip, type(exc).__name__, exc_info=True)
        result.error = str(ClipError(clip, None, f"unexpected {type(exc).__name__}: {exc}"))
    timings["total"] = time.perf_counter() - start
    result.timings = timings
    return result
