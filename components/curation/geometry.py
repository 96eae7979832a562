"""Objects in 3D over time: stereo depth + instance masks + camera poses -> smoothed world tracks.

MLLM-4D lifts tracked objects to 3D with estimated depth and camera poses; we do the same with classic
parts (no learned weights can be downloaded): each object's mask is back-projected with the stereo depth,
the surface points are reduced robustly (median, MAD outlier rejection), the visible-surface center is
pushed back along the viewing ray by a fraction of the object's width (the camera sees only the front
half), moved to world coordinates with the pose, and the track is smoothed with a least-squares
polynomial in time, which, unlike a causal filter, has no lag bias.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

# The visible surface of a convex object lies in front of its center by about this fraction of its
# width (sphere ~0.4, a box seen face-on 0.5, at 45 degrees ~0.35): measured against ground truth
# on the synthetic clips (benchmarks/curation_quality.py reports the center error).
SURFACE_TO_CENTER = 0.4
MIN_PIXELS = 12


@dataclass
class ObjectObservation:
    """One object in one frame, in that frame's camera coordinates."""

    center_cam: np.ndarray  # (3,) metres
    height: float
    width: float
    pixels: int
    centroid_px: np.ndarray  # (2,) mask centroid (u, v)


@dataclass
class Track:
    """An object's path in world coordinates (world = the camera at the clip's first sampled frame)."""

    object_id: int
    label: str
    centers: np.ndarray  # T x 3, NaN where unobserved
    smooth: np.ndarray  # T x 3, the polynomial fit (used for every kinematic quantity)
    height: float  # metres, median over frames
    width: float
    yaw_rate: float  # rad/s, + = counter-clockwise seen from above ("turning left"); NaN if unknown
    visible_fraction: float


@dataclass
class Geometry:
    """What the kinematics and the questions read: the same shape from estimates or ground truth."""

    times: np.ndarray  # T seconds
    cam_to_world: np.ndarray  # T x 4 x 4 (world = camera at frame 0 of ``times``)
    tracks: dict[int, Track] = field(default_factory=dict)

    @property
    def camera_centers(self) -> np.ndarray:
        return self.cam_to_world[:, :3, 3]


def backproject(depth: np.ndarray, mask: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with finite depth -> N x 3 camera-frame points."""
    v, u = np.nonzero(mask)
    z = depth[v, u]
    ok = np.isfinite(z) & (z > 0)
    u, v, z = u[ok], v[ok], z[ok]
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    return np.stack([x, y, z], axis=1)


def observe_object(depth: np.ndarray, mask: np.ndarray, K: np.ndarray) -> ObjectObservation | None:
    """Robust 3D center and size of one object from its mask and a depth map; None if too few pixels."""
    # Mask borders carry mixed foreground/background disparities: the depth statistics use the eroded
    # mask; the extents use every mask pixel whose depth agrees with them (erosion would shrink sizes).
    eroded = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    core = backproject(depth, eroded if eroded.sum() >= MIN_PIXELS else mask, K)
    if len(core) < MIN_PIXELS:
        return None
    med = float(np.median(core[:, 2]))
    mad = 1.4826 * float(np.median(np.abs(core[:, 2] - med)))
    band = max(3.0 * mad, 0.05 * med)
    pts = backproject(depth, mask, K)
    pts = pts[np.abs(pts[:, 2] - med) <= band]
    if len(pts) < MIN_PIXELS:
        return None
    lo, hi = np.percentile(pts, [1, 99], axis=0)
    pixel = med / K[0, 0]  # one pixel's footprint: N pixels span N footprints, their centres N - 1
    width = float(hi[0] - lo[0]) + pixel
    height = float(hi[1] - lo[1]) + pixel
    inner = core[np.abs(core[:, 2] - med) <= band]
    surface = np.array([np.median(inner[:, 0]), 0.5 * (lo[1] + hi[1]), np.median(inner[:, 2])])
    ray = surface * np.array([1.0, 0.0, 1.0])
    ray /= max(np.linalg.norm(ray), 1e-9)
    center = surface + ray * SURFACE_TO_CENTER * width
    vs, us = np.nonzero(mask)
    return ObjectObservation(center, height, width, int(mask.sum()), np.array([us.mean(), vs.mean()]))


def to_world(points_cam: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    return points_cam @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]


def fit_track(times: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Zero-lag smoothing: a per-axis least-squares polynomial in time (cubic with >= 8 observations)."""
    ok = np.isfinite(centers).all(axis=1)
    n = int(ok.sum())
    if n == 0:
        return np.full_like(centers, np.nan)
    degree = 3 if n >= 8 else min(2, n - 1)
    t0 = times[ok].mean()
    scale = max(np.ptp(times), 1e-6)
    tn = (times - t0) / scale  # conditioning
    out = np.empty_like(centers)
    for axis in range(3):
        coeffs = np.polyfit(tn[ok], centers[ok, axis], degree)
        out[:, axis] = np.polyval(coeffs, tn)
    return out


def texture_shift(prev_gray: np.ndarray, next_gray: np.ndarray, m0: np.ndarray, m1: np.ndarray,
                  max_shift: float = 6.0) -> float | None:
    """Horizontal shift (px) of an object's surface texture relative to its silhouette between two frames.

    Both frames are cut around the mask centroids (sub-pixel, so the silhouettes align), then the texture
    in the central part of the object is matched at horizontal offsets by normalised cross-correlation,
    refined with a parabola. A yaw rotation slides the texture across a still silhouette; translation and
    camera motion move both together and cancel.
    """
    ys0, xs0 = np.nonzero(m0)
    ys1, xs1 = np.nonzero(m1)
    if len(xs0) < MIN_PIXELS or len(xs1) < MIN_PIXELS:
        return None
    c0 = (float(xs0.mean()), float(ys0.mean()))
    c1 = (float(xs1.mean()), float(ys1.mean()))
    half_w = int(np.ceil(max(np.ptp(xs0), np.ptp(xs1)) / 2)) + 2
    half_h = int(np.ceil(max(np.ptp(ys0), np.ptp(ys1)) / 2)) + 2
    size = (2 * half_w + 1, 2 * half_h + 1)
    a = cv2.getRectSubPix(prev_gray, size, c0)
    ma = cv2.getRectSubPix(m0.astype(np.float32), size, c0) > 0.5
    mb = cv2.getRectSubPix(m1.astype(np.float32), size, c1) > 0.5
    core = cv2.erode((ma & mb).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2).astype(bool)
    core[:, : half_w // 2] = False  # limbs are foreshortened: match the central half of the object
    core[:, size[0] - half_w // 2 :] = False
    if core.sum() < MIN_PIXELS:
        return None
    ref = a[core] - a[core].mean()
    shifts = np.arange(-max_shift, max_shift + 0.01, 0.5)
    scores = []
    for s in shifts:
        # Texture moved by +s px: the pixel at x in frame t is found at x + s in frame t+1.
        b = cv2.getRectSubPix(next_gray, size, (c1[0] + s, c1[1]))[core]
        b = b - b.mean()
        scores.append(float(ref @ b) / (np.linalg.norm(ref) * np.linalg.norm(b) + 1e-9))
    k = int(np.argmax(scores))
    if k in (0, len(shifts) - 1) or scores[k] < 0.3:  # at the search edge or no texture match: unknown
        return None
    l, c, r = scores[k - 1], scores[k], scores[k + 1]
    denom = l - 2 * c + r
    return float(shifts[k] + (0.5 * 0.5 * (l - r) / denom if denom < 0 else 0.0))


def yaw_rate(grays: list[np.ndarray], masks: list[np.ndarray], depth_z: list[float], widths: list[float],
             bearing: np.ndarray, fx: float, dt: float) -> float:
    """World yaw rate (rad/s, + counter-clockwise seen from above) from texture shifts between frames.

    The shift measures rotation relative to the line of sight; an object that only translates still turns
    relative to that line by its bearing rate, which is added back (``bearing`` per frame, radians,
    counter-clockwise, from the smoothed track).
    """
    rates = []
    for t in range(len(grays) - 1):
        if not np.isfinite(depth_z[t]) or widths[t] <= 0:
            continue
        shift = texture_shift(grays[t], grays[t + 1], masks[t], masks[t + 1])
        if shift is None:
            continue
        apparent = shift * depth_z[t] / (fx * 0.5 * widths[t] * dt)
        rates.append(apparent + (bearing[t + 1] - bearing[t]) / dt)
    return float(np.median(rates)) if len(rates) >= 2 else float("nan")


def bearing_angles(object_centers: np.ndarray, camera_centers: np.ndarray) -> np.ndarray:
    """Counter-clockwise (seen from above) angle of the camera-to-object ray on the ground plane."""
    d = object_centers - camera_centers
    return np.unwrap(np.arctan2(-d[:, 0], d[:, 2]))


def relative_poses(poses: np.ndarray) -> np.ndarray:
    """Re-express camera-to-world poses so that the first one is the identity (world = first camera)."""
    first_inv = np.linalg.inv(poses[0])
    return np.einsum("ij,tjk->tik", first_inv, poses)
