"""The renderer against geometry: depth, disparity, flow and motion masks must agree with each other."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from components.scenes import render_frame, sample_scene
from components.scenes.spec import SceneSpec


def _grid(spec: SceneSpec) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.arange(spec.width, dtype=np.float32), np.arange(spec.height, dtype=np.float32))
    return u, v


def _one_object(spec: SceneSpec, **changes) -> SceneSpec:
    """A static camera and a single 1 m sphere 5 m ahead, with ``changes`` to the object."""
    fields = {
        "shape": "sphere",
        "size": (1.0, 1.0, 1.0),
        "start": (0.0, 5.0),
        "motion": "static",
        "rotation": "none",
        "speed": 0.0,
        "accel": 0.0,
        "yaw_rate": 0.0,
    }
    obj = dataclasses.replace(spec.objects[0], **{**fields, **changes})
    return dataclasses.replace(spec, objects=(obj,), camera_motion="static", camera_speed=0.0)


@pytest.fixture(scope="module")
def specs(small_cfg):
    return [sample_scene(small_cfg, i) for i in range(small_cfg.num_clips)]


def test_frame_shapes_and_types(specs):
    spec = specs[0]
    frame = render_frame(spec, 0)
    h, w = spec.height, spec.width
    assert frame.left.shape == frame.right.shape == (h, w, 3) and frame.left.dtype == np.uint8
    assert frame.depth.shape == (h, w) and frame.depth.dtype == np.float32 and np.isfinite(frame.depth).all()
    assert frame.instance.shape == (h, w) and frame.instance.dtype == np.uint8
    assert frame.flow.shape == (h, w, 2) and frame.flow.dtype == np.float32
    assert frame.motion.shape == (h, w) and frame.motion.dtype == bool
    assert not render_frame(spec, spec.num_frames - 1).flow.any()  # no frame after the last one
    with pytest.raises(IndexError):
        render_frame(spec, spec.num_frames)


def test_render_is_deterministic(specs):
    a, b = render_frame(specs[1], 1), render_frame(specs[1], 1)
    for field in dataclasses.fields(a):
        assert np.array_equal(getattr(a, field.name), getattr(b, field.name)), field.name


def test_ground_depth_is_exact(specs):
    spec = _one_object(specs[0], start=(0.0, 9.0))
    frame = render_frame(spec, 0)
    v = np.arange(spec.height)
    below = np.maximum(v - spec.cy, 1e-3)
    expected = spec.camera_height_m * spec.fy / below  # a flat ground seen by a level camera
    rows = (v > spec.cy) & (expected < 20.0) & (frame.instance == 0).all(axis=1)  # nearer than the backdrop
    assert rows.sum() > 10
    np.testing.assert_allclose(
        frame.depth[rows], np.broadcast_to(expected[rows, None], frame.depth[rows].shape), rtol=1e-5
    )


def test_depth_agrees_with_disparity(specs):
    """A left pixel of depth d is seen in the right image fx * B / d pixels to the left, in the same colour."""
    for spec in specs[:3]:
        frame = render_frame(spec, 0)
        u, v = _grid(spec)
        errors = {}
        for shift in (0.0, 3.0):  # the true disparity, then a wrong one: texture must tell them apart
            x = (u - spec.fx * spec.baseline_m / frame.depth - shift).astype(np.float32)
            seen = cv2.remap(frame.right, x, v, cv2.INTER_LINEAR)
            valid = (x >= 0) & (x <= spec.width - 1)
            errors[shift] = np.median(np.abs(seen.astype(float) - frame.left).mean(axis=-1)[valid])
        assert errors[0.0] < 2.0, errors
        assert errors[3.0] > 2 * errors[0.0] + 2, errors


def test_flow_warps_next_frame_onto_this_one(specs):
    for spec in specs:
        frame, nxt = render_frame(spec, 0), render_frame(spec, 1)
        u, v = _grid(spec)
        x, y = u + frame.flow[..., 0], v + frame.flow[..., 1]
        back = cv2.remap(nxt.left, x, y, cv2.INTER_LINEAR)
        valid = (x >= 0) & (x <= spec.width - 1) & (y >= 0) & (y <= spec.height - 1)
        error = np.abs(back.astype(float) - frame.left).mean(axis=-1)[valid]
        assert valid.mean() > 0.7
        assert np.median(error) < 2.0 and (error < 12).mean() > 0.9, (spec.camera_motion, np.median(error))


def test_static_world_has_zero_flow(specs):
    spec = _one_object(specs[0])
    frame = render_frame(spec, 0)
    assert np.abs(frame.flow).max() < 1e-3
    assert not frame.motion.any()


def test_flow_direction_follows_motion_conventions(specs):
    # Moving right (+x) with a static camera: image flow points right.
    right = render_frame(
        _one_object(specs[0], motion="straight", direction="right", heading=0.0, speed=1.0), 0
    )
    assert np.median(right.flow[..., 0][right.instance == 1]) > 0.1
    assert right.motion[right.instance == 1].all() and not right.motion[right.instance == 0].any()
    # Rotating "left" (counter-clockwise seen from above): the face towards the camera moves right.
    spin = render_frame(_one_object(specs[0], rotation="left", yaw_rate=2.0), 0)
    inside = spin.instance == 1
    assert np.median(spin.flow[..., 0][inside]) > 0.1 and spin.motion[inside].all()
    # A camera moving forward: the ground below the horizon flows down and away from the centre.
    ahead = render_frame(
        dataclasses.replace(_one_object(specs[0]), camera_motion="forward", camera_speed=1.0), 0
    )
    bottom = ahead.flow[-5:, :, 1]
    assert (bottom > 0).all()


def test_masks_and_motion_masks_cover_the_objects(specs):
    for spec in specs:
        frame = render_frame(spec, 0)
        assert set(np.unique(frame.instance)) == {0, *(o.id for o in spec.objects)}
        moving = [o.id for o in spec.objects if o.moving]
        assert np.array_equal(frame.motion, np.isin(frame.instance, moving))
