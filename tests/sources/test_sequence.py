"""The common parts: windows, the calibration check, clip writing (atomic, replaced, --no-poses)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components.sources.clip import list_clips, read_meta, read_rgb
from components.sources.sequence import (
    SourceError,
    StereoSequence,
    check_calibration,
    rectified_stereo,
    windows,
    write_clips,
)

K = np.array([[50.0, 0, 39.5], [0, 50.0, 19.5], [0, 0, 1]])


def _seq(n: int = 10, *, fail_at: int | None = None, poses: bool = True, first: int = 100) -> StereoSequence:
    def pair(i: int):
        if i == fail_at:
            raise SourceError(f"frame{i}.png", "unreadable or truncated image")
        img = np.full((40, 80, 3), i, np.uint8)
        return img, img + 1

    return StereoSequence(
        name="seq", frame_ids=list(range(first, first + n)), K=K, baseline_m=0.1, fps=10.0,
        timestamps=np.arange(n) * 0.1, poses=np.tile(np.eye(4), (n, 1, 1)) if poses else None,
        source={"format": "test", "root": "/rec", "pose_source": "test"}, pair_reader=pair)


def test_windows_full_only_with_stride():
    assert windows(10, 4, 4) == [range(4), range(4, 8)]
    assert windows(10, 4, 3) == [range(4), range(3, 7), range(6, 10)]
    assert windows(3, 4, 4) == []
    with pytest.raises(ValueError, match="window and stride"):
        windows(10, 0, 1)


def test_check_calibration_names_the_field():
    check_calibration(K, 0.1, file="calib")
    with pytest.raises(SourceError, match="calib: baseline_m"):
        check_calibration(K, 0.0, file="calib")
    with pytest.raises(SourceError, match="calib: baseline_m"):
        check_calibration(K, float("nan"), file="calib")
    bad = K.copy()
    bad[0, 0] = -1
    with pytest.raises(SourceError, match="fx must be > 0"):
        check_calibration(bad, 0.1, file="calib")
    bad = K.copy()
    bad[1, 2] = np.inf
    with pytest.raises(SourceError, match="calib: K"):
        check_calibration(bad, 0.1, file="calib")


def test_rectified_stereo_baseline_and_refusals():
    P1 = np.hstack([K, np.zeros((3, 1))])
    P2 = P1.copy()
    P2[0, 3] = -50.0 * 0.5
    K_out, b = rectified_stereo(P1, P2, file="calib.txt")
    assert np.allclose(K_out, K) and b == pytest.approx(0.5)
    other_k = P2.copy()
    other_k[0, 0] = 51.0
    with pytest.raises(SourceError, match="calib.txt: P: .*not rectified"):
        rectified_stereo(P1, other_k, file="calib.txt")
    vertical = P2.copy()
    vertical[1, 3] = 50.0 * 0.05  # 5 cm up: 10 % of the baseline
    with pytest.raises(SourceError, match="vertical offset"):
        rectified_stereo(P1, vertical, file="calib.txt")
    swapped = P2.copy()
    swapped[0, 3] = +25.0  # the "right" camera on the left
    with pytest.raises(SourceError, match="baseline"):
        rectified_stereo(P1, swapped, file="calib.txt")


def test_write_clips_meta_and_frames(tmp_path):
    clips = write_clips(_seq(10), tmp_path, window=4, stride=3)
    assert [c.name for c in clips] == ["seq_000100", "seq_000103", "seq_000106"]
    meta = read_meta(clips[1])
    assert meta.num_frames == 4 and (meta.width, meta.height) == (80, 40) and meta.poses.shape == (4, 4, 4)
    raw = json.loads((clips[1] / "meta.json").read_text())
    assert raw["source"]["frame_ids"] == [103, 104, 105, 106]
    assert raw["source"]["timestamps"] == pytest.approx([0.3, 0.4, 0.5, 0.6])
    assert raw["source"]["pose_source"] == "test" and raw["objects"] == []
    assert (read_rgb(clips[1], "left/000000.png") == 3).all()
    assert (read_rgb(clips[1], "right/000003.png") == 7).all()


def test_no_poses(tmp_path):
    clip = write_clips(_seq(4), tmp_path, window=4, poses=False)[0]
    assert read_meta(clip).poses is None
    assert json.loads((clip / "meta.json").read_text())["source"]["pose_source"] == "none (dropped with --no-poses)"


def test_a_failing_frame_leaves_no_half_clip_and_keeps_the_old_one(tmp_path):
    write_clips(_seq(8), tmp_path, window=4)
    before = (tmp_path / "seq_000104" / "meta.json").read_text()
    with pytest.raises(SourceError, match="frame6.png"):
        write_clips(_seq(8, fail_at=6), tmp_path, window=4)
    assert (tmp_path / "seq_000104" / "meta.json").read_text() == before  # the old clip, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq_000100", "seq_000104"]  # no staging left
    fresh = tmp_path / "fresh"
    with pytest.raises(SourceError):
        write_clips(_seq(8, fail_at=5), fresh, window=4)
    assert [p.name for p in list_clips(fresh)] == ["seq_000100"]
    assert [p.name for p in fresh.iterdir()] == ["seq_000100"]


def test_sequence_checks_its_shapes():
    with pytest.raises(SourceError, match="poses"):
        StereoSequence(name="s", frame_ids=[0, 1], K=K, baseline_m=0.1, fps=10, timestamps=None,
                       poses=np.eye(4)[None], source={"root": "r"}, pair_reader=lambda i: None)
    with pytest.raises(SourceError, match="not a plain name"):
        StereoSequence(name="../x", frame_ids=[0], K=K, baseline_m=0.1, fps=10, timestamps=None,
                       poses=None, source={"root": "r"}, pair_reader=lambda i: None)
    seq = StereoSequence(name="s", frame_ids=[0], K=K, baseline_m=0.1, fps=10, timestamps=None, poses=None,
                         source={"root": "r"},
                         pair_reader=lambda i: (np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8)))
    with pytest.raises(SourceError, match="differ in size"):
        seq.read_pair(0)
