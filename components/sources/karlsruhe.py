"""The Karlsruhe sequences (Geiger et al., 2010-2011): rectified grey stereo from a car, with GPS/INS.

    <root>/images/I1_NNNNNN.png   left, rectified and cropped, 8-bit grey (1344x372), about 10 frames/s
    <root>/images/I2_NNNNNN.png   right, same numbers
    <root>/calib.txt              "key: numbers" lines; P1_roi / P2_roi are the 3x4 projections of the
                                  cropped rectified pair (fx = P1_roi[0,0], baseline = -P2_roi[0,3] / fx)
    <root>/insdata.txt            one row per frame (row k = frame k): timestamp (ns), latitude, longitude,
                                  altitude, x, y, z (metres, a local metric frame), then three angles (rad)

Poses. The INS frame is east-north-up: x grows with longitude, y with latitude, z is the altitude. The
last angle is the heading, measured counter-clockwise from +x (atan2 convention). Checked on
2010_03_09_drive_0023 against the travelled path: atan2(dy, dx) of the frame-to-frame displacement is
-0.085 rad while the heading reads -0.072; over the gentle left-then-right bend both rise to about -0.05 /
-0.034 and fall back together. The camera z built below agrees with the direction of travel (central
differences) to 0.9 degrees on average, 1.5 at most (``tests/sources/test_karlsruhe.py``); a heading
measured clockwise from north, or the opposite sign, would be 90 or ~10 degrees off.
The left camera is built from that heading alone: z (forward) = (cos h, sin h, 0), y (down) = -up,
x (right) = y cross z = (sin h, -cos h, 0); so a right turn (heading falling, clockwise seen from above)
turns the camera's z towards its +x. Roll and pitch (the first two angles) are ignored: the second is
~2.08 rad with dropouts to 0 in the sample, whatever its convention is it is not usable as is.

Assumed, not known: the camera sits at the INS position (x, y, z) and points along the heading. The
lever arm and mounting rotation between INS and camera are not published with the data, so positions
are off by a fixed offset (about a metre) and orientations by a small fixed rotation; camera motion is
right up to that rigid transform. fps comes from the timestamps (median interval); timestamps are seconds
since the first frame of the folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from components.sources.sequence import (
    SourceError,
    StereoSequence,
    median_fps,
    plain_name,
    read_image,
    read_number_rows,
    rectified_stereo,
)

_LEFT = re.compile(r"I1_(\d+)\.png")


def read(root: str | Path) -> StereoSequence:
    root = Path(root)
    images = root / "images"
    if not images.is_dir():
        raise SourceError(images, "missing (expected images/I1_NNNNNN.png and I2_NNNNNN.png)")
    frame_ids = sorted(int(m.group(1)) for p in images.iterdir() if (m := _LEFT.fullmatch(p.name)))
    if not frame_ids:
        raise SourceError(images, "no left frames I1_NNNNNN.png")
    missing = [f for f in frame_ids if not (images / f"I2_{f:06d}.png").is_file()]
    if missing:
        raise SourceError(images / f"I2_{missing[0]:06d}.png", f"missing ({len(missing)} right frames missing)")

    calib = read_calib(root / "calib.txt")
    P = {}
    for key in ("P1_roi", "P2_roi"):
        if key not in calib:
            raise SourceError(root / "calib.txt", "missing field", key)
        if calib[key].size != 12:
            raise SourceError(root / "calib.txt", f"{calib[key].size} numbers, expected 12 (3x4)", key)
        P[key] = calib[key].reshape(3, 4)
    K, baseline = rectified_stereo(P["P1_roi"], P["P2_roi"], file=root / "calib.txt")

    ins = read_ins(root / "insdata.txt")
    if frame_ids[-1] >= len(ins):
        raise SourceError(root / "insdata.txt", f"{len(ins)} rows, but frames go up to {frame_ids[-1]}")
    rows = ins[frame_ids]
    timestamps = (rows[:, 0] - rows[0, 0]) * 1e-9
    fps = median_fps(timestamps, file=root / "insdata.txt")

    def pair(i: int) -> tuple[np.ndarray, np.ndarray]:
        f = frame_ids[i]
        return read_image(images / f"I1_{f:06d}.png"), read_image(images / f"I2_{f:06d}.png")

    return StereoSequence(
        name=plain_name(root.resolve().name), frame_ids=frame_ids, K=K, baseline_m=baseline, fps=fps,
        timestamps=timestamps, poses=ins_poses(rows[:, 4:7], rows[:, 9]),
        source={"format": "karlsruhe", "root": str(root), "pose_source": "ins",
                "notes": "INS position and heading as the left camera (lever arm and mounting unknown; roll "
                         f"and pitch ignored); first timestamp {int(rows[0, 0])} ns"},
        pair_reader=pair)


def read_calib(path: Path) -> dict[str, np.ndarray]:
    """``key: numbers`` lines as arrays; lines whose values are not numbers (calib_time) are skipped."""
    if not path.is_file():
        raise SourceError(path, "missing")
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            out[key.strip()] = np.array([float(v) for v in value.split()], dtype=np.float64)
        except ValueError:
            continue
    return out


def read_ins(path: Path) -> np.ndarray:
    """insdata.txt as an N x 10 array (timestamp ns, lat, lon, alt, x, y, z, three angles)."""
    if not path.is_file():
        raise SourceError(path, "missing")
    rows = []
    for lineno, values in read_number_rows(path):
        if len(values) < 10:
            raise SourceError(f"{path}:{lineno}", f"{len(values)} numbers, expected 10 (timestamp, lat, lon, "
                              "alt, x, y, z, three angles)")
        rows.append(values[:10])
    if not rows:
        raise SourceError(path, "empty")
    ins = np.array(rows, dtype=np.float64)
    if not np.isfinite(ins).all():
        raise SourceError(path, "NaN or infinite values")
    return ins


def ins_poses(xyz: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Left-camera-to-world (OpenCV axes) from INS positions (east, north, up) and heading (rad, CCW from east)."""
    c, s = np.cos(heading), np.sin(heading)
    zeros = np.zeros_like(c)
    x_axis = np.stack([s, -c, zeros], axis=-1)             # right of the heading, on the ground
    y_axis = np.broadcast_to([0.0, 0.0, -1.0], x_axis.shape)  # down = -up
    z_axis = np.stack([c, s, zeros], axis=-1)              # forward, along the heading
    poses = np.tile(np.eye(4), (len(heading), 1, 1))
    poses[:, :3, :3] = np.stack([x_axis, y_axis, z_axis], axis=-1)  # columns: camera axes in the world
    poses[:, :3, 3] = xyz
    return poses
