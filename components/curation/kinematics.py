"""Kinematic quantities from tracks and camera poses (MLLM-4D's formulas).

World coordinates are the camera's frame at the first sampled frame (x right, y down, z forward), so a
direction "as seen from the camera's initial position" is read straight off x (left/right) and z
(toward/away). Camera center = -R^T t of the world-to-camera extrinsic [R|t], which is the translation
column of our camera-to-world poses; camera direction = R_i^T (c_j - c_i), i.e. the displacement in the
initial camera frame (the identity here).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.curation.geometry import Geometry, Track


@dataclass(frozen=True)
class ObjectKinematics:
    displacement: np.ndarray  # (3,) final - initial, world metres
    displacement_m: float  # horizontal (ground-plane) straight-line distance
    path_length_m: float
    avg_speed: float
    speed_first_half: float
    speed_second_half: float
    distance_initial: float  # object-camera center distance
    distance_final: float
    height_m: float
    yaw_rate: float


@dataclass(frozen=True)
class CameraKinematics:
    displacement: np.ndarray  # (3,) in the initial camera frame
    distance_m: float
    yaw_change_deg: float  # + = turned right (clockwise seen from above)


def _path(points: np.ndarray) -> float:
    steps = np.diff(points[:, [0, 2]], axis=0)  # on the ground plane: objects slide, they do not bob
    return float(np.linalg.norm(steps, axis=1).sum())


def object_kinematics(geometry: Geometry, track: Track) -> ObjectKinematics:
    times, c = geometry.times, track.smooth
    duration = float(times[-1] - times[0])
    half = len(times) // 2
    path = _path(c)
    first, second = _path(c[: half + 1]), _path(c[half:])
    cams = geometry.camera_centers
    disp = c[-1] - c[0]
    return ObjectKinematics(
        displacement=disp,
        displacement_m=float(np.linalg.norm(disp[[0, 2]])),
        path_length_m=path,
        avg_speed=path / duration,
        speed_first_half=first / max(float(times[half] - times[0]), 1e-9),
        speed_second_half=second / max(float(times[-1] - times[half]), 1e-9),
        distance_initial=float(np.linalg.norm(c[0] - cams[0])),
        distance_final=float(np.linalg.norm(c[-1] - cams[-1])),
        height_m=track.height,
        yaw_rate=track.yaw_rate,
    )


def heading_deg(cam_to_world: np.ndarray) -> float:
    """The camera's heading on the ground plane, clockwise from the initial forward axis (+z)."""
    forward = cam_to_world[:3, 2]
    return float(np.degrees(np.arctan2(forward[0], forward[2])))


def camera_kinematics(geometry: Geometry) -> CameraKinematics:
    first, last = geometry.cam_to_world[0], geometry.cam_to_world[-1]
    disp = first[:3, :3].T @ (last[:3, 3] - first[:3, 3])
    return CameraKinematics(
        displacement=disp,
        distance_m=float(np.linalg.norm(disp)),
        yaw_change_deg=heading_deg(last) - heading_deg(first),
    )
