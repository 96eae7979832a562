"""Clips on disk: the layout of ``components.sources.clip``, ground truth, atomic writes, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.scenes import render_clip, render_scenes, sample_scene, writer
from components.scenes.motion import project
from components.sources.clip import frame_name, list_clips, read_mask, read_meta, read_rgb


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_is_complete_and_readable(small_cfg, small_clips):
    assert [p.name for p in small_clips] == [f"scene_{i:04d}" for i in range(small_cfg.num_clips)]
    assert list_clips(small_clips[0].parent) == small_clips
    for clip in small_clips:
        meta = read_meta(clip)
        spec = sample_scene(small_cfg, int(clip.name.split("_")[1]))
        n = small_cfg.num_frames
        assert (meta.width, meta.height, meta.num_frames, meta.fps) == (96, 72, n, small_cfg.fps)
        assert meta.poses.shape == (n, 4, 4) and meta.baseline_m == small_cfg.baseline_m
        assert [(o.id, o.label) for o in meta.objects] == [(o.id, o.label) for o in spec.objects]
        for t in range(n):
            assert read_rgb(clip, f"left/{frame_name(t)}").shape == (72, 96, 3)
            assert read_rgb(clip, f"right/{frame_name(t)}").shape == (72, 96, 3)
            assert read_mask(clip, f"masks/{frame_name(t)}").dtype == np.uint8
        depth = np.load(clip / "gt" / "depth.npz")["depth"]
        flow = np.load(clip / "gt" / "flow.npz")["flow"]
        motion = np.load(clip / "gt" / "motion.npz")["motion"]
        assert depth.shape == (n, 72, 96) and depth.dtype == np.float32 and (depth > 0).all()
        assert flow.shape == (n - 1, 72, 96, 2) and flow.dtype == np.float32
        assert motion.shape == (n, 72, 96) and motion.dtype == bool


def test_tracks_match_masks(small_clips):
    hits = total = 0
    for clip in small_clips:
        meta = read_meta(clip)
        tracks = json.loads((clip / "gt" / "tracks.json").read_text())
        assert "counter-clockwise" in tracks["yaw_convention"] and tracks["camera_motion"]
        masks = [read_mask(clip, f"masks/{frame_name(t)}") for t in range(meta.num_frames)]
        assert {o["id"] for o in tracks["objects"]} == {o.id for o in meta.objects}
        for obj in tracks["objects"]:
            assert obj["label"] == f"{obj['color']} {obj['shape']}" and len(obj["size"]) == 3
            assert obj["motion"] in ("static", "straight", "curved", "accelerating", "decelerating")
            assert obj["rotation"] in ("none", "left", "right")
            assert len(obj["center"]) == len(obj["yaw"]) == meta.num_frames
            for t, centre in enumerate(obj["center"]):
                assert (masks[t] == obj["id"]).any(), f"{clip.name}: object {obj['id']} invisible at {t}"
                uv, _ = project(np.array([centre]), meta.poses[t], meta.K)
                x, y = np.round(uv[0]).astype(int)
                window = masks[t][max(y - 1, 0) : y + 2, max(x - 1, 0) : x + 2]
                hits += bool((window == obj["id"]).any())
                total += 1
    assert hits >= 0.9 * total  # centres project inside their masks (unless another object is in front)


def test_rendering_is_byte_deterministic(small_cfg, tmp_path):
    a, b = render_clip(small_cfg, 1, tmp_path / "a"), render_clip(small_cfg, 1, tmp_path / "b")
    files = _files(a)
    assert files == _files(b) and len(files) == 4 * 3 + 5


def test_rerender_replaces_the_clip_and_leaves_nothing_behind(small_cfg, tmp_path):
    clip = render_clip(small_cfg, 0, tmp_path)
    (clip / "stale.txt").write_text("from an older render")
    before = _files(clip)
    assert render_clip(small_cfg, 0, tmp_path) == clip
    assert not (clip / "stale.txt").exists()
    assert _files(clip) == {k: v for k, v in before.items() if k != "stale.txt"}
    assert [p.name for p in tmp_path.iterdir()] == [clip.name]


def test_a_crash_leaves_no_partial_clip(small_cfg, tmp_path, monkeypatch):
    good = render_clip(small_cfg, 0, tmp_path)
    before = _files(good)
    real = writer.render_frame

    def failing(spec, t):
        if t == 2:
            raise RuntimeError("boom")
        return real(spec, t)

    monkeypatch.setattr(writer, "render_frame", failing)
    for index in (0, 1):
        with pytest.raises(RuntimeError, match="boom"):
            render_clip(small_cfg, index, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [good.name]  # no scene_0001, no temporary folders
    assert _files(good) == before  # the complete older clip survives


def test_parallel_rendering_matches_serial(small_cfg, tmp_path):
    cfg = type(small_cfg)(**{**small_cfg.__dict__, "num_clips": 2})
    serial = render_scenes(cfg, tmp_path / "serial", workers=1, progress=False)
    parallel = render_scenes(cfg, tmp_path / "parallel", workers=2, progress=False)
    assert [_files(p) for p in serial] == [_files(p) for p in parallel]


def test_render_scenes_removes_leftovers(small_cfg, tmp_path):
    cfg = type(small_cfg)(**{**small_cfg.__dict__, "num_clips": 1})
    extra = render_clip(cfg, 3, tmp_path)  # from an earlier, larger run
    (tmp_path / ".scene_0000.abc.tmp" / "left").mkdir(parents=True)  # from a killed render
    (tmp_path / "notes").mkdir()  # not ours: kept
    render_scenes(cfg, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "scene_0000"]
    assert not extra.exists()
