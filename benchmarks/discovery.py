"""Object discovery on the synthetic clips with the instance masks withheld, scored against them.

    .venv/bin/python benchmarks/discovery.py [--scenes data/scenes] [--clips 144] [--no-odometry]

For each clip: stereo depth (``estimate_disparity``, timed), then ``discover_objects`` with those depths
and the true poses (timed alone), and again with poses from ``estimate_poses`` (``odometry.py``) when that
module exists. Discovered objects are matched to true ones by the Hungarian method on mean per-frame mask
IoU (frames where either is present; a pair below ``MATCH_IOU`` is no match). A true object is moving when
its net speed ``|center[-1] - center[0]| / duration`` exceeds 0.2 m/s.

- recall: true moving objects matched by a discovered object;
- precision: discovered objects flagged moving that match a true moving object, out of all flagged moving
  (one that matches a true still object is counted apart, ``flagged_moving_on_still``, not as a false
  positive); ``precision_all`` does the same over every discovered object;
- ``median_iou``: matched true moving objects;
- speed: frames/s of discovery alone and of the stereo matcher on the same frames, one core.

Goals (the issue): recall >= 0.9, precision >= 0.9, median IoU >= 0.6. Writes
``benchmarks/results/discovery.json`` (or ``--out``) and a short ``.md`` beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from components.config import DiscoveryConfig, StereoConfig
from components.curation.discovery import discover_objects
from components.curation.stereo import disparity_to_depth, estimate_disparity
from components.io import write_json, write_text
from components.sources.clip import frame_name, list_clips, read_mask, read_meta, read_rgb

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "discovery.json"
STILL_SPEED = 0.2  # m/s, the questions' threshold
MATCH_IOU = 0.2  # a discovered object overlapping a true one less than this (mean per frame) is no match

try:  # written by another helper; the row is skipped without it
    from components.curation.odometry import estimate_poses
except ImportError:  # pragma: no cover - depends on the tree
    estimate_poses = None


def mean_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-frame IoU of two T x H x W boolean masks over the frames where either is present."""
    inter = (a & b).sum(axis=(1, 2))
    union = (a | b).sum(axis=(1, 2))
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else 0.0


def score(found, true_masks: np.ndarray, true_ids: list[int], true_speed: dict[int, float]) -> dict:
    """Match discovered objects to true ones; count hits per category for one clip."""
    iou = np.array([[mean_iou(found.masks == k, true_masks == j) for j in true_ids] for k in found.ids])
    matched: dict[int, tuple[int, float]] = {}  # discovered id -> (true id, IoU)
    if iou.size:
        for r, c in zip(*linear_sum_assignment(-iou), strict=True):
            if iou[r, c] >= MATCH_IOU:
                matched[found.ids[r]] = (true_ids[c], float(iou[r, c]))
    moving_true = {j for j in true_ids if true_speed[j] > STILL_SPEED}
    hit = {j: v for j, v in matched.values()}
    out = {
        "true_moving": len(moving_true),
        "recalled": sum(j in hit for j in moving_true),
        "ious": [hit[j] for j in moving_true if j in hit],
        "flagged": sum(found.moving.values()),
        "flagged_tp": 0, "flagged_on_still": 0, "flagged_fp": 0,
        "all": len(found.ids), "all_tp": 0, "all_on_still": 0, "all_fp": 0,
        "missed": [{"id": j, "speed": round(true_speed[j], 3)} for j in moving_true if j not in hit],
        "moving_flag_wrong_on_moving": 0,
        # Static discovery: true still objects matched by an object discovered still (``moving`` False).
        "true_still": len(set(true_ids) - moving_true),
        "static_found": sum(not found.moving[k] for k in found.ids),
        "static_recalled": sum(1 for k, (j, _) in matched.items() if not found.moving[k] and j not in moving_true),
        "static_on_moving": sum(1 for k, (j, _) in matched.items() if not found.moving[k] and j in moving_true),
        "static_fp": sum(1 for k in found.ids if not found.moving[k] and k not in matched),
        "static_ious": [v for k, (j, v) in matched.items() if not found.moving[k] and j not in moving_true],
    }
    for k in found.ids:
        j = matched.get(k, (None, 0))[0]
        kind = "tp" if j in moving_true else ("on_still" if j is not None else "fp")
        out[f"all_{kind}"] += 1
        if found.moving[k]:
            out[f"flagged_{kind}"] += 1
        elif kind == "tp":
            out["moving_flag_wrong_on_moving"] += 1
    return out


def overrides(cfg: DiscoveryConfig, pairs: list[str]) -> DiscoveryConfig:
    """``key=value`` strings -> a copy of ``cfg`` with those fields replaced (typed like the defaults)."""
    changes = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not hasattr(cfg, key):
            raise SystemExit(f"--set: DiscoveryConfig has no field {key!r}")
        kind = type(getattr(cfg, key))
        changes[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return replace(cfg, **changes)


def load_clip(clip: Path) -> dict:
    meta = read_meta(clip)
    T = meta.num_frames
    left = np.stack([read_rgb(clip, f"left/{frame_name(t)}") for t in range(T)])
    right = np.stack([read_rgb(clip, f"right/{frame_name(t)}") for t in range(T)])
    masks = np.stack([read_mask(clip, f"masks/{frame_name(t)}", size=left.shape[1:3]) for t in range(T)])
    tracks = json.loads((clip / "gt" / "tracks.json").read_text())["objects"]
    duration = (T - 1) / meta.fps
    speed = {o["id"]: float(np.linalg.norm(np.subtract(o["center"][-1], o["center"][0]))) / duration
             for o in tracks}
    return {"meta": meta, "left": left, "right": right, "masks": masks, "speed": speed}


def summarize(rows: list[dict]) -> dict:
    total = {k: sum(r[k] for r in rows) for k in rows[0] if isinstance(rows[0][k], int)}
    ious = [x for r in rows for x in r["ious"]]
    return {
        "recall": round(total["recalled"] / max(total["true_moving"], 1), 4),
        "precision": round(total["flagged_tp"] / max(total["flagged_tp"] + total["flagged_fp"], 1), 4),
        "precision_all": round(total["all_tp"] / max(total["all_tp"] + total["all_fp"], 1), 4),
        "median_iou": round(float(np.median(ious)), 4) if ious else 0.0,
        "iou_p10": round(float(np.percentile(ious, 10)), 4) if ious else 0.0,
        **total,
        "static_recall": round(total["static_recalled"] / max(total["true_still"], 1), 4),
        "static_median_iou": round(float(np.median(sious)), 4) if (sious := [x for r in rows for x in r["static_ious"]])
        else 0.0,
        "missed": [m | {"clip": r["clip"]} for r in rows for m in r["missed"]],
        "false_positives": [r["clip"] for r in rows for _ in range(r["flagged_fp"])],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenes", type=Path, default=ROOT / "data" / "scenes")
    ap.add_argument("--clips", type=int, default=0, help="first N clips (0: all)")
    ap.add_argument("--no-odometry", action="store_true", help="skip the estimated-poses row")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="DiscoveryConfig overrides")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    cfg, stereo = overrides(DiscoveryConfig(), args.set), StereoConfig()
    clips = list_clips(args.scenes)[: args.clips or None]
    use_vo = estimate_poses is not None and not args.no_odometry
    rows: dict[str, list[dict]] = {"true_poses": [], **({"odometry_poses": []} if use_vo else {})}
    seconds = {"stereo": 0.0, "discovery": 0.0, "odometry": 0.0, "discovery_odometry_poses": 0.0}
    frames, per_clip = 0, []
    start = time.perf_counter()
    for clip in clips:
        c = load_clip(clip)
        meta, T = c["meta"], c["meta"].num_frames
        t0 = time.perf_counter()
        disp = np.stack([estimate_disparity(lf, rf, max_disparity=stereo.max_disparity, cfg=stereo)
                         for lf, rf in zip(c["left"], c["right"], strict=True)])
        t_stereo = time.perf_counter() - t0
        depths = np.stack([disparity_to_depth(d, meta.fx, meta.baseline_m) for d in disp])
        poses = {"true_poses": meta.poses}
        if use_vo:
            t0 = time.perf_counter()
            try:
                poses["odometry_poses"] = estimate_poses(c["left"], c["right"], K=meta.K, baseline=meta.baseline_m,
                                                         disparities=disp)
            except ValueError as exc:  # OdometryError: the row counts the clip as failed
                print(f"  {clip.name}: odometry failed: {exc}")
                poses["odometry_poses"] = None
            seconds["odometry"] += time.perf_counter() - t0
        ids = sorted(c["speed"])
        entry = {"clip": clip.name, "frames": T, "stereo_fps": round(T / t_stereo, 1)}
        for row, P in poses.items():
            if P is None:
                rows[row].append(score_empty(clip.name, c, ids))
                continue
            t0 = time.perf_counter()
            found = discover_objects(c["left"], c["right"], K=meta.K, baseline=meta.baseline_m, poses=P,
                                     fps=meta.fps, depths=depths, cfg=cfg)
            elapsed = time.perf_counter() - t0
            r = score(found, c["masks"], ids, c["speed"]) | {"clip": clip.name}
            rows[row].append(r)
            if row == "true_poses":
                seconds["discovery"] += elapsed
                entry |= {"discovery_fps": round(T / elapsed, 1), "found": len(found.ids),
                          "true_moving": r["true_moving"], "recalled": r["recalled"], "fp": r["flagged_fp"],
                          "ious": [round(x, 3) for x in r["ious"]]}
            else:
                seconds["discovery_odometry_poses"] += elapsed
                entry |= {"vo_recalled": r["recalled"], "vo_fp": r["flagged_fp"]}
        seconds["stereo"] += t_stereo
        frames += T
        per_clip.append(entry)
    wall = time.perf_counter() - start
    stereo_fps = frames / seconds["stereo"]
    disc_fps = frames / seconds["discovery"]
    report = {
        "goals": {"recall": 0.9, "precision": 0.9, "median_iou": 0.6},
        "results": {row: summarize(r) for row, r in rows.items()},
        "speed": {
            "stereo_fps": round(stereo_fps, 1),
            "discovery_fps": round(disc_fps, 1),
            "discovery_time_vs_stereo": round(stereo_fps / disc_fps, 3),
            **({"odometry_fps": round(frames / seconds["odometry"], 1)} if use_vo else {}),
            "stereo_plus_discovery_fps": round(frames / (seconds["stereo"] + seconds["discovery"]), 1),
        },
        "odometry_row": "estimate_poses" if use_vo else "skipped (components/curation/odometry.py not used)",
        "clips": len(clips),
        "frames": frames,
        "resolution": [int(c["left"].shape[2]), int(c["left"].shape[1])],
        "wall_s": round(wall, 1),
        "config": asdict(cfg),
        "per_clip": per_clip,
        "load_average_1min": round(os.getloadavg()[0], 2),
        "opencv": cv2.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    write_json(args.out, report)
    write_text(args.out.with_suffix(".md"), markdown(report))
    for row, s in report["results"].items():
        print(f"{row}: recall {s['recall']} ({s['recalled']}/{s['true_moving']}), precision {s['precision']} "
              f"(fp {s['flagged_fp']}, on still {s['flagged_on_still']}), precision_all {s['precision_all']}, "
              f"median IoU {s['median_iou']}; static: recall {s['static_recall']} ({s['static_recalled']}/"
              f"{s['true_still']}), fp {s['static_fp']}, on moving {s['static_on_moving']}, "
              f"IoU {s['static_median_iou']}")
    sp = report["speed"]
    print(f"speed: stereo {sp['stereo_fps']} fps, discovery {sp['discovery_fps']} fps "
          f"({sp['discovery_time_vs_stereo']}x the stereo time); {len(clips)} clips in {wall:.0f} s -> {args.out}")


def score_empty(name: str, c: dict, ids: list[int]) -> dict:
    """A clip whose poses could not be estimated: every moving object missed, nothing found."""
    moving = [j for j in ids if c["speed"][j] > STILL_SPEED]
    return {"true_moving": len(moving), "recalled": 0, "ious": [], "flagged": 0, "flagged_tp": 0,
            "flagged_on_still": 0, "flagged_fp": 0, "all": 0, "all_tp": 0, "all_on_still": 0, "all_fp": 0,
            "missed": [{"id": j, "speed": round(c["speed"][j], 3)} for j in moving],
            "moving_flag_wrong_on_moving": 0, "true_still": len(ids) - len(moving), "static_found": 0,
            "static_recalled": 0, "static_on_moving": 0, "static_fp": 0, "static_ious": [], "clip": name}


def markdown(report: dict) -> str:
    lines = ["# Object discovery (masks withheld)", "",
             (f"{report['clips']} clips, {report['frames']} frames, {report['resolution'][0]}x"
             f"{report['resolution'][1]}; goals: recall >= 0.9, precision >= 0.9, median IoU >= 0.6 "
             "(objects with net speed > 0.2 m/s)."), "",
             "| poses | recall | precision | precision (all found) | median IoU | IoU p10 | FP | found on still |",
             "|---|---|---|---|---|---|---|---|"]
    for row, s in report["results"].items():
        lines.append(f"| {row} | {s['recall']} ({s['recalled']}/{s['true_moving']}) | {s['precision']} | "
                     f"{s['precision_all']} | {s['median_iou']} | {s['iou_p10']} | {s['flagged_fp']} | "
                     f"{s['flagged_on_still']} flagged moving, {s['all_on_still']} in all |")
    lines += ["", "Static discovery (objects returned with ``moving`` False; true still objects: net speed <= 0.2 m/s):",
              "", "| poses | still recall | median IoU | static found | false positives | on moving objects |",
              "|---|---|---|---|---|---|"]
    for row, s in report["results"].items():
        lines.append(f"| {row} | {s['static_recall']} ({s['static_recalled']}/{s['true_still']}) | "
                     f"{s['static_median_iou']} | {s['static_found']} | {s['static_fp']} | {s['static_on_moving']} |")
    for row, s in report["results"].items():
        short = [f"{k} {s[k]} < {goal} (short by {goal - s[k]:.3f})" for k, goal in report["goals"].items()
                 if s[k] < goal]
        lines.append(f"\n{row}: " + ("every goal met." if not short else "goals missed: " + "; ".join(short) + "."))
    sp = report["speed"]
    lines += ["", (f"Speed (one core, same run): stereo matcher {sp['stereo_fps']} frames/s, discovery alone "
              f"{sp['discovery_fps']} frames/s (it costs {sp['discovery_time_vs_stereo']}x the matcher's time), "
              f"stereo + discovery {sp['stereo_plus_discovery_fps']} frames/s."), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
