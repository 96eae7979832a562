"""Did the embedded 4D teacher learn? Held-out metrics next to trivial predictors, on one core.

    .venv/bin/python benchmarks/teacher_quality.py [--params presets/smoke.yaml] [--clips N] [--steps N]
                                                   [--teacher-from-params] [--out FILE]

Renders and curates the params file's clips (``--clips`` overrides ``scenes.num_clips``), trains the embedded
teacher with the default ``TeacherConfig()`` (``--teacher-from-params``: the file's ``teacher`` section) for
the default student grid (``ModelConfig()``: 4 frames x 2 x 2 tokens of 56-pixel frames), and scores it on
the bench split's clips, which it never saw:

- ``depth_absrel`` (lower is better) vs the training-mean depth map;
- ``flow_epe`` (map pixels) vs zero flow;
- ``motion_iou`` vs all-static (0 whenever something moves);
- ``camray_angle_deg`` and ``camray_moment_l2`` vs the training-mean ray map per frame.

``learned`` says, per metric, whether the teacher beats its baseline. ``estimate_targets`` scores the
``targets_from: estimates`` maps (stereo depth, DIS flow, motion from flow vs camera flow) against the
ground truth on the same held-out clips: what a teacher trained on real clips would learn from.

Writes benchmarks/results/teacher_quality.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import cv2
import torch
from _common import RESULTS, loadavg, machine, peak_rss_mb, rounded

from components.config import ModelConfig, TeacherConfig, load_params
from components.curation.run import curate
from components.io import read_jsonl, write_json
from components.scenes import render_scenes
from components.teacher import train_teacher
from components.teacher.data import load_data
from components.teacher.metrics import MetricSums

LOWER_IS_BETTER = {"depth_absrel", "flow_epe", "camray_angle_deg", "camray_moment_l2"}


def estimate_quality(curated: Path, cfg: TeacherConfig, model_cfg: ModelConfig, stereo) -> dict[str, float]:
    """The estimated target maps scored as predictions of the ground-truth ones (held-out clips)."""
    bench = read_jsonl(curated / "bench.jsonl")
    gt = load_data(bench, replace(cfg, targets_from="gt"), model_cfg)
    est = load_data(bench, replace(cfg, targets_from="estimates"), model_cfg, stereo)
    pred = dict(est.values)
    pred["motion"] = torch.logit(est.values["motion"].clamp(1e-3, 1 - 1e-3))  # a probability -> a logit
    # Score only where the estimate says it is valid (the teacher is trained on those pixels only).
    sums = MetricSums()
    sums.update(pred, gt.values, {m: gt.valid[m] & est.valid[m] for m in gt.valid})
    coverage = {f"{m}_valid_fraction": float((gt.valid[m] & est.valid[m]).float().sum() / gt.valid[m].float().sum())
                for m in ("depth", "flow", "motion")}
    return {**sums.result(), **coverage}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="presets/smoke.yaml")
    ap.add_argument("--clips", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None, help="override teacher max_steps")
    ap.add_argument("--teacher-from-params", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS / "teacher_quality.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    overrides = [f"scenes.num_clips={args.clips}"] if args.clips else []
    params = load_params(args.params, overrides)
    cfg = params.teacher if args.teacher_from_params else TeacherConfig()
    cfg = replace(cfg, max_steps=args.steps or cfg.max_steps)
    model_cfg = ModelConfig()
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        render_scenes(params.scenes, work / "scenes", workers=1, progress=False)
        timings["render_s"] = time.perf_counter() - start
        start = time.perf_counter()
        stats = curate(work / "scenes", replace(params.curation, workers=1), work / "curated", progress=False)
        timings["curate_s"] = time.perf_counter() - start
        result = train_teacher(cfg, model_cfg, work / "curated", work / "teacher", progress=True)
        timings["train_teacher_s"] = result.seconds
        start = time.perf_counter()
        estimates = estimate_quality(work / "curated", cfg, model_cfg, params.curation.stereo)
        timings["estimate_targets_s"] = time.perf_counter() - start

    learned = {k: (v < result.baselines[k]) if k in LOWER_IS_BETTER else (v > result.baselines[k])
               for k, v in result.metrics.items()}
    curve = result.loss_curve
    report = rounded({
        "what": "embedded teacher, held-out (bench split) clips it never saw, one core",
        "params": args.params, "clips": params.scenes.num_clips, "resolution": [params.scenes.width,
                                                                                params.scenes.height],
        "records": stats["records"], "teacher": asdict(cfg),
        "student_grid": {"num_frames": model_cfg.num_frames, "frame_size": model_cfg.frame_size,
                         "visual_input": model_cfg.visual_input},
        "train_samples": result.train_samples, "eval_samples": result.eval_samples,
        "parameters": result.parameters,
        "held_out": result.metrics, "baselines": result.baselines, "learned": learned,
        "train_frames": result.train_metrics,
        "loss_first_last": [curve[0], curve[-1]],
        "estimate_targets": estimates,
        "timings_s": timings, "machine": machine(), "load": loadavg(), "peak_rss_mb": peak_rss_mb(),
    })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(f"held-out  {report['held_out']}\nbaselines {report['baselines']}\nlearned   {learned} -> {args.out}")


if __name__ == "__main__":
    main()
