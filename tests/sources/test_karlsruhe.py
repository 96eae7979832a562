"""The Karlsruhe reader: on the real sample (shared/real), and on tiny files in its layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from components.sources import karlsruhe
from components.sources.clip import read_meta
from components.sources.ingest import ingest
from components.sources.sequence import SourceError
from tests.sources.helpers import frame

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "real" / "karlsruhe_2010_03_09_drive_0023"
needs_sample = pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"the real sample is not at {SAMPLE}")

CALIB = """calib_time: 09-Mar-2010 16:52:08
corner_dist: 1.000000e-01
P1_roi: 5.0e+01 0 3.95e+01 0 0 5.0e+01 1.95e+01 0 0 0 1 0
P2_roi: 5.0e+01 0 3.95e+01 -2.5e+01 0 5.0e+01 1.95e+01 0 0 0 1 0
"""


def _write(root: Path, n: int = 4, calib: str = CALIB, heading: np.ndarray | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(root / "images" / f"I1_{i:06d}.png"), frame(i, grey=True, shift=4))
        cv2.imwrite(str(root / "images" / f"I2_{i:06d}.png"), frame(i, grey=True))
    (root / "calib.txt").write_text(calib)
    heading = np.zeros(n) if heading is None else heading
    rows = [f"{1268139860554795776 + i * 100_000_000} 49.0 8.36 115.0 {i * 1.0} 0.0 115.0 0.0 2.07 {heading[i]}"
            for i in range(n)]
    (root / "insdata.txt").write_text("\n".join(rows) + "\n")
    return root


@needs_sample
def test_real_sample_calibration_and_timing():
    seq = karlsruhe.read(SAMPLE)
    assert len(seq) == 56 and seq.frame_ids[0] == 0
    assert seq.K[0, 0] == pytest.approx(645.2401) and seq.K[0, 2] == pytest.approx(635.9587)
    assert seq.K[1, 2] == pytest.approx(194.1291) and seq.baseline_m == pytest.approx(0.5707, abs=1e-4)
    assert 9 < seq.fps < 10.5
    left, right = seq.read_pair(0)
    assert left.shape == right.shape == (372, 1344, 3) and (left[..., 0] == left[..., 1]).all()


@needs_sample
def test_real_sample_camera_looks_along_the_direction_of_travel():
    poses = karlsruhe.read(SAMPLE).poses
    position, forward = poses[:, :3, 3], poses[:, :3, 2]
    travel = position[2:] - position[:-2]  # central differences
    angle = np.degrees(np.arctan2(travel[:, 1], travel[:, 0]) - np.arctan2(forward[1:-1, 1], forward[1:-1, 0]))
    assert np.abs(angle).max() < 3.0, angle
    assert np.allclose(forward[:, 2], 0) and np.allclose(poses[:, :3, 1], [0, 0, -1])  # level, y down
    assert np.allclose(np.linalg.det(poses[:, :3, :3]), 1)


@needs_sample
def test_real_sample_ingests_into_three_clips(tmp_path):
    summary = ingest("karlsruhe", SAMPLE, tmp_path, window=16)
    assert summary["clips"] == 3 and summary["frames_dropped"] == 8 and summary["pose_source"] == "ins"
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [f"karlsruhe_2010_03_09_drive_0023_{f:06d}" for f in (0, 16, 32)]
    for name in names:
        meta = read_meta(tmp_path / name)
        assert meta.num_frames == 16 and (meta.width, meta.height) == (1344, 372)
        assert meta.poses.shape == (16, 4, 4) and meta.baseline_m == pytest.approx(0.5707, abs=1e-4)


def test_a_right_turn_turns_the_camera_right():
    heading = np.radians([10.0, 5.0])  # heading falling: clockwise seen from above
    poses = karlsruhe.ins_poses(np.zeros((2, 3)), heading)
    x0, z1 = poses[0, :3, 0], poses[1, :3, 2]
    assert z1 @ x0 > 0  # the new forward leans towards the old right
    assert np.allclose(np.cross(poses[0, :3, 0], poses[0, :3, 1]), poses[0, :3, 2])  # right-handed


def test_tiny_layout(tmp_path):
    seq = karlsruhe.read(_write(tmp_path / "drive", n=4))
    assert seq.baseline_m == pytest.approx(0.5) and seq.fps == pytest.approx(10.0)
    assert seq.timestamps == pytest.approx([0, 0.1, 0.2, 0.3])
    assert np.allclose(seq.poses[:, :3, 2], [1, 0, 0]) and seq.poses[3, 0, 3] == 3.0
    left, _ = seq.read_pair(1)
    assert left.shape == (40, 80, 3)


@pytest.mark.parametrize("calib, match", [
    (CALIB.replace("P1_roi", "P1"), "calib.txt: P1_roi: missing field"),
    (CALIB.replace("1.95e+01 -2.5e+01", "1.95e+01 -2.5e+01").replace("5.0e+01 0 3.95e+01 -2.5e+01 0 5.0e+01",
                                                                     "5.0e+01 0 3.95e+01 -2.5e+01 0 5.2e+01"),
     "calib.txt: P: .*not rectified"),
    (CALIB.replace("-2.5e+01 0 5.0e+01 1.95e+01 0", "-2.5e+01 0 5.0e+01 1.95e+01 5.0e+00"), "vertical offset"),
    (CALIB.replace("P2_roi: 5.0e+01 0", "P2_roi: 5.0e+01"), "calib.txt: P2_roi: 11 numbers"),
])
def test_calibration_errors(tmp_path, calib, match):
    with pytest.raises(SourceError, match=match):
        karlsruhe.read(_write(tmp_path / "drive", calib=calib))


def test_missing_right_frame_and_ins(tmp_path):
    root = _write(tmp_path / "drive", n=3)
    (root / "images" / "I2_000001.png").unlink()
    with pytest.raises(SourceError, match="I2_000001.png: missing"):
        karlsruhe.read(root)
    root = _write(tmp_path / "drive2", n=3)
    (root / "insdata.txt").write_text("1 2 3\n")
    with pytest.raises(SourceError, match="insdata.txt:1: 3 numbers"):
        karlsruhe.read(root)
