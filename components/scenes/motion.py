"""Closed-form trajectories of objects and of the camera, evaluated at any time.

Closed forms (rather than integrating step by step) make every frame independent, so a frame renders
alone and ground-truth flow between t and t+1 is exact. Conventions are those of ``spec.py``: world =
left camera at t=0, OpenCV axes, yaw growing counter-clockwise seen from above.
"""

from __future__ import annotations

import numpy as np

from components.scenes.spec import ObjectSpec, SceneSpec


def yaw_matrix(yaw: float) -> np.ndarray:
    """World-from-local rotation for a yaw (see ``spec.py``): R_y(-yaw) in OpenCV axes."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


def heading_vector(angle: float) -> np.ndarray:
    """Unit direction on the ground for a heading angle (same convention as yaw)."""
    return np.array([np.cos(angle), 0.0, np.sin(angle)])


def rest_height(obj: ObjectSpec, ground_y: float) -> float:
    """y of the object's centre when it rests on the ground (y points down, so it is above = smaller)."""
    return ground_y - 0.5 * obj.size[1]


def object_centers(obj: ObjectSpec, times: np.ndarray, ground_y: float) -> np.ndarray:
    """Centre (len(times) x 3, world metres) of ``obj`` at times in seconds."""
    s = np.asarray(times, dtype=np.float64)
    x0, z0 = obj.start
    if obj.motion == "static":
        dist = np.zeros_like(s)
    elif obj.motion == "straight":
        dist = obj.speed * s
    elif obj.motion in ("accelerating", "decelerating"):
        dist = obj.speed * s + 0.5 * obj.accel * s * s
    elif obj.motion == "curved":
        # Constant speed v on a circle of signed radius r: the heading turns at v / r (left when r > 0).
        r = obj.turn_radius
        phi = obj.heading + obj.speed * s / r
        x = x0 + r * (np.sin(phi) - np.sin(obj.heading))
        z = z0 - r * (np.cos(phi) - np.cos(obj.heading))
        y = np.full_like(s, rest_height(obj, ground_y))
        return np.stack([x, y, z], axis=-1)
    else:
        raise ValueError(f"unknown object motion {obj.motion!r}")
    h = heading_vector(obj.heading)
    x = x0 + dist * h[0]
    z = z0 + dist * h[2]
    y = np.full_like(s, rest_height(obj, ground_y))
    return np.stack([x, y, z], axis=-1)


def object_yaws(obj: ObjectSpec, times: np.ndarray) -> np.ndarray:
    return obj.yaw0 + obj.yaw_rate * np.asarray(times, dtype=np.float64)


def object_pose(spec: SceneSpec, obj: ObjectSpec, t: int) -> tuple[np.ndarray, np.ndarray]:
    """(R world-from-local 3x3, centre 3) of ``obj`` at frame ``t``."""
    s = np.array([t / spec.fps])
    centre = object_centers(obj, s, spec.camera_height_m)[0]
    return yaw_matrix(float(object_yaws(obj, s)[0])), centre


def camera_poses(spec: SceneSpec, times: np.ndarray | None = None) -> np.ndarray:
    """Left camera-to-world (len(times) x 4 x 4) at times in seconds (default: every frame).

    Translations move along the t=0 camera axes; turns rotate in place about the vertical axis.
    """
    s = np.arange(spec.num_frames) / spec.fps if times is None else np.asarray(times, dtype=np.float64)
    poses = np.tile(np.eye(4), (len(s), 1, 1))
    v = spec.camera_speed
    # Directions in the t=0 camera frame: left is -x in OpenCV axes.
    direction = {"forward": (0, 0, 1.0), "backward": (0, 0, -1.0), "left": (-1.0, 0, 0), "right": (1.0, 0, 0)}
    if spec.camera_motion in direction:
        poses[:, :3, 3] = np.outer(v * s, direction[spec.camera_motion])
    elif spec.camera_motion in ("turn_left", "turn_right"):
        sign = 1.0 if spec.camera_motion == "turn_left" else -1.0
        for i, si in enumerate(s):
            poses[i, :3, :3] = yaw_matrix(sign * v * si)
    elif spec.camera_motion != "static":
        raise ValueError(f"unknown camera motion {spec.camera_motion!r}")
    return poses


def camera_pose(spec: SceneSpec, t: int) -> np.ndarray:
    return camera_poses(spec, np.array([t / spec.fps]))[0]


def project(points: np.ndarray, cam_to_world: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points (N x 3) -> (pixels N x 2, depth N) in the camera ``cam_to_world``."""
    cam = (points - cam_to_world[:3, 3]) @ cam_to_world[:3, :3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([K[0, 0] * cam[:, 0] / z + K[0, 2], K[1, 1] * cam[:, 1] / z + K[1, 2]], axis=-1)
    return uv, z


def box_corners(obj: ObjectSpec, centre: np.ndarray, yaw: float) -> np.ndarray:
    """The 8 corners (8 x 3, world) of the object's oriented bounding box."""
    half = 0.5 * np.array(obj.size)
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=np.float64)
    return (signs * half) @ yaw_matrix(yaw).T + centre
