"""Tiny recordings written in each source's published layout (80 x 40 frames), for the reader tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

W, H = 80, 40


def frame(i: int, *, grey: bool = False, shift: int = 0) -> np.ndarray:
    """A textured frame that differs per index: grey (H x W) or BGR (H x W x 3) uint8."""
    rng = np.random.default_rng(i)
    base = rng.integers(0, 255, (H, W + 8), dtype=np.uint8)[:, shift:shift + W]
    return base.copy() if grey else np.dstack([base, np.roll(base, 1, 1), 255 - base])


def write_folder(root: Path, n: int = 5, *, poses: bool = False, first: int = 0, grey: bool = False,
                 calib: dict | None = None) -> Path:
    for side, shift in (("left", 4), ("right", 0)):
        (root / side).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / side / f"{first + i:06d}.png"), frame(i, grey=grey, shift=shift))
    calib = calib if calib is not None else {"fx": 50.0, "fy": 50.0, "cx": 39.5, "cy": 19.5, "baseline_m": 0.12,
                                             "fps": 10.0}
    (root / "calib.json").write_text(json.dumps(calib))
    if poses:
        rows = []
        for i in range(n):
            pose = np.eye(4)[:3]
            pose[2, 3] = 0.5 * i  # driving forward along z
            rows.append(" ".join(f"{v:.6f}" for v in pose.ravel()))
        (root / "poses.txt").write_text("\n".join(rows) + "\n")
    return root
