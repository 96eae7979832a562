"""The Stereo4D reader on a tiny clip in the released format: an npz and two rectified perspective videos
(mp4v written by cv2.VideoWriter; lossy, so pixel checks are approximate), and the frame-folder fallback."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from components.sources import stereo4d
from components.sources.sequence import SourceError, write_clips
from tests.sources.helpers import H, W

VID = "CMwZrkhQ0ck_130030030"


def _npz(root: Path, n: int = 6, **override) -> Path:
    c2w = np.tile(np.eye(4)[:3], (n, 1, 1)).astype(np.float32)
    c2w[:, 2, 3] = np.arange(n) * 0.1  # walking forward
    lengths = np.array([n, 2])
    data = {
        "name": np.array(VID), "video_id": np.array(VID.split("_")[0]),
        "timestamps": 130030030 + np.arange(n, dtype=np.int64) * 66733,  # microseconds, every other 30 fps frame
        "camera2world": c2w,
        "track_lengths": lengths, "track_indices": np.concatenate([np.arange(n), [0, 1]]),
        "track_coordinates": np.zeros((lengths.sum(), 3), np.float32),
        "rectified2rig": np.tile(np.eye(3), (2, 1, 1)), "fov_bounds": np.array([-90.0, 90.0, -90.0, 90.0]),
    }
    data.update(override)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / f"{VID}.npz", **data)
    return root / f"{VID}.npz"


def _video(path: Path, n: int, offset: int = 0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (W, H))
    assert writer.isOpened(), "no mp4v encoder in this OpenCV build"
    for i in range(n):
        writer.write(np.full((H, W, 3), 30 * i + offset, np.uint8))
    writer.release()


def _clip(root: Path, n: int = 6) -> Path:
    _npz(root, n)
    _video(root / f"{VID}-left_rectified.mp4", n)
    _video(root / f"{VID}-right_rectified.mp4", n, offset=5)
    return root


def test_reads_npz_and_videos(tmp_path):
    seq = stereo4d.read(_clip(tmp_path / "clip"))
    assert seq.name == VID and len(seq) == 6 and seq.baseline_m == 0.063
    f = W / (2 * math.tan(math.radians(30)))
    assert seq.K[0, 0] == pytest.approx(f) and seq.K[1, 1] == pytest.approx(f)
    assert (seq.K[0, 2], seq.K[1, 2]) == (W / 2 - 0.5, H / 2 - 0.5)
    assert seq.fps == pytest.approx(1e6 / 66733) and seq.timestamps[0] == pytest.approx(130.03003)
    assert seq.poses.shape == (6, 4, 4) and seq.poses[5, 2, 3] == pytest.approx(0.5)
    for i in (0, 3, 1, 5):  # backwards too: the video is reopened
        left, right = seq.read_pair(i)
        assert left.shape == (H, W, 3) and abs(float(left.mean()) - 30 * i) < 8
        assert abs(float(right.mean()) - 30 * i - 5) < 8


def test_ingests_through_write_clips(tmp_path):
    seq = stereo4d.read(_clip(tmp_path / "clip") / f"{VID}.npz")  # the npz itself as root
    clips = write_clips(seq, tmp_path / "out", window=3)
    assert [c.name for c in clips] == [f"{VID}_000000", f"{VID}_000003"]


def test_frame_folder_fallback(tmp_path):
    root = tmp_path / "clip"
    _npz(root, n=3)
    for side in ("left", "right"):
        (root / f"{VID}-{side}_rectified").mkdir()
        for i in range(3):
            cv2.imwrite(str(root / f"{VID}-{side}_rectified" / f"{i:05d}.png"), np.full((H, W), 40 * i, np.uint8))
    seq = stereo4d.read(root)
    left, _ = seq.read_pair(2)
    assert left.shape == (H, W, 3) and (left == 80).all()


def test_errors_name_file_and_field(tmp_path):
    root = _clip(tmp_path / "a", n=6)
    _npz(root, n=6, camera2world=np.zeros((5, 3, 4)))
    with pytest.raises(SourceError, match=f"{VID}.npz: camera2world: shape"):
        stereo4d.read(root)
    root = _clip(tmp_path / "b", n=6)
    _npz(root, n=7)  # one timestamp more than the videos have frames
    with pytest.raises(SourceError, match="left_rectified.mp4: 6 frames for 7 timestamps"):
        stereo4d.read(root)
    root = tmp_path / "c"
    _npz(root, n=3)
    with pytest.raises(SourceError, match="left_rectified.mp4: missing"):
        stereo4d.read(root)
    data = dict(np.load(root / f"{VID}.npz"))
    data.pop("timestamps")
    np.savez(root / f"{VID}.npz", **data)
    with pytest.raises(SourceError, match="timestamps: missing field"):
        stereo4d.read(root)
