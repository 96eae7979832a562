"""Ray-object intersection in the object's own frame, for many rays at once.

Rays are planes of directions (3 x N float32) from one origin (3,). Each function returns the ray parameter of
the first hit in front of the origin (N,), +inf where the ray misses. Working in the object frame turns a yawed
box into an axis-aligned one and a cylinder into one about the local y axis.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-4  # hits closer than this are the origin itself


def _box(o: np.ndarray, d: np.ndarray, half: np.ndarray) -> np.ndarray:
    # Slab method: entering all three slabs before leaving any of them.
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (-half - o)[:, None].astype(np.float32) * inv
        t2 = (half - o)[:, None].astype(np.float32) * inv
        near = np.minimum(t1, t2).max(axis=0)
        far = np.maximum(t1, t2).min(axis=0)
    return np.where((near <= far) & (near > _EPS), near, np.float32(np.inf))


def _sphere(o: np.ndarray, d: np.ndarray, r: float) -> np.ndarray:
    ox, oy, oz = (float(x) for x in o)
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = ox * d[0] + oy * d[1] + oz * d[2]
    disc = b * b - a * (ox * ox + oy * oy + oz * oz - r * r)
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    return np.where((disc >= 0) & (t > _EPS), t, np.float32(np.inf))


def _cylinder(o: np.ndarray, d: np.ndarray, r: float, half_h: float) -> np.ndarray:
    ox, oy, oz = (float(x) for x in o)
    dx, dy, dz = d
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    disc = b * b - a * (ox * ox + oz * oz - r * r)
    with np.errstate(invalid="ignore", divide="ignore"):
        side = (-b - np.sqrt(disc)) / a
        best = np.where(
            (disc >= 0) & (side > _EPS) & (np.abs(oy + side * dy) <= half_h), side, np.float32(np.inf)
        )
        for cap_y in (-half_h, half_h):
            t = (cap_y - oy) / dy
            x, z = ox + t * dx, oz + t * dz
            best = np.minimum(best, np.where((t > _EPS) & (x * x + z * z <= r * r), t, np.float32(np.inf)))
    return best


def hit_object(shape: str, size: tuple[float, float, float], o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """First hit of rays (origin ``o``, directions ``d`` 3 x N) with a ``shape`` of extents ``size``, centred."""
    if shape == "cube":
        return _box(o, d, 0.5 * np.asarray(size))
    if shape == "sphere":
        return _sphere(o, d, 0.5 * size[0])
    if shape == "cylinder":
        return _cylinder(o, d, 0.5 * size[0], 0.5 * size[1])
    raise ValueError(f"unknown shape {shape!r}")


def local_normals(shape: str, size: tuple[float, float, float], p: np.ndarray) -> np.ndarray:
    """Outward unit normals (3 x N, object frame) at surface points ``p`` (3 x N, object frame)."""
    half = 0.5 * np.asarray(size, dtype=np.float32)
    if shape == "sphere":
        return p / half[0]
    n = np.zeros_like(p)
    if shape == "cube":
        # The face is the axis along which the point is relatively farthest out.
        axis = np.abs(p / half[:, None]).argmax(axis=0)
        cols = np.arange(p.shape[1])
        n[axis, cols] = np.sign(p[axis, cols])
        return n
    radial = np.hypot(p[0], p[2]) / half[0]
    cap = np.abs(p[1]) / half[1] > radial  # cylinder: a cap where height is relatively larger than radius
    n[0] = np.where(cap, 0, p[0] / half[0])
    n[2] = np.where(cap, 0, p[2] / half[0])
    n[1] = np.where(cap, np.sign(p[1]), 0)
    return n
