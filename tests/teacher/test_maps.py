"""Target maps on a smoke clip: chained flow is exact for adjacent frames and carries frame a onto frame b,
the first frame's camray is the pixel rays with zero moment, estimates agree with the ground truth, and a
missing gt/ or pose is a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from components.sources.clip import frame_name, read_meta, read_rgb
from components.teacher import TeacherError, target_maps
from components.teacher.maps import compose_flow, resize_masked

S = 28


def _clip(scenes: Path, camera: str | None = None) -> Path:
    """The first smoke clip whose camera is ``camera`` ('moving', 'static') and that has a moving object."""
    for clip in sorted(p for p in scenes.iterdir() if (p / "gt").is_dir()):
        tracks = json.loads((clip / "gt" / "tracks.json").read_text())
        moving_camera = tracks["camera_motion"] != "static"
        has_motion = np.load(clip / "gt" / "motion.npz")["motion"].any()
        if has_motion and (camera is None or moving_camera == (camera == "moving")):
            return clip
    pytest.skip(f"no smoke clip with a {camera} camera and a moving object")


def test_compose_flow_on_literal_fields() -> None:
    flows = np.zeros((2, 6, 8, 2), np.float32)
    flows[0, ..., 0], flows[1, ..., 0] = 1.5, 2.0  # constant shifts add up
    flow, valid = compose_flow(flows)
    assert np.allclose(flow[..., 0], 3.5) and np.allclose(flow[..., 1], 0)
    assert valid[:, :6].all() and not valid[:, -1].any()  # x + 1.5 past the last column: nothing to look up
    flows[1, :, 3:, 0] = -1.0  # the second step is looked up where the first one landed (bilinear)
    flow, _ = compose_flow(flows)
    assert flow[0, 1, 0] == pytest.approx(1.5 + (0.5 * 2.0 + 0.5 * -1.0))


def test_adjacent_flow_is_the_ground_truth(smoke_scenes: Path) -> None:
    clip = _clip(smoke_scenes, "moving")
    meta, gt = read_meta(clip), np.load(clip / "gt" / "flow.npz")["flow"]
    maps = target_maps(clip, [2, 3], S, modalities=["flow"])
    expected, _ = resize_masked(gt[2], np.ones(gt.shape[1:3], bool), S)
    expected *= np.array([S / meta.width, S / meta.height], np.float32)
    assert np.allclose(maps.values["flow"][0], expected.transpose(2, 0, 1), atol=1e-4)
    assert maps.valid["flow"][0].all() and not maps.valid["flow"][1].any()  # the last frame is masked
    assert not maps.values["flow"][1].any()


def test_chained_flow_carries_frame_a_onto_frame_b(smoke_scenes: Path) -> None:
    clip = _clip(smoke_scenes, "moving")
    a, b = 1, 5
    flow, valid = compose_flow(np.load(clip / "gt" / "flow.npz")["flow"][a:b])
    first, last = (read_rgb(clip, f"left/{frame_name(f)}").astype(np.float32) for f in (a, b))
    h, w = valid.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    x, y = gx + flow[..., 0], gy + flow[..., 1]
    inside = valid & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    warped = cv2.remap(last, x, y, cv2.INTER_LINEAR)
    assert inside.mean() > 0.5
    # Occlusions and shading keep it from zero; no flow at all is far worse.
    assert np.abs(warped - first)[inside].mean() < 0.5 * np.abs(last - first)[inside].mean()


def test_camray_first_frame_is_the_pixel_rays_with_zero_moment(smoke_scenes: Path) -> None:
    clip = _clip(smoke_scenes, "moving")
    meta = read_meta(clip)
    rays = target_maps(clip, [3, 6], S, modalities=["camray"]).values["camray"]
    j = np.arange(S) + 0.5
    u, v = np.meshgrid(j * meta.width / S - 0.5, j * meta.height / S - 0.5)
    d = np.stack([(u - meta.cx) / meta.fx, (v - meta.cy) / meta.fy, np.ones_like(u)])
    assert np.allclose(rays[0, :3], d / np.linalg.norm(d, axis=0), atol=1e-6)
    assert np.allclose(rays[0, 3:], 0)
    # Later frame: unit directions, the moment is perpendicular to them and nonzero (the camera moved).
    assert np.allclose(np.linalg.norm(rays[1, :3], axis=0), 1, atol=1e-5)
    assert np.allclose((rays[1, :3] * rays[1, 3:]).sum(0), 0, atol=1e-5)
    assert np.abs(rays[1, 3:]).max() > 1e-3


def test_depth_and_motion_maps(smoke_scenes: Path) -> None:
    clip = _clip(smoke_scenes)
    maps = target_maps(clip, [0, 2, 4, 7], S, modalities=["depth", "motion"])
    depth, motion = maps.values["depth"], maps.values["motion"]
    assert depth.shape == (4, 1, S, S) and motion.shape == (4, 1, S, S)
    gt = np.load(clip / "gt" / "depth.npz")["depth"][4]
    assert np.isfinite(depth).all() and depth.min() >= gt.min() - 1e-3 and depth.max() <= gt.max() + 1e-3
    assert 0 <= motion.min() and motion.max() <= 1 and motion.max() > 0.5


def test_estimates_agree_with_the_ground_truth(smoke_scenes: Path, smoke_params) -> None:
    clip = _clip(smoke_scenes, "moving")
    frames = [0, 3, 7]
    gt = target_maps(clip, frames, S)
    est = target_maps(clip, frames, S, source="estimates", stereo=smoke_params.curation.stereo)
    ok = gt.valid["depth"] & est.valid["depth"]
    assert ok.mean() > 0.8
    g, e = gt.values["depth"][ok], est.values["depth"][ok]
    assert np.median(np.abs(e - g) / g) < 0.1
    ok = (gt.valid["flow"] & est.valid["flow"])[:, 0]
    epe = np.linalg.norm(est.values["flow"] - gt.values["flow"], axis=1)[ok]
    zero = np.linalg.norm(gt.values["flow"], axis=1)[ok]
    assert ok.any() and np.median(epe) < 0.5 * np.median(zero)
    assert np.array_equal(est.values["camray"], gt.values["camray"])
    assert est.values["motion"].shape == (3, 1, S, S)


def test_missing_ground_truth_or_poses_are_clear_errors(smoke_scenes: Path, tmp_path: Path) -> None:
    clip = tmp_path / "clip"
    shutil.copytree(_clip(smoke_scenes), clip)
    (clip / "gt" / "flow.npz").unlink()
    with pytest.raises(TeacherError, match=r"clip \(gt/flow.npz\): missing.*estimates"):
        target_maps(clip, [0, 1], S)
    target_maps(clip, [0, 1], S, modalities=["depth", "motion"])  # what is there still works
    meta = json.loads((clip / "meta.json").read_text())
    (clip / "meta.json").write_text(json.dumps({**meta, "poses": None}))
    with pytest.raises(TeacherError, match=r"clip \(meta.json\): no camera poses"):
        target_maps(clip, [0, 1], S, modalities=["motion"], source="estimates")
    with pytest.raises(TeacherError, match="frames .* outside"):
        target_maps(clip, [0, 99], S, modalities=["depth"])
    with pytest.raises(TeacherError, match="unknown modalities"):
        target_maps(clip, [0, 1], S, modalities=["normals"])
