"""What a synthetic clip is made of: the frozen scene description that sampling produces and rendering reads.

A ``SceneSpec`` holds parameters, never pixels, so it is cheap to pickle to worker processes and any frame
can be re-rendered from it alone (``render_frame(spec, t)``). Every quantity is in the world frame, which
is the LEFT camera's frame at t = 0 with OpenCV axes: x right, y down, z forward. The ground is the plane
y = camera_height_m (y grows downwards), the camera stays at y = 0.

Yaw convention (objects and camera alike): yaw is an angle about the vertical axis that grows for a
counter-clockwise turn seen from above, i.e. "turning left". An object's local +x axis points along world
(cos yaw, 0, sin yaw); its rotation matrix is R_y(-yaw) in OpenCV axes, because with y pointing down a
counter-clockwise turn seen from above is a negative right-handed rotation about +y. A camera with yaw psi
looks along world (-sin psi, 0, cos psi): a positive psi has turned it to the left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

Shape = Literal["cube", "sphere", "cylinder"]
ObjectMotion = Literal["static", "straight", "curved", "accelerating", "decelerating"]
Rotation = Literal["none", "left", "right"]
Direction = Literal["none", "left", "right", "toward", "away"]
CameraMotion = Literal["static", "forward", "backward", "left", "right", "turn_left", "turn_right"]

SHAPES: Final[tuple[Shape, ...]] = ("cube", "sphere", "cylinder")
MOVING_KINDS: Final[tuple[ObjectMotion, ...]] = ("straight", "curved", "accelerating", "decelerating")
DIRECTIONS: Final[tuple[Direction, ...]] = ("left", "right", "toward", "away")
EGO_MOTIONS: Final[tuple[CameraMotion, ...]] = (
    "forward",
    "backward",
    "left",
    "right",
    "turn_left",
    "turn_right",
)

# Named albedos (linear 0..1 RGB). Far apart in hue so that "the red cube" is unambiguous, and none of them
# grey or brown-beige like the ground and the backdrop. White is kept below 1 so texture survives shading.
PALETTE: Final[dict[str, tuple[float, float, float]]] = {
    "red": (0.85, 0.10, 0.10),
    "green": (0.12, 0.68, 0.16),
    "blue": (0.12, 0.25, 0.90),
    "yellow": (0.92, 0.82, 0.10),
    "purple": (0.55, 0.16, 0.75),
    "orange": (0.98, 0.50, 0.06),
    "cyan": (0.10, 0.78, 0.82),
    "white": (0.80, 0.80, 0.80),
    "pink": (0.98, 0.45, 0.70),
}
GROUND_RGB: Final = (0.50, 0.45, 0.36)
BACKDROP_RGB: Final = (0.52, 0.58, 0.62)
BACKDROP_RADIUS_M: Final = 25.0

YAW_CONVENTION: Final = (
    "yaw in radians about the vertical axis, increasing counter-clockwise seen from above (turning left); "
    "object local +x points along world (cos yaw, 0, sin yaw); rotation 'left' = yaw increasing, "
    "'right' = yaw decreasing. World = left camera at t=0, OpenCV axes (x right, y down, z forward)."
)


@dataclass(frozen=True)
class ObjectSpec:
    """One rigid object and its trajectory; ``motion.object_centers``/``object_yaws`` evaluate it."""

    id: int  # instance id in masks, 1..n
    shape: Shape
    color: str
    rgb: tuple[float, float, float]
    size: tuple[float, float, float]  # local x (width), y (height), z (depth) extents in metres
    motion: ObjectMotion
    direction: Direction  # initial heading relative to the t=0 camera; "none" when static
    rotation: Rotation
    # The trajectory; the defaults describe an object that stays where it is, facing +x.
    start: tuple[float, float] = (0.0, 0.0)  # (x, z) of the centre at t = 0 (y: resting on the ground)
    heading: float = 0.0  # initial heading angle (rad, same convention as yaw) of the translation
    speed: float = 0.0  # m/s; the initial speed for "accelerating" / "decelerating"
    accel: float = 0.0  # m/s^2 along the heading (negative when decelerating)
    turn_radius: float = 0.0  # m, signed: > 0 turns left (counter-clockwise from above), "curved" only
    yaw0: float = 0.0
    yaw_rate: float = 0.0  # rad/s, > 0 = left
    tex_offset: tuple[float, float] = (0.0, 0.0)  # texels: objects do not share the same texture patch

    @property
    def label(self) -> str:
        return f"{self.color} {self.shape}"

    @property
    def footprint_radius(self) -> float:
        """Radius of the object's circle on the ground (for keeping objects apart)."""
        sx, _, sz = self.size
        return 0.5 * math.hypot(sx, sz) if self.shape == "cube" else 0.5 * sx

    @property
    def moving(self) -> bool:
        """Whether any surface point moves in the world (translation or rotation in place)."""
        return self.motion != "static" or self.rotation != "none"


@dataclass(frozen=True)
class SceneSpec:
    index: int
    clip_id: str
    seed: int
    width: int
    height: int
    num_frames: int
    fps: float
    fx: float
    fy: float
    cx: float
    cy: float
    baseline_m: float
    camera_height_m: float
    camera_motion: CameraMotion
    camera_speed: float  # m/s for translations, rad/s (> 0) for turns, 0 when static
    objects: tuple[ObjectSpec, ...]

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @property
    def duration_s(self) -> float:
        return (self.num_frames - 1) / self.fps


@dataclass(frozen=True)
class RenderedFrame:
    left: np.ndarray  # H x W x 3 uint8 RGB
    right: np.ndarray  # H x W x 3 uint8 RGB
    depth: np.ndarray  # H x W float32 metres, z in the left camera
    instance: np.ndarray  # H x W uint8, 0 = background, k = object id k
    flow: np.ndarray  # H x W x 2 float32, left pixel t -> t+1 (zeros at the last frame)
    motion: np.ndarray  # H x W bool, pixel on an object that moves or rotates


def intrinsics(width: int, height: int, hfov_deg: float) -> tuple[float, float, float, float]:
    """Square pixels, principal point at the image centre: (fx, fy, cx, cy)."""
    fx = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
    return fx, fx, width / 2, height / 2
