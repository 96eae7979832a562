"""Curation throughput next to the bare stereo matcher (same run, one core), and label agreement.

    .venv/bin/python benchmarks/curation_quality.py [--clips 24] [--params params.yaml]

Writes benchmarks/results/curation_quality.json. Goal (issue 2): the whole curation at >= 50% of the
bare matcher's frames/s; label agreement with ground truth >= 97% (multiple choice) and >= 90% of
numeric answers within 10%.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2

from components.config import load_params
from components.curation.run import curate
from components.curation.stereo import estimate_disparity
from components.io import write_json
from components.scenes import render_scenes
from components.sources.clip import frame_name, list_clips, read_meta, read_rgb

OUT = Path(__file__).resolve().parent / "results" / "curation_quality.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--clips", type=int, default=24)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    params = load_params(args.params, [f"scenes.num_clips={args.clips}"])
    cfg = replace(params.curation, workers=1)
    with tempfile.TemporaryDirectory() as tmp:
        scenes, curated = Path(tmp) / "scenes", Path(tmp) / "curated"
        render_scenes(params.scenes, scenes, workers=2, progress=False)
        pairs = []
        for clip in list_clips(scenes):
            meta = read_meta(clip)
            pairs += [(read_rgb(clip, f"left/{frame_name(t)}"), read_rgb(clip, f"right/{frame_name(t)}"))
                      for t in range(meta.num_frames)]
        start = time.perf_counter()
        for left, right in pairs:
            estimate_disparity(left, right, max_disparity=cfg.stereo.max_disparity, cfg=cfg.stereo)
        matcher_fps = len(pairs) / (time.perf_counter() - start)
        start = time.perf_counter()
        stats = curate(scenes, cfg, curated, progress=False)
        wall = time.perf_counter() - start
    curation_fps = stats["performance"]["stereo_frames"] / wall
    result = {
        "what": "one core, 320x240 unless params say otherwise; curation = read + stereo + tracks + flow + "
                "questions + writing all outputs",
        "resolution": [params.scenes.width, params.scenes.height],
        "clips": args.clips,
        "stereo_frames": stats["performance"]["stereo_frames"],
        "bare_matcher_frames_per_s": round(matcher_fps, 2),
        "curation_frames_per_s": round(curation_fps, 2),
        "curation_over_matcher": round(curation_fps / matcher_fps, 3),
        "goal_curation_over_matcher": 0.5,
        "time_split_s": stats["performance"]["timing_s"],
        "label_agreement": stats["label_agreement"],
        "object_center_error_m": stats["object_center_error_m"],
        "records": stats["records"],
    }
    OUT.parent.mkdir(exist_ok=True)
    write_json(OUT, result)
    overall = stats["label_agreement"]["overall"]
    print(f"curation {curation_fps:.1f} frames/s vs matcher {matcher_fps:.1f} ({curation_fps / matcher_fps:.0%}); "
          f"agreement mc {overall['mc_agreement']:.3f} numeric<=10% {overall['numeric_within_10pct']:.3f} -> {OUT}")
    print(json.dumps(stats["label_agreement"], indent=1))


if __name__ == "__main__":
    main()
