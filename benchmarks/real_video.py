"""Real stereo video end to end, and the curation's throughput with odometry and object discovery on.

    .venv/bin/python benchmarks/real_video.py [--root ../shared/real/karlsruhe_2010_03_09_drive_0023] [--clips 24]

1. **Karlsruhe, end to end**: ``ingest`` (16-frame windows) -> ``curate`` -> the data gate, once with the INS
   poses and once without (``--no-poses``: visual odometry); records per split, objects discovered, the gate's
   verdict. Pictures: the Set-of-Marks frames of the discovered objects and the odometry's trajectory over
   the whole sequence against the INS, into ``docs/figures/`` and logged to MLflow (params' tracking, run
   ``real_video``).
2. **Throughput** (issue 12: >= 40% of the bare stereo matcher's frames/s): ``--clips`` synthetic clips with
   their masks, poses and ground truth withheld, curated on one core, against ``estimate_disparity`` alone on
   the same frames, in the same run.

Writes benchmarks/results/real_video.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2
import numpy as np

from components.config import load_params
from components.curation.geometry import relative_poses
from components.curation.odometry import estimate_poses
from components.curation.run import curate
from components.curation.stereo import disparity_range, estimate_disparity
from components.io import read_jsonl, write_json
from components.quality import run_data_gate
from components.sources.clip import frame_name, list_clips, read_meta, read_rgb
from components.sources.formats import read_sequence
from components.sources.ingest import ingest
from components.tracking import stage_run

OUT = ROOT / "benchmarks" / "results" / "real_video.json"
FIGURES = ROOT / "docs" / "figures"
SAMPLE = ROOT.parent / "shared" / "real" / "karlsruhe_2010_03_09_drive_0023"


SPLITS = ("sft", "rft", "bench")


def end_to_end(root: Path, params, work: Path, *, poses: bool) -> dict:
    """ingest -> curate -> data gate on a real recording; the numbers a user would look at."""
    clips, curated = work / "clips", work / "curated"
    summary = ingest("karlsruhe", root, clips, window=16, poses=poses)
    start = time.perf_counter()
    stats = curate(clips, replace(params.curation, workers=1), curated, progress=False)
    seconds = time.perf_counter() - start
    gate = run_data_gate(curated, params.quality, work / "quality", raise_on_failure=False)
    by_split = {s: read_jsonl(curated / f"{s}.jsonl") for s in SPLITS}
    records = [r for rs in by_split.values() for r in rs]
    return {
        "clips": summary["clips"], "pose_source": summary["pose_source"], "records": {s: len(rs) for s, rs in by_split.items()},
        "by_category": stats["by_category"], "quarantined": stats["n_quarantined"],
        "record_pose_sources": sorted({r["provenance"]["pose_source"] for r in records}),
        "record_object_sources": sorted({r["provenance"]["object_source"] for r in records}),
        "objects_asked_about": len({(r["clip_id"], x["object_id"]) for r in records for x in r["regions"]}),
        "gate_success": bool(gate.success), "gate_failed": [e.name for e in gate.failed],
        "curate_s": round(seconds, 1),
    }


def trajectory_figure(root: Path, params, path: Path) -> dict:
    """The odometry over the whole recording against the INS (ground plane, first camera's frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seq = read_sequence("karlsruhe", root)
    pairs = [seq.read_pair(i) for i in range(len(seq))]
    left, right = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    d = disparity_range(params.curation.stereo, seq.K[0, 0], seq.baseline_m)
    disparities = np.stack([estimate_disparity(a, b, max_disparity=d, cfg=params.curation.stereo) for a, b in pairs])
    start = time.perf_counter()
    est = estimate_poses(left, right, K=seq.K, baseline=seq.baseline_m, cfg=params.curation.odometry,
                         disparities=disparities)
    seconds = time.perf_counter() - start
    ins = relative_poses(seq.poses)
    e, g = est[:, :3, 3], ins[:, :3, 3]
    dist = float(np.sum(np.linalg.norm(np.diff(g[:, [0, 2]], axis=0), axis=1)))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(g[:, 0], g[:, 2], "k-", label="INS (as the left camera)")
    ax.plot(e[:, 0], e[:, 2], "r--", label="stereo visual odometry")
    ax.set_xlabel("x (m, right)")
    ax.set_ylabel("z (m, forward)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_title(f"{seq.name}: {len(seq)} frames, {dist:.1f} m")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"frames": len(seq), "distance_m": round(dist, 2),
            "end_point_error_m": round(float(np.linalg.norm(e[-1, [0, 2]] - g[-1, [0, 2]])), 3),
            "end_point_error_pct": round(100 * float(np.linalg.norm(e[-1, [0, 2]] - g[-1, [0, 2]])) / dist, 2),
            "odometry_frames_per_s": round(len(seq) / seconds, 1)}


def throughput(params, n_clips: int, work: Path) -> dict:
    """Synthetic clips without masks, poses or ground truth: the full real-video path, against the matcher."""
    from components.scenes import render_scenes

    cfg = replace(params.curation, workers=1)
    rendered = work / "rendered"
    render_scenes(replace(params.scenes, num_clips=n_clips), rendered, workers=2, progress=False)
    bare = work / "bare"
    for clip in list_clips(rendered):
        shutil.copytree(clip, bare / clip.name, ignore=shutil.ignore_patterns("gt", "masks"))
        meta = json.loads((bare / clip.name / "meta.json").read_text())
        meta.update(poses=None, objects=[])
        (bare / clip.name / "meta.json").write_text(json.dumps(meta))
    pairs = []
    for clip in list_clips(bare):
        meta = read_meta(clip)
        d = disparity_range(cfg.stereo, meta.fx, meta.baseline_m)
        pairs += [(read_rgb(clip, f"left/{frame_name(t)}"), read_rgb(clip, f"right/{frame_name(t)}"), d)
                  for t in range(meta.num_frames)]
    start = time.perf_counter()
    for left, right, d in pairs:
        estimate_disparity(left, right, max_disparity=d, cfg=cfg.stereo)
    matcher_fps = len(pairs) / (time.perf_counter() - start)
    start = time.perf_counter()
    stats = curate(bare, cfg, work / "curated", progress=False)
    curation_fps = stats["performance"]["stereo_frames"] / (time.perf_counter() - start)
    return {"clips": n_clips, "quarantined": stats["n_quarantined"], "frames": len(pairs),
            "matcher_frames_per_s": round(matcher_fps, 1), "curation_frames_per_s": round(curation_fps, 1),
            "ratio": round(curation_fps / matcher_fps, 3), "goal_ratio": 0.4,
            "timing_s": stats["performance"]["timing_s"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--root", type=Path, default=SAMPLE)
    ap.add_argument("--clips", type=int, default=24, help="synthetic clips for the throughput measurement")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    params = load_params(args.params)
    result: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result["karlsruhe_ins_poses"] = end_to_end(args.root, params, work / "ins", poses=True)
        result["karlsruhe_no_poses"] = end_to_end(args.root, params, work / "vo", poses=False)
        result["trajectory"] = trajectory_figure(args.root, params, FIGURES / "karlsruhe_trajectory.png")
        soms = sorted((work / "ins" / "curated" / "som").glob("*.png"))
        for som in soms:
            shutil.copy(som, FIGURES / f"karlsruhe_som_{som.stem[-6:]}.png")
        result["throughput"] = throughput(params, args.clips, work / "synthetic")
        with stage_run("real_video", params.tracking, ROOT, params={"root": str(args.root)}) as run:
            run.log_artifact(FIGURES / "karlsruhe_trajectory.png", "real_video")
            for som in soms:
                run.log_artifact(som, "real_video/set_of_marks")
            run.log_metrics({"trajectory_end_point_error_pct": result["trajectory"]["end_point_error_pct"],
                             "throughput_ratio": result["throughput"]["ratio"]})
    write_json(OUT, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
