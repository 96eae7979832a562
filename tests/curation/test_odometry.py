"""Stereo odometry on sequences rendered here (textured planes, exact poses): translation, rotation, a moving
object, a still camera, bad input and textureless frames. No project data needed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from components.config import OdometryConfig
from components.curation.odometry import OdometryError, estimate_poses

W, H, F, BASELINE = 160, 120, 140.0, 0.5
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]])
TEXEL = 0.03  # metres per texture pixel: about one pixel at the wall, so the texture does not alias


def _texture(seed: int, size: int = 2048) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((size, size), dtype=np.float32), (0, 0), 2.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (40 + 180 * noise).astype(np.float32)


WALL, PATCH = _texture(0), _texture(1)


def _yaw(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def _render(pose: np.ndarray, patch_x: float | None) -> tuple[np.ndarray, np.ndarray]:
    """One camera (camera-to-world ``pose``) -> (RGB, depth): a textured wall slanted across the view
    (z = 6 + 0.4 x), the ground 1.2 m below the first camera and, optionally, a 1.2 m square patch at
    z = 4 m centred at x = ``patch_x``, drawn in front of them. The depth range (about 2.5 to 8 m) keeps
    sideways motion and yaw apart: on a single fronto-parallel plane they are nearly interchangeable."""
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.stack([(u - K[0, 2]) / F, (v - K[1, 2]) / F, np.ones_like(u)], -1) @ pose[:3, :3].T
    o = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        s_wall = (6.0 + 0.4 * o[0] - o[2]) / (rays[..., 2] - 0.4 * rays[..., 0])
        s_ground = np.where(rays[..., 1] > 0, (1.2 - o[1]) / rays[..., 1], np.inf)
        s_patch = (4.0 - o[2]) / rays[..., 2]

    def texel(s: np.ndarray, a: int, b: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        # (Coordinates clipped into the texture: remap is very slow on far out-of-range ones.)
        with np.errstate(invalid="ignore"):  # inf * 0 where a ray misses the surface: masked out anyway
            ca = np.clip(np.nan_to_num((o[a] + s * rays[..., a] - shift) / TEXEL + 1024), 0, 2047)
            cb = np.clip(np.nan_to_num((o[b] + s * rays[..., b]) / TEXEL + 1024), 0, 2047)
        return ca.astype(np.float32), cb.astype(np.float32)

    image = cv2.remap(WALL, *texel(s_wall, 0, 1), cv2.INTER_LINEAR)
    ground = s_ground < s_wall
    image = np.where(ground, cv2.remap(PATCH.T.copy(), *texel(s_ground, 0, 2), cv2.INTER_LINEAR), image)
    s_hit = np.where(ground, s_ground, s_wall)
    if patch_x is not None:
        px, py = o[0] + s_patch * rays[..., 0], o[1] + s_patch * rays[..., 1]
        inside = (np.abs(px - patch_x) < 0.6) & (np.abs(py) < 0.6) & (s_patch < s_hit)
        image = np.where(inside, cv2.remap(PATCH, *texel(s_patch, 0, 1, shift=patch_x), cv2.INTER_LINEAR), image)
        s_hit = np.where(inside, s_patch, s_hit)
    grey = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2), s_hit  # rays have camera z = 1: s is the depth


def _sequence(poses: np.ndarray, patch_x: list[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    left, right = [], []
    for t, pose in enumerate(poses):
        right_pose = pose.copy()
        right_pose[:3, 3] = pose[:3, 3] + pose[:3, :3] @ np.array([BASELINE, 0, 0])
        px = None if patch_x is None else patch_x[t]
        left.append(_render(pose, px)[0])
        right.append(_render(right_pose, px)[0])
    return np.stack(left), np.stack(right)


def _poses(steps: int, step_m=(0.0, 0.0, 0.0), yaw_deg: float = 0.0) -> np.ndarray:
    poses = np.tile(np.eye(4), (steps, 1, 1))
    for t in range(steps):
        poses[t, :3, :3] = _yaw(yaw_deg * t)
        poses[t, :3, 3] = np.array(step_m) * t
    return poses


def _heading(pose: np.ndarray) -> float:
    return float(np.degrees(np.arctan2(pose[0, 2], pose[2, 2])))


def test_pure_translation():
    true = _poses(8, step_m=(0.04, 0.0, 0.12))
    left, right = _sequence(true)
    est = estimate_poses(left, right, K=K, baseline=BASELINE)
    assert est.shape == (8, 4, 4) and est.dtype == np.float64
    np.testing.assert_allclose(est[0], np.eye(4), atol=1e-12)
    travelled = np.linalg.norm(true[-1, :3, 3])
    # Measured: 2.7 cm of 0.89 m, most of it sideways, traded against a 0.24 deg yaw (the weakest mode of
    # a narrow view). The benchmark's goal (1%) is for 16-frame clips; this bounds a regression.
    assert np.linalg.norm(est[-1, :3, 3] - true[-1, :3, 3]) < 0.04 * travelled
    assert abs(_heading(est[-1])) < 0.5


def test_pure_rotation():
    true = _poses(8, yaw_deg=1.5)
    left, right = _sequence(true)
    est = estimate_poses(left, right, K=K, baseline=BASELINE)
    assert abs(_heading(est[-1]) - _heading(true[-1])) < 0.2
    assert np.linalg.norm(est[-1, :3, 3]) < 0.02


def test_moving_object_does_not_bias_the_motion():
    """A patch covering about a fifth of the frame slides sideways 8 cm a frame while the camera moves ahead."""
    true = _poses(8, step_m=(0.0, 0.0, 0.12))
    left, right = _sequence(true, patch_x=[-0.3 + 0.08 * t for t in range(8)])
    est = estimate_poses(left, right, K=K, baseline=BASELINE)
    assert np.linalg.norm(est[-1, :3, 3] - true[-1, :3, 3]) < 0.02 * np.linalg.norm(true[-1, :3, 3])
    assert abs(est[-1, 0, 3]) < 0.02  # no sideways drift dragged along by the patch


def test_static_camera_gives_identity():
    left, right = _sequence(_poses(6))
    est = estimate_poses(left, right, K=K, baseline=BASELINE)
    np.testing.assert_allclose(est, np.tile(np.eye(4), (6, 1, 1)), atol=2e-3)


def test_disparities_are_used_when_given():
    true = _poses(6, step_m=(0.0, 0.0, 0.12))
    left, right = _sequence(true)
    disp = np.stack([(F * BASELINE / _render(pose, None)[1]).astype(np.float32) for pose in true])
    est = estimate_poses(left, right, K=K, baseline=BASELINE, disparities=disp)
    assert np.linalg.norm(est[-1, :3, 3] - true[-1, :3, 3]) < 0.02 * np.linalg.norm(true[-1, :3, 3])


def test_textureless_frames_are_refused():
    flat = np.full((4, H, W, 3), 128, np.uint8)
    with pytest.raises(OdometryError, match=r"frame 0: \d+ corners with a stereo match, need >= 30"):
        estimate_poses(flat, flat, K=K, baseline=BASELINE)


def test_a_single_frame_is_the_identity():
    left, right = _sequence(_poses(1))
    np.testing.assert_array_equal(estimate_poses(left, right, K=K, baseline=BASELINE), np.eye(4)[None])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"left": np.zeros((4, H, W), np.uint8)}, "T x H x W x 3"),
    ({"left": np.zeros((4, H, W, 3), np.float32)}, "uint8"),
    ({"right": np.zeros((3, H, W, 3), np.uint8)}, "same shape"),
    ({"K": np.eye(2)}, "3x3"),
    ({"K": np.where(np.eye(3) > 0, np.nan, 0)}, "finite"),
    ({"K": np.diag([-1.0, 1.0, 1.0])}, "focal"),
    ({"baseline": 0.0}, "baseline"),
    ({"baseline": -0.5}, "baseline"),
    ({"baseline": float("nan")}, "baseline"),
    ({"baseline": "half a metre"}, "baseline"),
    ({"disparities": np.zeros((4, H, W + 1), np.float32)}, "disparities"),
])
def test_bad_input_is_refused_with_a_reason(kwargs, message):
    args = {"left": np.zeros((4, H, W, 3), np.uint8), "right": np.zeros((4, H, W, 3), np.uint8), "K": K,
            "baseline": BASELINE}
    args.update(kwargs)
    left, right = args.pop("left"), args.pop("right")
    with pytest.raises(ValueError, match=message):
        estimate_poses(left, right, **args)


def test_config_is_checked():
    with pytest.raises(ValueError, match="lk_window"):
        OdometryConfig(lk_window=8)
    with pytest.raises(ValueError, match="min_inliers"):
        OdometryConfig(min_inliers=3)
