"""Stereo quality: plain OpenCV SGBM vs the curation estimator on the synthetic clips, against GT disparity.

Renders ``--clips`` clips of ``ScenesConfig()`` (320x240 by default), ``--frames`` frames each spread over the
clip, and scores both methods on every frame against the renderer's disparity (``fx * baseline / depth``):

- ``bad2_pct``: pixels off by more than 2 px, missing ones counted as bad (the headline number);
- ``bad2_valid_pct``: the same among pixels the method returned;
- ``density_pct``: pixels the method returned;
- ``epe_px``: mean absolute error on returned pixels;
- ``fps``: frames per second on one core (``cv2.setNumThreads(1)``), measured in this run.

Writes ``benchmarks/results/stereo_quality.json`` (or ``--out``) and prints a summary line.

    .venv/bin/python benchmarks/stereo_quality.py [--clips 8] [--frames 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from components.config import ScenesConfig, StereoConfig
from components.curation.stereo import estimate_disparity, sgbm_disparity
from components.scenes import render_frame, sample_scene

Method = Callable[..., np.ndarray]
METHODS: dict[str, Method] = {"sgbm": sgbm_disparity, "estimator": estimate_disparity}


def render_pairs(scenes: ScenesConfig, clips: int, frames: int) -> list[dict]:
    pairs = []
    for i in range(clips):
        spec = sample_scene(scenes, i)
        for t in np.linspace(0, spec.num_frames - 1, frames).round().astype(int):
            frame = render_frame(spec, int(t))
            with np.errstate(divide="ignore", invalid="ignore"):
                gt = (spec.fx * spec.baseline_m / frame.depth).astype(np.float32)
            gt[~(np.isfinite(gt) & (gt > 0))] = np.nan
            pairs.append({"clip": i, "t": int(t), "left": frame.left, "right": frame.right, "gt": gt})
    return pairs


def counts(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[GT pixels, returned, bad among returned, sum of abs error on returned] for one frame."""
    has_gt = np.isfinite(gt)
    returned = has_gt & np.isfinite(pred)
    err = np.abs(pred[returned] - gt[returned])
    return np.array([has_gt.sum(), returned.sum(), (err > 2.0).sum(), err.sum()], np.float64)


def summarize(c: np.ndarray) -> dict[str, float]:
    total, returned, bad, abs_err = c
    return {
        "bad2_pct": round(100 * (total - returned + bad) / total, 2),
        "bad2_valid_pct": round(100 * bad / max(returned, 1), 2),
        "density_pct": round(100 * returned / total, 2),
        "epe_px": round(abs_err / max(returned, 1), 3),
    }


def frames_per_second(pairs: list[dict], cfg: StereoConfig, repeats: int) -> dict[str, float]:
    """Frames/s of each method on one core; methods take turns so that machine load hits them alike."""
    best = dict.fromkeys(METHODS, float("inf"))
    for fn in METHODS.values():  # warm-up
        fn(pairs[0]["left"], pairs[0]["right"], max_disparity=cfg.max_disparity, cfg=cfg)
    # The best of a few passes: this machine is shared and noisy, the fastest pass is the least disturbed.
    for _ in range(repeats):
        for name, fn in METHODS.items():
            start = time.perf_counter()
            for p in pairs:
                fn(p["left"], p["right"], max_disparity=cfg.max_disparity, cfg=cfg)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: round(len(pairs) / seconds, 1) for name, seconds in best.items()}


def run(scenes: ScenesConfig, cfg: StereoConfig, clips: int, frames: int, repeats: int) -> dict:
    cv2.setNumThreads(1)
    pairs = render_pairs(scenes, clips, frames)
    gt_all = np.concatenate([p["gt"][np.isfinite(p["gt"])] for p in pairs])
    fps = frames_per_second(pairs, cfg, repeats)
    results: dict = {}
    for name, fn in METHODS.items():
        total = np.zeros(4)
        per_clip: dict[int, np.ndarray] = {}
        for p in pairs:
            c = counts(fn(p["left"], p["right"], max_disparity=cfg.max_disparity, cfg=cfg), p["gt"])
            total += c
            per_clip[p["clip"]] = per_clip.get(p["clip"], np.zeros(4)) + c
        results[name] = {
            **summarize(total),
            "fps": fps[name],
            "per_clip_bad2_pct": {str(k): summarize(v)["bad2_pct"] for k, v in per_clip.items()},
        }
    return {
        "methods": results,
        "estimator_time_vs_sgbm": round(fps["sgbm"] / fps["estimator"], 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "frames": len(pairs),
        "clips": clips,
        "resolution": [scenes.width, scenes.height],
        "gt_disparity_px": {
            "min": round(float(gt_all.min()), 2),
            "median": round(float(np.median(gt_all)), 2),
            "max": round(float(gt_all.max()), 2),
            "beyond_max_disparity_pct": round(100 * float((gt_all >= cfg.max_disparity).mean()), 3),
        },
        "stereo_config": asdict(cfg),
        "opencv": cv2.__version__,
        "machine": platform.processor() or platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8, help="frames per clip, spread over the clip")
    parser.add_argument("--repeats", type=int, default=3, help="timing passes; the fastest counts")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "stereo_quality.json"
    )
    args = parser.parse_args()
    scenes = ScenesConfig(width=320, height=240)
    report = run(scenes, StereoConfig(), args.clips, args.frames, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp_out, args.out)  # atomic: a reader never sees half a result
    m = report["methods"]
    print(
        f"stereo on {report['frames']} frames ({args.clips} clips, 320x240): "
        + " | ".join(
            f"{k}: bad2 {v['bad2_pct']}% (valid-only {v['bad2_valid_pct']}%), EPE {v['epe_px']} px, "
            f"density {v['density_pct']}%, {v['fps']} fps"
            for k, v in m.items()
        )
        + f" (estimator {report['estimator_time_vs_sgbm']}x SGBM's time) -> {args.out}"
    )


if __name__ == "__main__":
    main()
