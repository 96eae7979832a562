"""Camera motion from stereo (``components.curation.odometry.estimate_poses``) against true and INS poses.

- **Synthetic** (``--scenes``, the project's rendered clips with true poses): per clip, the last frame's
  translation error per metre travelled (clips that travel >= 0.4 m), the heading (yaw) error at the last
  frame, per-frame relative pose errors, and static cameras' drift in metres. Goals: <= 1% of the distance
  and <= 0.5 deg per clip. Run twice: the odometry's own sparse stereo, and with ``disparities=`` from
  ``estimate_disparity`` (what curation passes, having computed them anyway).
- **Real** (``--karlsruhe``, 56 frames of a car in city traffic with GPS/INS): 16-frame windows (0-15,
  16-31, 32-47, and every 4 frames), each estimated on its own like a curated clip. The INS is not at the
  camera and its z is noisy, so the comparison is relative and on the ground plane: distance travelled,
  heading change over the window, and the end point after a 2D rigid (Umeyama) alignment of the whole
  window's path, per metre travelled. Goals: <= 3% and <= 1 deg.
- **Speed**: frames/s of ``estimate_poses`` (both ways) and of ``estimate_disparity`` on the same frames in
  the same run, one core (OpenCV and BLAS single-threaded), the best of ``--repeats`` passes.

Writes ``benchmarks/results/odometry.json`` (or ``--out``) and a short ``.md`` next to it.

    .venv/bin/python benchmarks/odometry.py [--clips 144] [--speed-clips 8]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported, or BLAS has already started its threads

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.config import OdometryConfig
from components.curation.odometry import OdometryError, estimate_poses
from components.curation.stereo import estimate_disparity
from components.sources.clip import frame_name, list_clips, read_meta, read_rgb

MOVING_M = 0.4  # a synthetic clip "travels" from this distance on (the curation's camera_move threshold)
SYNTH_MAX_DISPARITY = 64
KARLSRUHE_MAX_DISPARITY = 128  # 1344-wide frames: a car 3 m away is ~120 px


def yaw_deg(pose: np.ndarray) -> float:
    """Heading of a camera-to-world pose: the camera's forward axis about the world's vertical (y) axis."""
    return float(np.degrees(np.arctan2(pose[0, 2], pose[2, 2])))


def angle_diff(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


def rotation_deg(R: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(R) - 1) / 2, -1.0, 1.0))))


def relative_errors(est: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame pair t-1 -> t: translation (m) and rotation (deg) error of the relative motion."""
    trans, rot = [], []
    for t in range(1, len(est)):
        e = np.linalg.inv(np.linalg.inv(true[t - 1]) @ true[t]) @ (np.linalg.inv(est[t - 1]) @ est[t])
        trans.append(np.linalg.norm(e[:3, 3]))
        rot.append(rotation_deg(e[:3, :3]))
    return np.array(trans), np.array(rot)


def stats(values, goal: float | None = None) -> dict:
    v = np.asarray(values, np.float64)
    if not v.size:
        return {"n": 0}
    out = {"n": int(v.size), "median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
           "max": float(v.max()), "mean": float(v.mean())}
    if goal is not None:
        out["goal"] = goal
        out["fraction_meeting_goal"] = float((v <= goal).mean())
    return out


def rounded(obj, digits: int = 4):
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [rounded(v, digits) for v in obj]
    return obj


# --- synthetic ----------------------------------------------------------------------------------------------


def load_clip(clip: Path) -> tuple:
    meta = read_meta(clip)
    left = np.stack([read_rgb(clip, f"left/{frame_name(t)}") for t in range(meta.num_frames)])
    right = np.stack([read_rgb(clip, f"right/{frame_name(t)}") for t in range(meta.num_frames)])
    return meta, left, right


def score_clip(est: np.ndarray, true: np.ndarray) -> dict:
    true = np.linalg.inv(true[0]) @ true
    dist = float(np.linalg.norm(np.diff(true[:, :3, 3], axis=0), axis=1).sum())
    end_err = float(np.linalg.norm(est[-1, :3, 3] - true[-1, :3, 3]))
    rel_t, rel_r = relative_errors(est, true)
    out = {"distance_m": dist, "true_yaw_deg": yaw_deg(true[-1]), "end_error_m": end_err,
           "yaw_error_deg": angle_diff(yaw_deg(est[-1]), yaw_deg(true[-1])),
           "rel_trans_error_cm_mean": float(rel_t.mean() * 100), "rel_rot_error_deg_mean": float(rel_r.mean())}
    if dist >= MOVING_M:
        out["trans_error_pct"] = 100 * end_err / dist
    if np.allclose(true, np.eye(4)):
        out["static_drift_m"] = float(np.linalg.norm(est[:, :3, 3], axis=1).max())
    return out


def synthetic(clips: list[Path], cfg: OdometryConfig, log) -> dict:
    modes: dict[str, dict] = {"own_stereo": {}, "with_disparities": {}}
    for i, clip in enumerate(clips):
        meta, left, right = load_clip(clip)
        disp = np.stack([estimate_disparity(a, b, max_disparity=SYNTH_MAX_DISPARITY) for a, b in zip(left, right)])
        for mode, maps in (("own_stereo", None), ("with_disparities", disp)):
            try:
                est = estimate_poses(left, right, K=meta.K, baseline=meta.baseline_m, cfg=cfg, disparities=maps)
                modes[mode][meta.clip_id] = score_clip(est, meta.poses)
            except OdometryError as exc:
                modes[mode][meta.clip_id] = {"error": str(exc)}
        if (i + 1) % 20 == 0:
            log(f"  synthetic: {i + 1}/{len(clips)} clips")
    return {mode: summarize_synthetic(per_clip) for mode, per_clip in modes.items()}


def summarize_synthetic(per_clip: dict) -> dict:
    ok = {k: v for k, v in per_clip.items() if "error" not in v}
    rel_t = [v["rel_trans_error_cm_mean"] for v in ok.values()]
    rel_r = [v["rel_rot_error_deg_mean"] for v in ok.values()]
    turning = [v["yaw_error_deg"] for v in ok.values() if abs(v["true_yaw_deg"]) > 1.0]
    return {
        "clips": len(per_clip),
        "failed": {k: v["error"] for k, v in per_clip.items() if "error" in v},
        "translation_error_pct": stats([v["trans_error_pct"] for v in ok.values() if "trans_error_pct" in v], 1.0),
        "heading_error_deg": stats([v["yaw_error_deg"] for v in ok.values()], 0.5),
        "heading_error_deg_turning_clips": stats(turning, 0.5),
        "static_drift_m": stats([v["static_drift_m"] for v in ok.values() if "static_drift_m" in v]),
        "relative_per_frame": {"translation_cm": stats(rel_t), "rotation_deg": stats(rel_r)},
        "per_clip": per_clip,
    }


def speed(clips: list, cfg: OdometryConfig, repeats: int, max_disparity: int, loader=load_clip) -> dict:
    """Frames/s, the methods taking turns so that machine load hits them alike; the fastest pass counts."""
    data = [loader(c) for c in clips]
    maps = [np.stack([estimate_disparity(a, b, max_disparity=max_disparity) for a, b in zip(left, right)])
            for _, left, right in data]
    frames = sum(len(left) for _, left, _ in data)
    methods = {
        "estimate_disparity": lambda m, left, right, d: [estimate_disparity(a, b, max_disparity=max_disparity)
                                                         for a, b in zip(left, right)],
        "estimate_poses": lambda m, left, right, d: estimate_poses(left, right, K=m.K, baseline=m.baseline_m,
                                                                   cfg=cfg),
        "estimate_poses_with_disparities": lambda m, left, right, d: estimate_poses(
            left, right, K=m.K, baseline=m.baseline_m, cfg=cfg, disparities=d),
    }
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(repeats):
        for name, fn in methods.items():
            start = time.perf_counter()
            for (m, left, right), d in zip(data, maps):
                fn(m, left, right, d)
            best[name] = min(best[name], time.perf_counter() - start)
    fps = {name: frames / s for name, s in best.items()}
    return {"frames": frames, "fps": fps,
            "odometry_time_vs_stereo": {k: fps["estimate_disparity"] / fps[k] for k in methods if k != "estimate_disparity"}}


# --- Karlsruhe ----------------------------------------------------------------------------------------------


def plane_path(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, z) positions and yaw (deg, unwrapped) relative to the first pose, in its camera axes."""
    rel = np.linalg.inv(poses[0]) @ poses
    return rel[:, [0, 2], 3], np.degrees(np.unwrap(np.arctan2(rel[:, 0, 2], rel[:, 2, 2])))


def umeyama_2d(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``src`` (N x 2) rigidly (rotation + translation, no scale) aligned onto ``dst``."""
    ms, md = src.mean(0), dst.mean(0)
    U, _, Vt = np.linalg.svd((dst - md).T @ (src - ms))
    D = np.diag([1.0, np.sign(np.linalg.det(U @ Vt))])
    return (src - ms) @ (U @ D @ Vt).T + md


def karlsruhe(root: Path, cfg: OdometryConfig, window: int, stride: int, repeats: int, log) -> dict:
    from components.sources.karlsruhe import read

    seq = read(root)
    pairs = [seq.read_pair(i) for i in range(len(seq.frame_ids))]
    left, right = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    starts = sorted(set(range(0, len(left) - window + 1, stride)))
    windows = {}
    for s in starts:
        sl = slice(s, s + window)
        key = f"{s}-{s + window - 1}"
        try:
            est = estimate_poses(left[sl], right[sl], K=seq.K, baseline=seq.baseline_m, cfg=cfg)
        except OdometryError as exc:
            windows[key] = {"error": str(exc)}
            continue
        pe, ye = plane_path(est)
        pi, yi = plane_path(seq.poses[sl])
        # The estimate's distance in 3D (the camera is pitched down, so its x-z plane is not the road's);
        # the INS's on the ground (its z is noise).
        d_est = float(np.linalg.norm(np.diff(est[:, :3, 3], axis=0), axis=1).sum())
        d_ins = float(np.linalg.norm(np.diff(pi, axis=0), axis=1).sum())
        aligned = umeyama_2d(pe, pi)
        windows[key] = {
            "distance_est_m": d_est, "distance_ins_m": d_ins,
            "distance_error_pct": 100 * (d_est - d_ins) / d_ins,
            "heading_change_est_deg": float(ye[-1]), "heading_change_ins_deg": float(yi[-1]),
            "heading_error_deg": abs(float(ye[-1] - yi[-1])),
            "aligned_end_error_pct": 100 * float(np.linalg.norm(aligned[-1] - pi[-1])) / d_ins,
            "aligned_rms_error_pct": 100 * float(np.sqrt(((aligned - pi) ** 2).sum(1).mean())) / d_ins,
        }
        log(f"  karlsruhe {key}: distance {d_est:.2f} m vs INS {d_ins:.2f} m "
            f"({windows[key]['distance_error_pct']:+.2f}%), heading {ye[-1]:+.2f} vs {yi[-1]:+.2f} deg")
    ok = {k: v for k, v in windows.items() if "error" not in v}
    disjoint = [f"{s}-{s + window - 1}" for s in range(0, len(left) - window + 1, window)]
    summary = {
        "distance_error_pct_abs": stats([abs(v["distance_error_pct"]) for v in ok.values()], 3.0),
        "aligned_end_error_pct": stats([v["aligned_end_error_pct"] for v in ok.values()], 3.0),
        "heading_error_deg": stats([v["heading_error_deg"] for v in ok.values()], 1.0),
    }

    def loader(s: int):
        sl = slice(s, s + window)

        class _Meta:
            K, baseline_m = seq.K, seq.baseline_m

        return _Meta, left[sl], right[sl]

    speed_result = speed(list(range(0, len(left) - window + 1, window)), cfg, repeats, KARLSRUHE_MAX_DISPARITY,
                         loader=loader)
    return {"frames": len(left), "resolution": [left.shape[2], left.shape[1]], "window": window,
            "stride": stride, "disjoint_windows": {k: windows.get(k) for k in disjoint},
            "all_windows": windows, "summary": summary, "speed": speed_result}


# --- report -------------------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    lines = ["# Stereo odometry (`benchmarks/odometry.py`)", "",
             f"Command: `{report['command']}`", ""]
    for mode, s in report["synthetic"].items():
        t, h, d = s["translation_error_pct"], s["heading_error_deg"], s["static_drift_m"]
        lines += [f"## Synthetic, {mode.replace('_', ' ')} ({s['clips']} clips, {len(s['failed'])} refused)", "",
                  "| metric | median | p90 | max | meets goal |", "|---|---|---|---|---|",
                  (f"| translation error, % of distance ({t['n']} moving clips; goal <= 1%) | {t['median']:.2f} | "
                  f"{t['p90']:.2f} | {t['max']:.2f} | {100 * t['fraction_meeting_goal']:.0f}% |"),
                  (f"| heading error at the last frame, deg (goal <= 0.5) | {h['median']:.3f} | {h['p90']:.3f} | "
                  f"{h['max']:.3f} | {100 * h['fraction_meeting_goal']:.0f}% |"),
                  (f"| static camera drift, m ({d['n']} clips) | {d['median']:.4f} | {d['p90']:.4f} | "
                  f"{d['max']:.4f} | |"), ""]
    for name in ("karlsruhe", "karlsruhe_1000_corners"):
        k = report.get(name)
        if not k:
            continue
        corners = k.get("odometry_config", report["odometry_config"])["max_features"]
        lines += [(f"## Karlsruhe 2010_03_09_drive_0023 ({k['frames']} frames, {k['window']}-frame windows, "
                  f"max_features={corners})"), "",
                  ("| window | distance est / INS (m) | distance error | heading change est / INS (deg) | "
                  "aligned end error |"), "|---|---|---|---|---|"]
        for key, v in k["all_windows"].items():
            if "error" in v:
                lines.append(f"| {key} | refused: {v['error']} | | | |")
                continue
            lines.append(f"| {key} | {v['distance_est_m']:.2f} / {v['distance_ins_m']:.2f} | "
                         f"{v['distance_error_pct']:+.2f}% | {v['heading_change_est_deg']:+.2f} / "
                         f"{v['heading_change_ins_deg']:+.2f} | {v['aligned_end_error_pct']:.2f}% |")
        s = k["summary"]
        lines += ["", (f"Windows meeting the goals: distance {100 * s['distance_error_pct_abs']['fraction_meeting_goal']:.0f}%, "
                  f"aligned end point {100 * s['aligned_end_error_pct']['fraction_meeting_goal']:.0f}%, "
                  f"heading {100 * s['heading_error_deg']['fraction_meeting_goal']:.0f}%."), ""]
    lines += ["## Speed (frames/s, one core)", "", ("| frames | estimate_disparity | estimate_poses | "
              "estimate_poses(disparities=) |"), "|---|---|---|---|"]
    for name, sp in (("synthetic 160x120", report["speed_synthetic"]),
                     ("Karlsruhe 1344x372", (report.get("karlsruhe") or {}).get("speed"))):
        if sp:
            f = sp["fps"]
            lines.append(f"| {name} | {f['estimate_disparity']:.1f} | {f['estimate_poses']:.1f} | "
                         f"{f['estimate_poses_with_disparities']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=Path, default=ROOT / "data" / "scenes")
    parser.add_argument("--clips", type=int, default=0, help="first N clips (0: all)")
    parser.add_argument("--karlsruhe", type=Path, default=Path("/work/shared/real/karlsruhe_2010_03_09_drive_0023"))
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--speed-clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timing passes; the fastest counts")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "odometry.json")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    cfg = OdometryConfig()
    clips = list_clips(args.scenes)
    clips = clips[: args.clips] if args.clips else clips
    start = time.perf_counter()
    report: dict = {"command": " ".join([".venv/bin/python", "benchmarks/odometry.py", *sys.argv[1:]]),
                    "odometry_config": asdict(cfg)}
    report["synthetic"] = synthetic(clips, cfg, print)
    report["speed_synthetic"] = speed(clips[: args.speed_clips], cfg, args.repeats, SYNTH_MAX_DISPARITY)
    has_k = (args.karlsruhe / "images").is_dir()
    report["karlsruhe"] = karlsruhe(args.karlsruhe, cfg, args.window, args.stride, args.repeats, print) if has_k else None
    # The defaults are sized for the curation's 160x120 clips; 1344x372 frames hold room for more corners.
    big = OdometryConfig(max_features=1000, feature_spacing_px=10)
    report["karlsruhe_1000_corners"] = (karlsruhe(args.karlsruhe, big, args.window, args.stride, args.repeats, print)
                                        | {"odometry_config": asdict(big)}) if has_k else None
    report.update({"seconds": time.perf_counter() - start, "load_average_1min": os.getloadavg()[0],
                   "opencv": cv2.__version__, "machine": platform.processor() or platform.machine()})
    report = rounded(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, args.out)  # atomic: a reader never sees half a result
    args.out.with_suffix(".md").write_text(markdown(report))
    s = report["synthetic"]["own_stereo"]
    print(f"synthetic: translation {s['translation_error_pct']['median']}% median, heading "
          f"{s['heading_error_deg']['median']} deg median -> {args.out}")


if __name__ == "__main__":
    main()
