"""The plain folder reader: frames, calib.json / calib.yaml, poses.txt, errors that name file and field."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from components.sources import folder
from components.sources.sequence import SourceError
from tests.sources.helpers import H, W, write_folder


def test_reads_frames_calib_and_poses(tmp_path):
    seq = folder.read(write_folder(tmp_path / "rec", n=5, poses=True, first=120))
    assert seq.name == "rec" and seq.frame_ids == [120, 121, 122, 123, 124]
    assert seq.K[0, 0] == 50.0 and seq.baseline_m == 0.12 and seq.fps == 10.0 and seq.timestamps is None
    assert seq.poses.shape == (5, 4, 4) and seq.poses[3, 2, 3] == pytest.approx(1.5)
    assert seq.source["pose_source"] == "poses.txt"
    left, right = seq.read_pair(2)
    assert left.shape == right.shape == (H, W, 3) and left.dtype == np.uint8


def test_grey_frames_become_rgb(tmp_path):
    root = write_folder(tmp_path / "rec", n=2, grey=True)
    assert cv2.imread(str(root / "left" / "000000.png"), cv2.IMREAD_UNCHANGED).ndim == 2
    left, _ = folder.read(root).read_pair(0)
    assert left.shape == (H, W, 3) and (left[..., 0] == left[..., 2]).all()


def test_calib_yaml(tmp_path):
    root = write_folder(tmp_path / "rec", n=2)
    (root / "calib.json").unlink()
    (root / "calib.yaml").write_text("fx: 60\nfy: 60\ncx: 40\ncy: 20\nbaseline_m: 0.2\nfps: 5\n")
    seq = folder.read(root)
    assert seq.K[0, 0] == 60 and seq.fps == 5 and seq.poses is None


@pytest.mark.parametrize("calib, field", [
    ({"fx": 50, "fy": 50, "cx": 40, "cy": 20, "fps": 10}, "baseline_m"),
    ({"fx": 50, "fy": 50, "cx": 40, "cy": 20, "baseline_m": -0.1, "fps": 10}, "baseline_m"),
    ({"fx": "wide", "fy": 50, "cx": 40, "cy": 20, "baseline_m": 0.1, "fps": 10}, "fx"),
])
def test_calibration_errors_name_file_and_field(tmp_path, calib, field):
    root = write_folder(tmp_path / "rec", n=2, calib=calib)
    with pytest.raises(SourceError, match=f"calib.json: {field}"):
        folder.read(root)


def test_missing_and_broken_files_are_named(tmp_path):
    root = write_folder(tmp_path / "rec", n=3)
    (root / "right" / "000001.png").unlink()
    with pytest.raises(SourceError, match="right/000001.png: missing"):
        folder.read(root)
    root = write_folder(tmp_path / "rec2", n=3)
    (root / "left" / "000002.png").write_bytes(b"\x89PNG not really")
    seq = folder.read(root)
    with pytest.raises(SourceError, match="000002.png: unreadable"):
        seq.read_pair(2)
    (root / "calib.json").write_text("{not json")
    with pytest.raises(SourceError, match="calib.json: not valid JSON"):
        folder.read(root)


def test_bad_poses_are_refused(tmp_path):
    root = write_folder(tmp_path / "rec", n=3, poses=True)
    lines = (root / "poses.txt").read_text().splitlines()
    (root / "poses.txt").write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(SourceError, match="poses.txt: poses: 2 poses for 3 frames"):
        folder.read(root)
    (root / "poses.txt").write_text("\n".join(lines[:2] + ["1 2 3"]) + "\n")
    with pytest.raises(SourceError, match="poses.txt:3: poses: 3 numbers"):
        folder.read(root)
    scaled = "2 0 0 0  0 2 0 0  0 0 2 0"  # a 3x4 whose "rotation" is a scaling
    (root / "poses.txt").write_text("\n".join(lines[:2] + [scaled]) + "\n")
    with pytest.raises(SourceError, match="pose 2 is not a rigid transform"):
        folder.read(root)
    json.loads((root / "calib.json").read_text())  # untouched
