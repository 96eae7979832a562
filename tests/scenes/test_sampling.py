"""Scene sampling: determinism, balance across clips, placement constraints, camera motion."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest

from components.config import ScenesConfig
from components.scenes import motion as mo
from components.scenes import sample_scene
from components.scenes.sampling import MAX_DEPTH_M, MIN_DEPTH_M
from components.scenes.spec import EGO_MOTIONS, YAW_CONVENTION


@pytest.fixture(scope="module")
def specs24():
    cfg = ScenesConfig(seed=0, num_clips=24)
    return [sample_scene(cfg, i) for i in range(cfg.num_clips)]


def test_sampling_is_deterministic(small_cfg):
    assert sample_scene(small_cfg, 2) == sample_scene(small_cfg, 2)
    assert sample_scene(small_cfg, 2) != sample_scene(dataclasses.replace(small_cfg, seed=4), 2)


def test_objects_are_well_formed(specs24):
    for spec in specs24:
        assert spec.clip_id == f"scene_{spec.index:04d}"
        assert 2 <= len(spec.objects) <= 4
        assert [o.id for o in spec.objects] == list(range(1, len(spec.objects) + 1))
        labels = [o.label for o in spec.objects]
        assert len({o.color for o in spec.objects}) == len(labels), "colours must be distinct within a clip"
        for obj in spec.objects:
            assert all(0.4 <= s <= 1.5 for s in obj.size), obj
            assert obj.label == f"{obj.color} {obj.shape}"
            assert obj.motion == "static" or 0.1 <= obj.speed <= 2.5


def test_balance_over_24_clips(specs24):
    objects = [o for s in specs24 for o in s.objects]
    cameras = Counter(s.camera_motion for s in specs24)
    assert cameras["static"] == 12  # ego_motion_fraction = 0.5, exactly
    assert set(cameras) == {"static", *EGO_MOTIONS}, cameras
    assert max(cameras[m] for m in EGO_MOTIONS) - min(cameras[m] for m in EGO_MOTIONS) <= 1
    kinds = Counter(o.motion for o in objects)
    assert set(kinds) == {"static", "straight", "curved", "accelerating", "decelerating"}, kinds
    moving = [o for o in objects if o.motion != "static"]
    directions = Counter(o.direction for o in moving)
    assert set(directions) == {"left", "right", "toward", "away"}
    assert max(directions.values()) - min(directions.values()) <= 1
    rotations = Counter(o.rotation for o in objects)
    assert rotations["left"] >= 4 and rotations["right"] >= 4 and rotations["none"] >= 4
    assert any(o.motion == "static" and o.rotation != "none" for o in objects), "something rotates in place"
    assert Counter(o.shape for o in objects).keys() == {"cube", "sphere", "cylinder"}
    assert len({sum(o.motion != "static" for o in s.objects) for s in specs24}) >= 3


def test_objects_stay_in_view_and_apart(specs24):
    for spec in specs24[:8]:
        times = np.arange(spec.num_frames) / spec.fps
        poses = mo.camera_poses(spec, times)
        for obj in spec.objects:
            centres = mo.object_centers(obj, times, spec.camera_height_m)
            # resting on the ground (y grows downwards)
            np.testing.assert_allclose(centres[:, 1] + obj.size[1] / 2, spec.camera_height_m)
            for t in range(spec.num_frames):
                uv, z = mo.project(centres[t : t + 1], poses[t], spec.K)
                assert MIN_DEPTH_M <= z[0] <= MAX_DEPTH_M
                assert 0 <= uv[0, 0] < spec.width and 0 <= uv[0, 1] < spec.height
        for a in spec.objects:
            for b in spec.objects:
                if a.id < b.id:
                    ca = mo.object_centers(a, times, spec.camera_height_m)
                    cb = mo.object_centers(b, times, spec.camera_height_m)
                    gap = np.hypot(*(ca - cb)[:, [0, 2]].T) - a.footprint_radius - b.footprint_radius
                    assert gap.min() > 0


def test_camera_follows_requested_motion(specs24):
    seen = set()
    for spec in specs24:
        poses = mo.camera_poses(spec)
        first, last = poses[0], poses[-1]
        np.testing.assert_allclose(first, np.eye(4), atol=1e-12)  # world = left camera at t=0
        move = last[:3, 3]
        forward = last[:3, 2]
        motion = spec.camera_motion
        seen.add(motion)
        if motion == "static":
            np.testing.assert_allclose(poses, np.tile(np.eye(4), (spec.num_frames, 1, 1)))
        elif motion == "forward":
            assert np.all(np.diff(poses[:, 2, 3]) > 0)
        elif motion == "backward":
            assert np.all(np.diff(poses[:, 2, 3]) < 0)
        elif motion in ("left", "right"):
            assert (move[0] < 0) == (motion == "left") and abs(move[2]) < 1e-9
        else:  # turning in place: OpenCV x is right, so a left turn swings the optical axis towards -x
            assert np.allclose(move, 0) and (forward[0] < 0) == (motion == "turn_left")
        for pose in poses:  # rigid, no pitch or roll
            np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)
            assert abs(pose[1, 3]) < 1e-12 and np.allclose(pose[:3, 1], [0, 1, 0])
    assert seen == {"static", *EGO_MOTIONS}


def test_yaw_convention_left_is_counter_clockwise_from_above():
    # Local +x at yaw = 90 deg points away from the camera (+z): from +x, counter-clockwise seen from above.
    np.testing.assert_allclose(mo.yaw_matrix(np.pi / 2) @ [1, 0, 0], [0, 0, 1], atol=1e-12)
    assert "counter-clockwise" in YAW_CONVENTION


def test_too_many_objects_for_the_palette_is_an_actionable_error():
    with pytest.raises(ValueError, match="max_objects"):
        sample_scene(ScenesConfig(min_objects=2, max_objects=12), 0)


def test_object_scale_grows_objects_and_they_still_fit():
    """``object_scale`` multiplies every drawn size (the same draws otherwise) and the placement checks still hold."""
    base = ScenesConfig(seed=0, num_clips=6, min_objects=1, max_objects=2)
    big = dataclasses.replace(base, object_scale=1.6)
    for i in range(base.num_clips):
        small_objects, big_objects = sample_scene(base, i).objects, sample_scene(big, i).objects
        assert [o.shape for o in small_objects] == [o.shape for o in big_objects]
        for obj in big_objects:
            assert all(0.4 * 1.6 - 1e-9 <= s <= 1.5 * 1.6 + 1e-9 for s in obj.size), obj
        assert np.mean([o.size[1] for o in big_objects]) > 1.3 * np.mean([o.size[1] for o in small_objects])
    with pytest.raises(Exception, match="object_scale"):
        ScenesConfig(object_scale=0.0)
