"""Ray casting of a ``SceneSpec``: stereo images and exact ground truth, vectorised with numpy.

Every pixel casts one ray (no anti-aliasing: ground truth is then exact per pixel, and instance masks are
crisp). Rays are parametrised by camera depth (direction z = 1 in the camera), so the ray parameter of the
nearest hit *is* the depth map. Objects are intersected only inside the image rectangle their bounding box
projects to, which keeps the cost of a frame close to that of the ground and backdrop alone. Vectors are
stored as planes (3 x H x W, float32) rather than H x W x 3: numpy is several times faster on contiguous planes.

Surfaces: the ground plane y = camera_height_m, a backdrop cylinder of radius 25 m about the world's vertical
axis (a turning camera always sees texture), and the objects (box, sphere, vertical cylinder). Shading is
Lambert with one fixed light times a procedural texture attached to each surface's own coordinates (object
local coordinates for objects), so texture moves with the surface and flow ground truth is the surface motion.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from components.scenes import motion as mo
from components.scenes import texture
from components.scenes.intersect import hit_object, local_normals
from components.scenes.spec import BACKDROP_RADIUS_M, BACKDROP_RGB, GROUND_RGB, RenderedFrame, SceneSpec

# Texel sizes (metres): fine on objects, coarser on the far backdrop, so that a pixel covers about one texel
# at typical depths and stereo matching sees detail everywhere.
OBJECT_TEXEL, GROUND_TEXEL, BACKDROP_TEXEL = 0.015, 0.03, 0.08
TEXTURE_GAIN = 0.5  # brightness varies by about +-50%; the hue stays that of the albedo
LIGHT = np.array([-0.4, -1.0, -0.5], np.float32) / np.float32(
    np.linalg.norm([-0.4, -1.0, -0.5])
)  # above, front-left
AMBIENT, DIFFUSE = 0.45, 0.6
_BACKDROP, _GROUND = -2, -1  # surface codes; objects use their id (> 0)
_BOX_SIGNS = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=np.float64)
# Per-face texture offsets (texels) so that a box's faces and a sphere's six patches do not repeat each other.
_FACE_OFFSETS = np.array([[0, 0], [97, 31], [41, 173], [199, 67], [13, 111], [151, 223]], np.float32)

Poses = dict[int, tuple[np.ndarray, np.ndarray]]  # object id -> (R world-from-local, centre)


@dataclass
class _Hits:
    depth: np.ndarray  # H x W float32 ray parameter = depth in this camera
    surface: np.ndarray  # H x W int16 surface code
    dirs: np.ndarray  # 3 x H x W float32 world ray directions (camera z component = 1)
    origin: np.ndarray  # camera centre (world, float32)
    rects: dict[int, tuple[slice, slice]]  # object id -> image rectangle it may cover


@lru_cache(maxsize=8)
def _pixel_grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return u, v


@lru_cache(maxsize=8)
def _camera_rays(width: int, height: int, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3 x (H*W) ray directions in the camera, z = 1."""
    u, v = _pixel_grid(width, height)
    return np.stack([(u - cx) / fx, (v - cy) / fy, np.ones_like(u)]).reshape(3, -1)


def _screen_rect(spec: SceneSpec, corners: np.ndarray, cam: np.ndarray) -> tuple[slice, slice] | None:
    uv, z = mo.project(corners, cam, spec.K)
    if (z <= 0.05).any():  # a corner behind the camera: its projection is meaningless, test every pixel
        return slice(0, spec.height), slice(0, spec.width)
    x0, y0 = np.floor(uv.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(uv.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, spec.width), min(y1, spec.height)
    return (slice(y0, y1), slice(x0, x1)) if x1 > x0 and y1 > y0 else None


def object_poses(spec: SceneSpec, t: int) -> Poses:
    return {obj.id: mo.object_pose(spec, obj, t) for obj in spec.objects}


def _cast(spec: SceneSpec, cam: np.ndarray, poses: Poses) -> _Hits:
    """Nearest surface for every pixel of camera ``cam`` (camera-to-world 4 x 4)."""
    h, w = spec.height, spec.width
    rays = _camera_rays(w, h, spec.fx, spec.fy, spec.cx, spec.cy)
    dirs = (cam[:3, :3].astype(np.float32) @ rays).reshape(3, h, w)
    ox, oy, oz = (float(x) for x in cam[:3, 3])
    dx, dy, dz = dirs
    # Backdrop: the camera is inside the cylinder, so the far root is the visible one.
    a = dx * dx + dz * dz
    b = ox * dx + oz * dz
    depth = (np.sqrt(b * b - a * (ox * ox + oz * oz - BACKDROP_RADIUS_M**2)) - b) / np.maximum(a, 1e-9)
    with np.errstate(divide="ignore"):
        ground = (spec.camera_height_m - oy) / dy
    ground[dy <= 1e-6] = np.inf
    surface = np.where(ground < depth, _GROUND, _BACKDROP).astype(np.int16)
    depth = np.minimum(depth, ground)
    rects = {}
    for obj in spec.objects:
        R, centre = poses[obj.id]
        rect = _screen_rect(spec, (_BOX_SIGNS * (0.5 * np.asarray(obj.size))) @ R.T + centre, cam)
        if rect is None:
            continue
        rects[obj.id] = rect
        sub = dirs[:, rect[0], rect[1]]
        d_local = R.T.astype(np.float32) @ sub.reshape(3, -1)
        o_local = R.T @ (cam[:3, 3] - centre)
        t_hit = hit_object(obj.shape, obj.size, o_local, d_local).reshape(sub.shape[1:])
        closer = t_hit < depth[rect]
        depth[rect][closer] = t_hit[closer]
        surface[rect][closer] = obj.id
    return _Hits(depth, surface, dirs, cam[:3, 3].astype(np.float32), rects)


def _points(hits: _Hits) -> np.ndarray:
    return hits.origin[:, None, None] + hits.depth[None] * hits.dirs


def _shade(spec: SceneSpec, hits: _Hits, poses: Poses) -> np.ndarray:
    """RGB uint8 image from the hits: albedo x Lambert x (1 + gain x texture)."""
    depth, surface, dirs = hits.depth, hits.surface, hits.dirs
    h, w = depth.shape
    u, v = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    footprint, shade = np.ones((h, w), np.float32), np.ones((h, w), np.float32)
    points = _points(hits)
    ray_len = np.sqrt(dirs[0] * dirs[0] + dirs[1] * dirs[1] + dirs[2] * dirs[2])
    # Footprint (texels per pixel) = distance / (fx cos(incidence) texel); distance = depth * |ray|.
    # The camera never pitches or rolls, so the backdrop is a band of top rows and the ground a band of
    # bottom rows: computing each only over its rows halves the work.
    rows = np.flatnonzero((surface == _BACKDROP).any(axis=1))
    if rows.size:
        band = slice(0, rows[-1] + 1)
        px, py, pz = points[:, band]
        u[band] = np.arctan2(px, pz) * np.float32(
            BACKDROP_RADIUS_M / BACKDROP_TEXEL
        )  # seam behind the camera
        v[band] = py * np.float32(1 / BACKDROP_TEXEL)
        cos = np.abs(px * dirs[0, band] + pz * dirs[2, band]) / (BACKDROP_RADIUS_M * ray_len[band])
        footprint[band] = depth[band] * ray_len[band] / (spec.fx * BACKDROP_TEXEL * np.maximum(cos, 0.1))
    rows = np.flatnonzero((surface == _GROUND).any(axis=1))
    if rows.size:
        band = slice(rows[0], h)
        keep = surface[band] == _BACKDROP
        u[band] = np.where(keep, u[band], points[0, band] * np.float32(1 / GROUND_TEXEL))
        v[band] = np.where(keep, v[band], points[2, band] * np.float32(1 / GROUND_TEXEL))
        cos = np.maximum(dirs[1, band] / ray_len[band], 0.05)
        fp = depth[band] * ray_len[band] / (spec.fx * GROUND_TEXEL * cos)
        footprint[band] = np.where(keep, footprint[band], fp)
        shade[band] = np.where(keep, 1.0, np.float32(AMBIENT + DIFFUSE * max(-float(LIGHT[1]), 0.0)))
    albedo = np.empty((len(spec.objects) + 2, 3), np.float32)
    albedo[0], albedo[1] = BACKDROP_RGB, GROUND_RGB
    for obj in spec.objects:
        albedo[obj.id + 1] = obj.rgb
        rect = hits.rects.get(obj.id)
        if rect is None:
            continue
        mask = surface[rect] == obj.id
        if not mask.any():
            continue
        R, centre = poses[obj.id]
        Rf = R.astype(np.float32)
        p = Rf.T @ (points[:, rect[0], rect[1]][:, mask] - centre.astype(np.float32)[:, None])  # object frame
        n = local_normals(obj.shape, obj.size, p)
        axis = np.abs(n).argmax(axis=0)
        face = 2 * axis + (n[axis, np.arange(n.shape[1])] > 0)
        # Texture coordinates: the two coordinates across the dominant normal axis (a cube map).
        u[rect][mask] = (
            np.where(axis == 0, p[2], p[0]) / OBJECT_TEXEL + _FACE_OFFSETS[face, 0] + obj.tex_offset[0]
        )
        v[rect][mask] = (
            np.where(axis == 1, p[2], p[1]) / OBJECT_TEXEL + _FACE_OFFSETS[face, 1] + obj.tex_offset[1]
        )
        n_world = Rf @ n
        d = dirs[:, rect[0], rect[1]][:, mask]
        r = ray_len[rect][mask]
        cos = np.abs((n_world * d).sum(axis=0)) / r
        footprint[rect][mask] = depth[rect][mask] * r / (spec.fx * OBJECT_TEXEL * np.maximum(cos, 0.1))
        shade[rect][mask] = AMBIENT + DIFFUSE * np.maximum(LIGHT @ n_world, 0.0)
    intensity = shade * (1.0 + TEXTURE_GAIN * texture.sample(u, v, footprint))
    code = np.where(surface < 0, surface + 2, surface + 1)
    planes = [np.take(albedo[:, c] * 255.0, code) * intensity for c in range(3)]
    return cv2.convertScaleAbs(cv2.merge(planes))  # rounds and saturates to uint8 in one pass


def _flow(spec: SceneSpec, hits: _Hits, t: int, poses: Poses) -> np.ndarray:
    """Forward flow t -> t+1 of the left view: move each pixel's surface point with its object, re-project."""
    points = _points(hits)
    nxt = object_poses(spec, t + 1)
    for obj in spec.objects:
        rect = hits.rects.get(obj.id)
        if not obj.moving or rect is None:
            continue
        mask = hits.surface[rect] == obj.id
        (R0, c0), (R1, c1) = poses[obj.id], nxt[obj.id]
        # The point keeps its object-frame coordinates: P' = R1 R0^T (P - c0) + c1 = M P + (c1 - M c0).
        M = R1 @ R0.T
        sub = points[:, rect[0], rect[1]]
        sub[:, mask] = M.astype(np.float32) @ sub[:, mask] + (c1 - M @ c0).astype(np.float32)[:, None]
    cam = mo.camera_pose(spec, t + 1)
    world_to_cam = cam[:3, :3].T
    local = (
        world_to_cam.astype(np.float32) @ points.reshape(3, -1)
        - (world_to_cam @ cam[:3, 3]).astype(np.float32)[:, None]
    )
    u, v = _pixel_grid(spec.width, spec.height)
    fu = (spec.fx * local[0] / local[2] + spec.cx).reshape(u.shape) - u
    fv = (spec.fy * local[1] / local[2] + spec.cy).reshape(u.shape) - v
    return cv2.merge([fu.astype(np.float32), fv.astype(np.float32)])


def render_frame(spec: SceneSpec, t: int) -> RenderedFrame:
    """Left and right images of frame ``t`` with the left view's depth, instances, flow and motion mask."""
    if not 0 <= t < spec.num_frames:
        raise IndexError(f"{spec.clip_id}: frame {t} outside 0..{spec.num_frames - 1}")
    poses = object_poses(spec, t)
    cam_left = mo.camera_pose(spec, t)
    cam_right = cam_left.copy()
    cam_right[:3, 3] += cam_left[:3, :3] @ np.array([spec.baseline_m, 0.0, 0.0])  # rectified: same rotation
    left_hits = _cast(spec, cam_left, poses)
    right_hits = _cast(spec, cam_right, poses)
    if t + 1 < spec.num_frames:
        flow = _flow(spec, left_hits, t, poses)
    else:
        flow = np.zeros((spec.height, spec.width, 2), np.float32)
    moving = [obj.id for obj in spec.objects if obj.moving]
    return RenderedFrame(
        left=_shade(spec, left_hits, poses),
        right=_shade(spec, right_hits, poses),
        depth=left_hits.depth,
        instance=np.maximum(left_hits.surface, 0).astype(np.uint8),
        flow=flow,
        motion=np.isin(left_hits.surface, moving),
    )
