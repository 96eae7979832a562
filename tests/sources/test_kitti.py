"""The KITTI raw reader on tiny files in the published layout, with the 2011_09_26 calibration values."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from components.sources import kitti
from components.sources.sequence import SourceError
from tests.sources.helpers import frame

CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
S_00: 1.392000e+03 5.120000e+02
K_00: 9.842439e+02 0.000000e+00 6.900000e+02 0.000000e+00 9.808141e+02 2.331966e+02 0.000000e+00 0.000000e+00 1.000000e+00
D_00: -3.728755e-01 2.037299e-01 2.219027e-03 1.383707e-03 -7.233722e-02
R_00: 1.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00
T_00: 2.573699e-16 -1.059758e-16 1.614870e-16
S_rect_00: 1.242000e+03 3.750000e+02
R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
P_rect_00: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
S_rect_02: 1.242000e+03 3.750000e+02
R_rect_02: 9.998817e-01 1.511453e-02 -2.841595e-03 -1.511724e-02 9.998853e-01 -9.338510e-04 2.827154e-03 9.766976e-04 9.999955e-01
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
S_rect_03: 1.242000e+03 3.750000e+02
R_rect_03: 9.998321e-01 -7.193136e-03 1.685599e-02 7.232804e-03 9.999712e-01 -2.293585e-03 -1.683901e-02 2.415116e-03 9.998553e-01
P_rect_03: 7.215377e+02 0.000000e+00 6.095593e+02 -3.395242e+02 0.000000e+00 7.215377e+02 1.728540e+02 2.199936e+00 0.000000e+00 0.000000e+00 1.000000e+00 2.729905e-03
"""
IMU_TO_VELO = """calib_time: 25-May-2012 16:47:16
R: 9.999976e-01 7.553071e-04 -2.035826e-03 -7.854027e-04 9.998898e-01 -1.482298e-02 2.024406e-03 1.482454e-02 9.998881e-01
T: -8.086759e-01 3.195559e-01 -7.997231e-01
"""
VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 9.998621e-01 7.523790e-03 1.480755e-02
T: -4.069766e-03 -7.631618e-02 -2.717806e-01
delta_f: 0.000000e+00 0.000000e+00
delta_c: 0.000000e+00 0.000000e+00
"""
LAT, LON = 49.011212804408, 8.4228850417969


def _oxts(lat: float, lon: float, yaw: float) -> str:
    packet = [lat, lon, 112.99, 0.0, 0.0, yaw] + [0.1] * 19 + [4, 10, 4, 4, 0]
    return " ".join(str(v) for v in packet)


def _write(base: Path, n: int = 4, yaw: list[float] | None = None, dlon: float = 1e-5, oxts: bool = True) -> Path:
    date = base / "2011_09_26"
    drive = date / "2011_09_26_drive_0001_sync"
    for name, text in (("calib_cam_to_cam.txt", CAM_TO_CAM), ("calib_imu_to_velo.txt", IMU_TO_VELO),
                       ("calib_velo_to_cam.txt", VELO_TO_CAM)):
        date.mkdir(parents=True, exist_ok=True)
        (date / name).write_text(text)
    for cam, shift in (("image_02", 4), ("image_03", 0)):
        (drive / cam / "data").mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(drive / cam / "data" / f"{i:010d}.png"), frame(i, shift=shift))
        stamps = [f"2011-09-26 13:02:{25 + i // 10:02d}.{(i % 10) * 103_000_000 + 964389445 % 1000:09d}"
                  for i in range(n)]
        (drive / cam / "timestamps.txt").write_text("\n".join(stamps) + "\n")
    if oxts:
        (drive / "oxts" / "data").mkdir(parents=True)
        yaw = yaw or [0.0] * n
        for i in range(n):
            (drive / "oxts" / "data" / f"{i:010d}.txt").write_text(_oxts(LAT, LON + i * dlon, yaw[i]) + "\n")
    return drive


def test_reads_the_published_layout(tmp_path):
    seq = kitti.read(_write(tmp_path))
    assert seq.name == "2011_09_26_drive_0001_sync" and seq.frame_ids == [0, 1, 2, 3]
    assert seq.K[0, 0] == pytest.approx(721.5377) and seq.K[1, 2] == pytest.approx(172.854)
    assert seq.baseline_m == pytest.approx(0.5327, abs=2e-3)
    assert seq.fps == pytest.approx(1 / 0.103, rel=1e-3) and seq.timestamps[1] == pytest.approx(0.103)
    left, right = seq.read_pair(1)
    assert left.shape == right.shape == (40, 80, 3)
    assert seq.source["pose_source"] == "oxts"


def test_driving_east_with_yaw_zero_moves_the_camera_forward(tmp_path):
    poses = kitti.read(_write(tmp_path, dlon=1e-5)).poses
    assert np.allclose(poses[0], np.eye(4))  # relative to the first frame
    step = poses[1, :3, 3]
    expected = np.cos(np.radians(LAT)) * 1e-5 * np.pi / 180 * kitti.EARTH_RADIUS_M  # Mercator, ~0.73 m
    assert np.linalg.norm(step) == pytest.approx(expected, rel=1e-3)
    assert step[2] / np.linalg.norm(step) > 0.999  # along the camera's +z (forward)


def test_a_left_turn_turns_the_camera_left(tmp_path):
    poses = kitti.read(_write(tmp_path, yaw=[0.0, 0.2, 0.4, 0.6])).poses  # yaw rising: counter-clockwise
    z1_in_cam0 = poses[1, :3, 2]
    assert z1_in_cam0[0] < -0.15  # forward now leans towards the first camera's -x (left)
    assert np.degrees(np.arccos(np.clip(z1_in_cam0[2], -1, 1))) == pytest.approx(np.degrees(0.2), abs=1.0)


def test_no_oxts_no_poses(tmp_path):
    seq = kitti.read(_write(tmp_path, oxts=False))
    assert seq.poses is None and seq.source["pose_source"] is None


def test_errors_name_the_file(tmp_path):
    drive = _write(tmp_path / "a")
    (drive / "oxts" / "data" / "0000000002.txt").write_text("1 2 3\n")
    with pytest.raises(SourceError, match="0000000002.txt: 3 numbers, expected 30"):
        kitti.read(drive)
    drive = _write(tmp_path / "b")
    cam = drive.parent / "calib_cam_to_cam.txt"
    cam.write_text(CAM_TO_CAM.replace("P_rect_03", "P_rect_3x"))
    with pytest.raises(SourceError, match="calib_cam_to_cam.txt: P_rect_03: missing field"):
        kitti.read(drive)
    cam.write_text(CAM_TO_CAM.replace("-3.395242e+02 0.000000e+00 7.215377e+02", "-3.395242e+02 0.000000e+00 7.3e+02"))
    with pytest.raises(SourceError, match="not rectified"):
        kitti.read(drive)
    drive = _write(tmp_path / "c")
    (drive / "image_03" / "data" / "0000000003.png").unlink()
    with pytest.raises(SourceError, match="image_03/data/0000000003.png: missing"):
        kitti.read(drive)
    drive = _write(tmp_path / "d")
    (drive / "image_02" / "timestamps.txt").write_text("yesterday\n" * 4)
    with pytest.raises(SourceError, match="timestamps.txt:1: timestamps"):
        kitti.read(drive)
