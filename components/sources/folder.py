"""A plain folder of rectified stereo frames: the simplest way to bring one's own recording.

    <root>/left/<frame>.png|jpg     left frames (the reference view), rectified
    <root>/right/<frame>.png|jpg    right frames, the same file names as left/
    <root>/calib.json | calib.yaml  fx, fy, cx, cy (pixels, the rectified left camera), baseline_m (metres), fps
    <root>/poses.txt                optional: one row per frame (sorted by name), 12 numbers (a 3x4 [R | t],
                                    row-major, as KITTI odometry) or 16 (a 4x4), camera-to-world of the
                                    LEFT camera in OpenCV axes (x right, y down, z forward)

Frame numbers are the file stems when all are integers (``000120.png`` is frame 120, so clip names keep the
recording's numbering), otherwise the position in name order. Grey frames become RGB. Nothing is
assumed about the images beyond "rectified": the reader cannot check that from a K alone, so a wrong
calib.json yields wrong depths, not an error. There are no timestamps; poses, when given, are used as is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from components.sources.sequence import (
    SourceError,
    StereoSequence,
    check_poses,
    plain_name,
    read_image,
    read_number_rows,
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
CALIB_FIELDS = ("fx", "fy", "cx", "cy", "baseline_m", "fps")


def read(root: str | Path) -> StereoSequence:
    root = Path(root)
    if not root.is_dir():
        raise SourceError(root, "not a folder")
    names = _frame_names(root)
    calib = _read_calib(root)
    K = np.array([[calib["fx"], 0, calib["cx"]], [0, calib["fy"], calib["cy"]], [0, 0, 1]], dtype=np.float64)
    poses = _read_poses(root / "poses.txt", len(names)) if (root / "poses.txt").exists() else None
    stems = [Path(n).stem for n in names]
    frame_ids = [int(s) for s in stems] if all(s.isdigit() for s in stems) else list(range(len(names)))

    def pair(i: int) -> tuple[np.ndarray, np.ndarray]:
        return read_image(root / "left" / names[i]), read_image(root / "right" / names[i])

    return StereoSequence(
        name=plain_name(root.resolve().name), frame_ids=frame_ids, K=K, baseline_m=calib["baseline_m"],
        fps=calib["fps"], timestamps=None, poses=poses,
        source={"format": "folder", "root": str(root), "pose_source": "poses.txt" if poses is not None else None,
                "notes": "plain folder; poses used as given (camera-to-world, OpenCV axes)"},
        pair_reader=pair)


def _frame_names(root: Path) -> list[str]:
    left = root / "left"
    if not left.is_dir():
        raise SourceError(left, "missing (expected left/*.png|jpg)")
    names = [p.name for p in left.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if not names:
        raise SourceError(left, "no .png or .jpg frames")
    numeric = all(Path(n).stem.isdigit() for n in names)
    names.sort(key=lambda n: (int(Path(n).stem), n) if numeric else (0, n))
    missing = [n for n in names if not (root / "right" / n).is_file()]
    if missing:
        raise SourceError(root / "right" / missing[0], f"missing: {len(missing)} left frames have no right frame")
    return names


def _read_calib(root: Path) -> dict[str, float]:
    path = next((root / n for n in ("calib.json", "calib.yaml", "calib.yml") if (root / n).is_file()), None)
    if path is None:
        raise SourceError(root / "calib.json", "missing (calib.json or calib.yaml with " + ", ".join(CALIB_FIELDS)
                          + ")")
    try:
        raw = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SourceError(path, f"not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(raw, dict):
        raise SourceError(path, f"must be a mapping of {', '.join(CALIB_FIELDS)}")
    out = {}
    for key in CALIB_FIELDS:
        if key not in raw:
            raise SourceError(path, "missing field", key)
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
            raise SourceError(path, f"must be a finite number > 0, got {value!r}", key)
        out[key] = float(value)
    return out


def _read_poses(path: Path, n: int) -> np.ndarray:
    rows = []
    for lineno, values in read_number_rows(path, field="poses"):
        if len(values) not in (12, 16):
            raise SourceError(f"{path}:{lineno}", f"{len(values)} numbers; expected 12 (3x4) or 16 (4x4)", "poses")
        pose = np.eye(4)
        pose[: len(values) // 4] = np.reshape(values, (-1, 4))
        rows.append(pose)
    if len(rows) != n:
        raise SourceError(path, f"{len(rows)} poses for {n} frames", "poses")
    return check_poses(np.stack(rows), file=path)
