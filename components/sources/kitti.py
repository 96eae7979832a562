"""KITTI raw (Geiger et al., IJRR 2013), synced and rectified drives: the colour pair, OXTS poses.

    <date>/calib_cam_to_cam.txt          "key: numbers"; P_rect_02 / P_rect_03 (3x4) are the rectified colour
                                         cameras' projections, R_rect_00 (3x3) rectifies camera 0
    <date>/calib_imu_to_velo.txt         R (9), T (3): IMU -> Velodyne
    <date>/calib_velo_to_cam.txt         R (9), T (3): Velodyne -> (unrectified) camera 0
    <date>/<date>_drive_NNNN_sync/image_02/data/NNNNNNNNNN.png   left colour, rectified
    .../image_03/data/NNNNNNNNNN.png     right colour, same numbers
    .../image_02/timestamps.txt          one "YYYY-MM-DD HH:MM:SS.fffffffff" per frame
    .../oxts/data/NNNNNNNNNN.txt         one OXTS packet: 30 numbers, lat lon alt roll pitch yaw vn ve vf ...
                                         (the last five are integers)

The reader's root is the drive folder (``..._sync``); the calibration files sit one level up (or in the
drive folder itself). Formats as published in the raw devkit's ``readme.txt`` / ``dataformat.txt`` and as
parsed by pykitti (``pykitti/raw.py``: ``_load_calib_cam_to_cam``, ``_load_calib``; ``pykitti/utils.py``:
``read_calib_file``, ``pose_from_oxts_packet``, ``load_oxts_packets_and_poses``).

Poses, as the devkit's ``convertOxtsToPose.m`` and pykitti: a Mercator projection scaled by cos(first
latitude) gives t = (scale * lon * pi * r / 180, scale * r * ln(tan((90 + lat) * pi / 360)), alt) with
r = 6378137 m; R = Rz(yaw) Ry(pitch) Rx(roll); T_w_imu = [R | t] (IMU axes x forward, y left, z up; world
east-north-up). The IMU -> camera 2 transform is pykitti's T_cam2_imu = T2 . R_rect_00 . T_velo_to_cam .
T_imu_to_velo with T2 a pure x shift of P_rect_02[0,3] / P_rect_02[0,0]. The left camera's pose is
T_w_cam2 = T_w_imu . inv(T_cam2_imu), re-expressed relative to the first frame (frame 0's camera is the
identity; world = camera 0 frame in OpenCV axes). Not verified here on a real drive (no KITTI data is
bundled): the tests check the published file formats and the geometry (driving along the IMU's x moves
the camera along its +z; a left turn turns it left) on hand-written files with KITTI's 2011_09_26
calibration values. K and the baseline come from P_rect_02 / P_rect_03 (baseline about 0.53 m), checked
rectified.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from components.sources.karlsruhe import read_calib
from components.sources.sequence import (
    SourceError,
    StereoSequence,
    check_poses,
    median_fps,
    plain_name,
    read_image,
    rectified_stereo,
)

log = logging.getLogger(__name__)
EARTH_RADIUS_M = 6378137.0
OXTS_FIELDS = 30


def read(root: str | Path) -> StereoSequence:
    root = Path(root)
    left_dir, right_dir = root / "image_02" / "data", root / "image_03" / "data"
    if not left_dir.is_dir():
        raise SourceError(left_dir, "missing (the reader's root is a ..._sync drive folder)")
    names = sorted(p.name for p in left_dir.iterdir() if p.suffix == ".png" and p.stem.isdigit())
    if not names:
        raise SourceError(left_dir, "no frames NNNNNNNNNN.png")
    missing = [n for n in names if not (right_dir / n).is_file()]
    if missing:
        raise SourceError(right_dir / missing[0], f"missing ({len(missing)} right frames missing)")
    frame_ids = [int(Path(n).stem) for n in names]

    calib_dir = root.parent if (root.parent / "calib_cam_to_cam.txt").is_file() else root
    cam = read_calib(calib_dir / "calib_cam_to_cam.txt")
    P2, P3 = (_matrix(cam, key, (3, 4), calib_dir / "calib_cam_to_cam.txt") for key in ("P_rect_02", "P_rect_03"))
    K, baseline = rectified_stereo(P2, P3, file=calib_dir / "calib_cam_to_cam.txt")

    timestamps = read_timestamps(root / "image_02" / "timestamps.txt", frame_ids)
    fps = median_fps(timestamps, file=root / "image_02" / "timestamps.txt")

    oxts_dir = root / "oxts" / "data"
    poses = None
    if oxts_dir.is_dir():
        oxts = np.stack([read_oxts(oxts_dir / f"{Path(n).stem}.txt") for n in names])
        T_w_imu = oxts_poses(oxts)
        T_cam2_imu = cam2_from_imu(calib_dir, cam)
        T_w_cam2 = T_w_imu @ np.linalg.inv(T_cam2_imu)
        poses = check_poses(np.linalg.inv(T_w_cam2[0]) @ T_w_cam2, file=oxts_dir)
    else:
        log.warning("%s: no oxts/data, the clips get no poses", root)

    def pair(i: int) -> tuple[np.ndarray, np.ndarray]:
        return read_image(left_dir / names[i]), read_image(right_dir / names[i])

    return StereoSequence(
        name=plain_name(root.resolve().name), frame_ids=frame_ids, K=K, baseline_m=baseline, fps=fps,
        timestamps=timestamps, poses=poses,
        source={"format": "kitti", "root": str(root), "pose_source": "oxts" if poses is not None else None,
                "notes": "camera 2 (left colour) / 3; poses: OXTS -> IMU -> cam2 as pykitti, relative to the "
                         "first frame; timestamps: seconds since the first frame (image_02/timestamps.txt)"},
        pair_reader=pair)


def _matrix(calib: dict[str, np.ndarray], key: str, shape: tuple[int, ...], file: Path) -> np.ndarray:
    if key not in calib:
        raise SourceError(file, "missing field", key)
    if calib[key].size != int(np.prod(shape)):
        raise SourceError(file, f"{calib[key].size} numbers, expected {int(np.prod(shape))}", key)
    return calib[key].reshape(shape)


def _rigid(file: Path) -> np.ndarray:
    """A calib_*_to_*.txt rigid transform (R: 9 numbers row-major, T: 3) as a 4x4 matrix."""
    data = read_calib(file)
    T = np.eye(4)
    T[:3, :3] = _matrix(data, "R", (3, 3), file)
    T[:3, 3] = _matrix(data, "T", (3,), file)
    return T


def cam2_from_imu(calib_dir: Path, cam: dict[str, np.ndarray]) -> np.ndarray:
    """T_cam2_imu: IMU point -> rectified camera 2 point (pykitti ``raw._load_calib``)."""
    file = calib_dir / "calib_cam_to_cam.txt"
    R_rect = np.eye(4)
    R_rect[:3, :3] = _matrix(cam, "R_rect_00", (3, 3), file)
    P2 = _matrix(cam, "P_rect_02", (3, 4), file)
    T2 = np.eye(4)
    T2[0, 3] = P2[0, 3] / P2[0, 0]
    return T2 @ R_rect @ _rigid(calib_dir / "calib_velo_to_cam.txt") @ _rigid(calib_dir / "calib_imu_to_velo.txt")


def read_oxts(path: Path) -> np.ndarray:
    """One OXTS packet (30 numbers); missing or malformed: SourceError naming the file."""
    if not path.is_file():
        raise SourceError(path, "missing (every image needs its OXTS packet)")
    try:
        values = np.array([float(v) for v in path.read_text().split()], dtype=np.float64)
    except ValueError:
        raise SourceError(path, "not a row of numbers") from None
    if values.size != OXTS_FIELDS or not np.isfinite(values).all():
        raise SourceError(path, f"{values.size} numbers, expected {OXTS_FIELDS} finite (dataformat.txt)")
    return values


def oxts_poses(oxts: np.ndarray) -> np.ndarray:
    """T_w_imu per packet (N x 30): Mercator position scaled by cos(first latitude); R = Rz(yaw) Ry(pitch) Rx(roll)
    (pykitti ``pose_from_oxts_packet``)."""
    lat, lon, alt, roll, pitch, yaw = (oxts[:, k] for k in range(6))
    scale = np.cos(np.radians(lat[0]))
    t = np.stack([scale * lon * np.pi * EARTH_RADIUS_M / 180.0,
                  scale * EARTH_RADIUS_M * np.log(np.tan((90.0 + lat) * np.pi / 360.0)), alt], axis=-1)
    poses = np.tile(np.eye(4), (len(oxts), 1, 1))
    poses[:, :3, :3] = _rot("z", yaw) @ _rot("y", pitch) @ _rot("x", roll)
    poses[:, :3, 3] = t - t[0]  # pykitti's origin: the first position (kept small for float precision)
    return poses


def _rot(axis: str, angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    one, zero = np.ones_like(c), np.zeros_like(c)
    rows = {"x": [[one, zero, zero], [zero, c, -s], [zero, s, c]],
            "y": [[c, zero, s], [zero, one, zero], [-s, zero, c]],
            "z": [[c, -s, zero], [s, c, zero], [zero, zero, one]]}[axis]
    return np.moveaxis(np.array(rows), -1, 0)


def read_timestamps(path: Path, frame_ids: list[int]) -> np.ndarray:
    """Seconds since the first listed frame; line k of timestamps.txt is frame k (nanosecond digits kept)."""
    if not path.is_file():
        raise SourceError(path, "missing")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if frame_ids[-1] >= len(lines):
        raise SourceError(path, f"{len(lines)} timestamps, but frames go up to {frame_ids[-1]}")
    seconds = []
    for f in frame_ids:
        stamp, _, frac = lines[f].partition(".")
        try:
            whole = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
            seconds.append(whole + (float(f"0.{frac}") if frac else 0.0))
        except ValueError:
            raise SourceError(f"{path}:{f + 1}", f"not a 'YYYY-MM-DD HH:MM:SS.fffffffff' timestamp: {lines[f]!r}",
                              "timestamps") from None
    seconds_arr = np.array(seconds)
    return seconds_arr - seconds_arr[0]
