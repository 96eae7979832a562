"""Camera motion from rectified stereo video: T frames -> T camera-to-world poses (stereo visual odometry).

``estimate_poses(left, right, K=, baseline=)`` gives the left camera's camera-to-world pose per frame (frame 0
the identity, OpenCV axes). Curation needs the camera's own motion to put objects into one world frame
and to ask about the camera ("did the camera turn left?"); clips without poses in ``meta.json`` (real
stereo video) get them from here. When the motion cannot be measured it raises ``OdometryError`` naming
the frame pair and the count that fell short, and curation refuses the clip rather than guess.

How (classical stereo visual odometry, all OpenCV + numpy):

1. **Corners** (``goodFeaturesToTrack``, spaced ``feature_spacing_px`` apart) in the left image of a
   keyframe, each **stereo-matched** along its scanline (pyramidal Lucas-Kanade on the right image,
   forward-backward and same-row checks), or read from ``disparities=`` when the caller has the maps.
2. **Tracking from the keyframe's image** to each later frame (pyramidal LK seeded by a constant-velocity
   prediction, forward-backward check), not frame to frame: on the synthetic clips' slow motion (a
   fraction of a pixel per frame on the ground) frame-to-frame drift along the tracks was the largest
   error (8.8% -> 0.7% of the distance on scene_0038). A new keyframe (and new corners) after
   ``keyframe_gap`` frames or when the inliers fall below ``keyframe_ratio`` of its 3D points.
3. **Pose**: P3P RANSAC (``solvePnPRansac``) on the left image, then Gauss-Newton with a Huber loss on the
   reprojection error in BOTH images of the new frame (stereo PnP: the right image's u pins the scale).
   Moving objects are outliers: a track whose error exceeds ``inlier_px`` is dropped for good.
4. Optional **bundle adjustment** (``ba_window`` > 0): poses and points over sliding windows, both images,
   Levenberg-Marquardt on a dense Schur complement. Off by default: with keyframe tracking it did not
   help on the synthetic clips (median translation error 0.51% with it, 0.41% without, on clips 0-39) nor
   on Karlsruhe, and it costs ~3 ms a frame.

Departure from MLLM-4D: the paper takes camera poses from learned depth/pose models. No weights can be
downloaded here, so this is classical sparse stereo odometry; it needs texture and a static majority of
the view, and says so (``OdometryError``) when it does not have them.

Measured (``benchmarks/odometry.py``, ``benchmarks/results/odometry.json``):

- Synthetic clips (144, 160x120, 16 frames): translation error at the last frame 0.61% of the distance
  (median; p90 1.88%; 65% of the 82 moving clips meet the 1% goal; worst 12.5%, scene_0071); heading error
  0.011 deg median (p90 0.04; 99% within 0.5 deg); static cameras drift 1.5 mm median (worst 8 cm, a
  transient excursion in scene_0113). With ``disparities=`` from ``estimate_disparity``: 0.89% / 1.73%,
  63% meeting the goal (the dense maps are less precise at corners than the sparse LK match).
- Karlsruhe 2010_03_09_drive_0023 (real, 1344x372, 16-frame windows vs GPS/INS): with
  ``max_features=1000, feature_spacing_px=10`` (the defaults are sized for 160x120 clips) heading change
  within 0.29 deg in every window; distance travelled +1.0% to +2.7% over the first 35 frames, but +5% to
  +9% over the last 20 frames, where the INS reports the car slowing from 12 to 7 m/s and the odometry
  from 13 to 8.5 m/s (an offset in speed, not a scale factor: not resolved whether the INS or the
  odometry is at fault there).
- Speed, one core: 193 frames/s at 160x120 (5.2 ms a frame, 0.82x the time of ``estimate_disparity``),
  326 frames/s with ``disparities=`` (0.48x); 53 frames/s at 1344x372 (0.06x the stereo matcher's time).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import sparse

from components.config import OdometryConfig
from components.curation.stereo import check_stereo_video

log = logging.getLogger(__name__)


class OdometryError(ValueError):
    """The camera motion cannot be estimated from these frames; ``str()`` says where and why."""


# ---------------------------------------------------------------------------------------------------------
# Input checks


def _check_inputs(left: object, right: object, K: object, baseline: object,
                  disparities: object) -> tuple[np.ndarray, float, np.ndarray | None]:
    """Validate everything before any work; return K (float64), the baseline and the disparities (or None)."""
    t, h, w = check_stereo_video(left, right, min_frames=1, min_size=16, what="odometry")
    try:
        k = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"K must be a 3x3 intrinsic matrix of numbers, got {K!r}") from None
    if k.shape != (3, 3):
        raise ValueError(f"K must be 3x3, got shape {k.shape}")
    if not np.isfinite(k).all():
        raise ValueError(f"K must be finite, got {k.tolist()}")
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ValueError(f"K's focal lengths must be > 0, got fx={k[0, 0]}, fy={k[1, 1]}")
    if k[0, 1] != 0 or k[1, 0] != 0 or k[2, 0] != 0 or k[2, 1] != 0 or k[2, 2] != 1:
        raise ValueError(f"K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew), got {k.tolist()}")
    try:
        b = math.nan if isinstance(baseline, bool) else float(baseline)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"baseline must be a number of metres, got {baseline!r}") from None
    if not math.isfinite(b) or b <= 0:
        raise ValueError(f"baseline must be finite and > 0 metres, got {baseline!r}")
    disp = None
    if disparities is not None:
        disp = np.asarray(disparities)
        if disp.shape != (t, h, w):
            raise ValueError(f"disparities must be T x H x W = {(t, h, w)} (one map per frame), got {disp.shape}")
        if not np.issubdtype(disp.dtype, np.floating):
            raise ValueError(f"disparities must be float pixels (NaN where invalid), got {disp.dtype}")
    return k, b, disp


# ---------------------------------------------------------------------------------------------------------
# Geometry: points in a camera, [u_left, v, u_right] observations, and their derivatives


@dataclass(frozen=True)
class _Rig:
    fx: float
    fy: float
    cx: float
    cy: float
    baseline: float

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], np.float64)

    def triangulate(self, pts: np.ndarray, disp: np.ndarray) -> np.ndarray:
        """Left-camera 3D points (N x 3) of left pixels ``pts`` with disparities ``disp`` (NaN stays NaN)."""
        z = self.fx * self.baseline / disp
        return np.stack([(pts[:, 0] - self.cx) * z / self.fx, (pts[:, 1] - self.cy) * z / self.fy, z], axis=1)

    def project(self, Xc: np.ndarray) -> np.ndarray:
        """Camera points (N x 3) -> N x 3 [u_left, v, u_right] pixels."""
        iz = 1.0 / Xc[:, 2]
        u = self.fx * Xc[:, 0] * iz + self.cx
        return np.stack([u, self.fy * Xc[:, 1] * iz + self.cy, u - self.fx * self.baseline * iz], axis=1)

    def jacobians(self, Xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """d[u_left, v, u_right] / d(pose) (N x 3 x 6) and / dXc (N x 3 x 3) at camera points ``Xc``.

        The pose is perturbed on the left, ``Xc' = Xc + w x Xc + dt``, parameters ``[w, dt]``.
        """
        x, y = Xc[:, 0], Xc[:, 1]
        iz = 1.0 / Xc[:, 2]
        xn, yn, xrn = x * iz, y * iz, (x - self.baseline) * iz
        fx, fy = self.fx, self.fy
        J = np.zeros((len(Xc), 3, 6))
        # Rows u_left, v, u_right; columns w (rotation) then t (= d/dXc).
        J[:, 0, 0], J[:, 0, 1], J[:, 0, 2] = -fx * xn * yn, fx * (1 + xn * xn), -fx * yn
        J[:, 1, 0], J[:, 1, 1], J[:, 1, 2] = -fy * (1 + yn * yn), fy * xn * yn, fy * xn
        J[:, 2, 0], J[:, 2, 1], J[:, 2, 2] = -fx * xrn * yn, fx * (1 + xrn * xn), -fx * yn
        J[:, 0, 3], J[:, 0, 5] = fx * iz, -fx * xn * iz
        J[:, 1, 4], J[:, 1, 5] = fy * iz, -fy * yn * iz
        J[:, 2, 3], J[:, 2, 5] = fx * iz, -fx * xrn * iz
        return J, J[:, :, 3:]


def _rotation(w: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(w, np.float64).reshape(3, 1))[0]


def _huber(err: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-observation Huber cost and IRLS weight of error norms ``err``."""
    lin = err > scale
    cost = np.where(lin, 2 * scale * err - scale * scale, err * err)
    return cost, np.where(lin, scale / np.maximum(err, 1e-12), 1.0)


def _residuals(rig: _Rig, Xc: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residuals (N x 3, zero where unobserved) and each observation's RMS error; inf behind the camera."""
    front = Xc[:, 2] > 1e-3
    res = (rig.project(np.where(front[:, None], Xc, 1.0)) - target) * mask
    err = np.sqrt((res * res).sum(1) / np.maximum(mask.sum(1), 1.0))
    err[~front] = np.inf
    res[~front] = 0.0
    return res, err


def _targets(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[u_left, v, u_right (NaN: no stereo)] -> targets with NaN zeroed, and the 0/1 mask of observed ones."""
    mask = np.ones_like(obs)
    mask[:, 2] = np.isfinite(obs[:, 2])
    return np.nan_to_num(obs), mask


def _stereo_pnp(rig: _Rig, X: np.ndarray, obs: np.ndarray, R: np.ndarray, t: np.ndarray, iterations: int,
                huber: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gauss-Newton (Huber IRLS) on the reprojection error in BOTH images of a frame (stereo PnP).

    ``X``: N x 3 points in the reference camera; ``obs``: their [u_left, v, u_right] in this frame.
    Returns R, t (``X_cam = R X + t``) and each point's RMS error in pixels.
    """
    target, mask = _targets(obs)
    for _ in range(iterations):
        Xc = X @ R.T + t
        res, err = _residuals(rig, Xc, target, mask)
        _, w = _huber(err, huber)
        w[~np.isfinite(err)] = 0.0
        J, _ = rig.jacobians(np.where(np.isfinite(err)[:, None], Xc, 1.0))
        J = (J * mask[:, :, None]).reshape(-1, 6)
        w3 = np.repeat(w, 3)
        H = (J * w3[:, None]).T @ J
        g = (J * w3[:, None]).T @ res.ravel()
        try:
            step = -np.linalg.solve(H + 1e-9 * np.eye(6), g)
        except np.linalg.LinAlgError:
            break
        dR = _rotation(step[:3])
        R, t = dR @ R, dR @ t + step[3:]
        if np.abs(step).max() < 1e-8:
            break
    _, err = _residuals(rig, X @ R.T + t, target, mask)
    return R, t, err


# ---------------------------------------------------------------------------------------------------------
# Image measurements


def _lk(prev: np.ndarray, nxt: np.ndarray, pts: np.ndarray, guess: np.ndarray, levels: int,
        cfg: OdometryConfig, check: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Pyramidal Lucas-Kanade ``prev`` -> ``nxt`` from ``guess``, with a forward-backward check."""
    if len(pts) == 0:
        return pts.copy(), np.zeros(0, bool)
    win = (cfg.lk_window, cfg.lk_window)
    crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.01)
    p0 = np.ascontiguousarray(pts, np.float32).reshape(-1, 1, 2)
    p1, st, _ = cv2.calcOpticalFlowPyrLK(prev, nxt, p0, np.ascontiguousarray(guess, np.float32).reshape(-1, 1, 2),
                                         winSize=win, maxLevel=levels, criteria=crit,
                                         flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    ok = st.ravel() == 1
    if check:
        back, st2, _ = cv2.calcOpticalFlowPyrLK(nxt, prev, p1, p0.copy(), winSize=win, maxLevel=min(levels, 1),
                                                criteria=crit, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        ok &= (st2.ravel() == 1) & (np.abs(back.reshape(-1, 2) - pts).max(1) <= cfg.fb_max_px)
    p1 = p1.reshape(-1, 2).astype(np.float64)
    h, w = prev.shape
    ok &= (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
    return p1, ok


def _stereo_lk(gl: np.ndarray, gr: np.ndarray, pts: np.ndarray, guess: np.ndarray,
               cfg: OdometryConfig) -> np.ndarray:
    """Disparity (N, NaN where unmatched) of left pixels ``pts``: LK on the right image from ``guess``
    (NaN: no guess, searched from zero through ``stereo_levels`` pyramid levels)."""
    disp = np.full(len(pts), np.nan)
    for has_guess, levels in ((True, cfg.lk_levels), (False, cfg.stereo_levels)):
        sel = np.isfinite(guess) == has_guess
        if not sel.any():
            continue
        start = pts[sel].copy()
        start[:, 0] -= np.nan_to_num(guess[sel], nan=0.0)
        right, ok = _lk(gl, gr, pts[sel], start, levels, cfg)
        d = pts[sel, 0] - right[:, 0]
        ok &= (np.abs(right[:, 1] - pts[sel, 1]) <= cfg.max_row_px) & (d >= cfg.min_disparity_px)
        disp[sel] = np.where(ok, d, np.nan)
    return disp


def _sample(disp_map: np.ndarray, pts: np.ndarray, cfg: OdometryConfig) -> np.ndarray:
    """Bilinear disparity from a map at ``pts``; NaN where a neighbour is invalid or they disagree by more
    than a pixel (a depth edge, where interpolation would invent a depth in between)."""
    h, w = disp_map.shape
    x0 = np.clip(np.floor(pts[:, 0]).astype(int), 0, w - 2)
    y0 = np.clip(np.floor(pts[:, 1]).astype(int), 0, h - 2)
    fx, fy = pts[:, 0] - x0, pts[:, 1] - y0
    q = np.stack([disp_map[y0, x0], disp_map[y0, x0 + 1], disp_map[y0 + 1, x0], disp_map[y0 + 1, x0 + 1]], 1)
    q = q.astype(np.float64)
    d = (q[:, 0] * (1 - fx) + q[:, 1] * fx) * (1 - fy) + (q[:, 2] * (1 - fx) + q[:, 3] * fx) * fy
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(d) | (q.max(1) - q.min(1) > 1.0) | (d < cfg.min_disparity_px)
    return np.where(bad, np.nan, d)


def _detect(gray: np.ndarray, existing: np.ndarray, cfg: OdometryConfig) -> np.ndarray:
    """New corners (N x 2) at least ``feature_spacing_px`` away from the ``existing`` ones."""
    room = cfg.max_features - len(existing)
    if room <= 0:
        return np.zeros((0, 2))
    taken = np.zeros(gray.shape, np.uint8)
    xy = np.rint(existing).astype(int)
    taken[np.clip(xy[:, 1], 0, gray.shape[0] - 1), np.clip(xy[:, 0], 0, gray.shape[1] - 1)] = 255
    r = cfg.feature_spacing_px
    mask = 255 - cv2.dilate(taken, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    # Corners within the LK window of the border cannot be tracked reliably.
    m = cfg.lk_window // 2 + 1
    mask[:m], mask[-m:], mask[:, :m], mask[:, -m:] = 0, 0, 0, 0
    found = cv2.goodFeaturesToTrack(gray, maxCorners=room, qualityLevel=cfg.quality_level,
                                    minDistance=cfg.feature_spacing_px, mask=mask, blockSize=5)
    return np.zeros((0, 2)) if found is None else found.reshape(-1, 2).astype(np.float64)


# ---------------------------------------------------------------------------------------------------------
# Front end: tracks and frame-to-frame poses


@dataclass
class _Observations:
    """Every inlier observation so far: frame, track id and [u_left, v, u_right (NaN: no stereo)]."""

    frames: list[np.ndarray]
    tracks: list[np.ndarray]
    uvr: list[np.ndarray]

    def add(self, frame: int, ids: np.ndarray, pts: np.ndarray, disp: np.ndarray) -> None:
        self.frames.append(np.full(len(ids), frame, np.int64))
        self.tracks.append(ids.copy())
        self.uvr.append(np.column_stack([pts, pts[:, 0] - disp]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.concatenate(self.frames), np.concatenate(self.tracks), np.concatenate(self.uvr)


def _ransac(rig: _Rig, X: np.ndarray, uv: np.ndarray, cfg: OdometryConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """P3P RANSAC on the left image: a first pose that moving objects and mismatches cannot drag."""
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(
        X, uv, rig.K, None, iterationsCount=cfg.ransac_iterations, reprojectionError=cfg.ransac_px,
        confidence=0.999, flags=cv2.SOLVEPNP_AP3P)
    if not ok or inliers is None or len(inliers) < 6:
        return None
    return _rotation(rvec), tvec.ravel()


def _track(rig: _Rig, gray_l: list[np.ndarray], gray_r: list[np.ndarray], disp_maps: np.ndarray | None,
           cfg: OdometryConfig) -> tuple[np.ndarray, _Observations, set[int]]:
    """Track corners from a keyframe; stereo PnP of each frame against the keyframe's 3D points.

    Corners are tracked from the keyframe's image, not the previous frame's, so a track's position does
    not drift by a little every frame: on slow motion (a fraction of a pixel per frame) that drift was
    the largest error. Returns world-to-camera poses (T x 4 x 4), the inlier observations and the ids of
    tracks found to be outliers.
    """
    n = len(gray_l)
    obs = _Observations([], [], [])
    bad: set[int] = set()
    poses_cw = np.tile(np.eye(4), (n, 1, 1))
    next_id = 0

    def stereo(t: int, pts: np.ndarray, guess: np.ndarray) -> np.ndarray:
        if disp_maps is not None:
            return _sample(disp_maps[t], pts, cfg)
        return _stereo_lk(gray_l[t], gray_r[t], pts, guess, cfg)

    def keyframe(t: int, ids: np.ndarray, pts: np.ndarray, disp: np.ndarray):
        """Frame ``t`` becomes the keyframe: top up the corners (their first observation) and triangulate."""
        nonlocal next_id
        new = _detect(gray_l[t], pts, cfg) if len(ids) < cfg.redetect_ratio * cfg.max_features else np.zeros((0, 2))
        new_ids = np.arange(next_id, next_id + len(new))
        next_id += len(new)
        new_disp = stereo(t, new, np.full(len(new), np.nan))
        obs.add(t, new_ids, new, new_disp)
        ids, pts, disp = np.concatenate([ids, new_ids]), np.concatenate([pts, new]), np.concatenate([disp, new_disp])
        X = rig.triangulate(pts, disp)
        if np.isfinite(X[:, 2]).sum() < cfg.min_inliers:
            raise OdometryError(f"frame {t}: {int(np.isfinite(X[:, 2]).sum())} corners with a stereo match, "
                                f"need >= {cfg.min_inliers} (too little texture, or no stereo overlap)")
        return ids, pts, X

    k = 0
    ids, pts_k, X = keyframe(0, np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0))
    n_key = int(np.isfinite(X[:, 2]).sum())
    pts_prev = pts_k.copy()
    R_rel, t_rel = np.eye(3), np.zeros(3)  # keyframe camera -> previous camera: X_cam = R X_key + t
    R_vel, t_vel = np.eye(3), np.zeros(3)  # camera t - 2 -> camera t - 1: the constant-velocity guess
    for t in range(1, n):
        where = f"frame {t - 1} -> {t}"
        R_pred, t_pred = R_vel @ R_rel, R_vel @ t_rel + t_vel
        has_3d = np.isfinite(X[:, 2])
        X_pred = X @ R_pred.T + t_pred
        guess = pts_prev.copy()
        front = has_3d & (X_pred[:, 2] > 1e-3)
        guess[front] = rig.project(X_pred[front])[:, :2]
        pts, ok = _lk(gray_l[k], gray_l[t], pts_k, guess, cfg.lk_levels, cfg)
        ids, pts_k, pts, X, X_pred = ids[ok], pts_k[ok], pts[ok], X[ok], X_pred[ok]
        has_3d = np.isfinite(X[:, 2])
        if has_3d.sum() < cfg.min_inliers:
            raise OdometryError(f"{where}: {int(has_3d.sum())} corners tracked with depth, need >= "
                                f"{cfg.min_inliers} (too little texture, or the view changed too much)")
        with np.errstate(divide="ignore", invalid="ignore"):
            d_guess = np.where(X_pred[:, 2] > 1e-3, rig.fx * rig.baseline / X_pred[:, 2], np.nan)
        disp = stereo(t, pts, d_guess)
        uvr = np.column_stack([pts, pts[:, 0] - disp])
        first = _ransac(rig, X[has_3d], pts[has_3d], cfg)
        R0, t0 = first if first is not None else (R_pred, t_pred)
        R, tv, err = _stereo_pnp(rig, X[has_3d], uvr[has_3d], R0, t0, 5, cfg.huber_px)
        inl = err <= cfg.inlier_px
        if inl.sum() < cfg.min_inliers:
            raise OdometryError(f"{where}: {int(inl.sum())} inlier tracks, need >= {cfg.min_inliers}")
        if cfg.ba_window == 0:  # (bundle adjustment refits everything anyway)
            # Refit on the inliers only: the Huber tails of the outliers still pull a little.
            R, tv, _ = _stereo_pnp(rig, X[has_3d][inl], uvr[has_3d][inl], R, tv, 3, cfg.huber_px)
        step = np.eye(4)
        step[:3, :3], step[:3, 3] = R, tv
        poses_cw[t] = step @ poses_cw[k]
        R_vel, t_vel = R @ R_rel.T, tv - R @ R_rel.T @ t_rel
        R_rel, t_rel = R, tv
        # Tracks that disagree with the motion (moving objects, drifted tracks) are dropped for good.
        out = np.flatnonzero(has_3d)[~inl]
        bad.update(ids[out].tolist())
        keep = np.ones(len(ids), bool)
        keep[out] = False
        ids, pts_k, pts, disp, X = ids[keep], pts_k[keep], pts[keep], disp[keep], X[keep]
        obs.add(t, ids, pts, disp)
        pts_prev = pts
        if t < n - 1 and (int(inl.sum()) < cfg.keyframe_ratio * n_key or t - k >= cfg.keyframe_gap):
            k = t
            ids, pts_k, X = keyframe(t, ids, pts, disp)
            pts_prev = pts_k.copy()
            n_key = int(np.isfinite(X[:, 2]).sum())
            R_rel, t_rel = np.eye(3), np.zeros(3)
    return poses_cw, obs, bad


# ---------------------------------------------------------------------------------------------------------
# Back end: bundle adjustment


def _segment_sum(values: np.ndarray, index: np.ndarray, count: int) -> np.ndarray:
    """Sum rows of ``values`` (N x ...) into ``count`` bins by ``index`` (a sparse product, fast)."""
    m = sparse.csr_matrix((np.ones(len(index)), (index, np.arange(len(index)))), shape=(count, len(index)))
    return np.asarray(m @ values.reshape(len(index), -1)).reshape((count, *values.shape[1:]))


def _bundle_adjust(rig: _Rig, poses_cw: np.ndarray, free: np.ndarray, fi: np.ndarray, pi: np.ndarray,
                   uvr: np.ndarray, cfg: OdometryConfig) -> np.ndarray:
    """Levenberg-Marquardt on poses and points, reprojection error in both images, Huber loss.

    ``poses_cw``: F x 4 x 4 world-to-camera of the window's frames, ``free`` which of them move; observation
    k sees point ``pi[k]`` in frame ``fi[k]`` at ``uvr[k]``. Points start from their stereo triangulations.
    Dense Schur complement on the poses: a window holds few frames. Returns the poses and the point
    RMS reprojection error of each observation.
    """
    F, M = len(poses_cw), int(pi.max()) + 1
    target, mask = _targets(uvr)
    R, t = poses_cw[:, :3, :3].copy(), poses_cw[:, :3, 3].copy()
    # Points: the inverse-variance-weighted mean of their stereo triangulations in the world (depth
    # variance grows as 1 / d^4).
    has_d = mask[:, 2] > 0
    d = uvr[has_d, 0] - uvr[has_d, 2]
    Xc = rig.triangulate(uvr[has_d, :2], d)
    Xw = np.einsum("nji,nj->ni", R[fi[has_d]], Xc - t[fi[has_d]])  # R^T (Xc - t)
    wgt = (d / d.max()) ** 4
    X = _segment_sum(Xw * wgt[:, None], pi[has_d], M) / _segment_sum(wgt, pi[has_d], M)[:, None]

    def evaluate(R: np.ndarray, t: np.ndarray, X: np.ndarray):
        Xc = (R[fi] @ X[pi][:, :, None])[:, :, 0] + t[fi]
        res, err = _residuals(rig, Xc, target, mask)
        cost, w = _huber(err, cfg.huber_px)
        return Xc, res, err, float(cost[np.isfinite(cost)].sum()) + 1e6 * float((~np.isfinite(err)).sum()), w

    free_idx = np.flatnonzero(free)
    Ff = len(free_idx)
    # Column of each observation's frame among the free ones (-1: fixed frame, no pose block).
    slot = np.full(F, -1)
    slot[free_idx] = np.arange(Ff)
    fs = slot[fi]
    on_free = fs >= 0
    Xc, res, err, cost, w = evaluate(R, t, X)
    lam = 1e-4
    rejected, converged = False, False
    for it in range(cfg.ba_iterations):
        if (converged or it == cfg.ba_iterations // 2) and not rejected:
            # Once: tracks the adjusted geometry misses by more than ``inlier_px`` somewhere (slow
            # movers that passed frame to frame, drifted tracks) leave the adjustment.
            rejected = True
            wrong = np.isin(pi, np.unique(pi[~(err <= cfg.inlier_px)]))
            if wrong.any():
                mask[wrong] = 0.0
                Xc, res, err, cost, w = evaluate(R, t, X)
                converged = False
        if converged:
            break
        w = np.where(np.isfinite(err), w, 0.0)
        Jp, Jc = rig.jacobians(np.where(np.isfinite(err)[:, None], Xc, 1.0))
        Jp = Jp * mask[:, :, None]
        Jl = (Jc * mask[:, :, None]) @ R[fi]  # d/dX = d/dXc @ R
        JpwT = (Jp * w[:, None, None]).transpose(0, 2, 1)
        JlwT = (Jl * w[:, None, None]).transpose(0, 2, 1)
        Hpp = _segment_sum(JpwT @ Jp, fi, F)[free_idx]
        Hll = _segment_sum(JlwT @ Jl, pi, M)
        Hpl = (JpwT @ Jl)[on_free]  # 6 x 3 per observation in a free frame
        gp = _segment_sum((JpwT @ res[:, :, None])[:, :, 0], fi, F)[free_idx]
        gl = _segment_sum((JlwT @ res[:, :, None])[:, :, 0], pi, M)
        # Dense (free frames x 6) x (points x 3) layout of Hpl: one block per observation.
        rows = (fs[on_free, None] * 6 + np.arange(6))[:, :, None]
        cols = (pi[on_free, None] * 3 + np.arange(3))[:, None, :]
        while True:
            Hll_inv = np.linalg.inv(Hll + lam * (Hll * np.eye(3)) + 1e-9 * np.eye(3))
            C = Hpl @ Hll_inv[pi[on_free]]
            Bm = np.zeros((Ff * 6, M * 3))
            Cm = np.zeros((Ff * 6, M * 3))
            Bm[rows, cols] = Hpl
            Cm[rows, cols] = C
            S = -Cm @ Bm.T
            Hd = Hpp + lam * (Hpp * np.eye(6)) + 1e-9 * np.eye(6)
            for k in range(Ff):
                S[6 * k:6 * k + 6, 6 * k:6 * k + 6] += Hd[k]
            rhs = -gp.ravel() + Cm @ gl.ravel()
            try:
                dp = np.linalg.solve(S, rhs).reshape(Ff, 6)
            except np.linalg.LinAlgError:
                dp = np.zeros((Ff, 6))
            dl = (Hll_inv @ (-gl - (Bm.T @ dp.ravel()).reshape(M, 3))[:, :, None])[:, :, 0]
            R_new, t_new = R.copy(), t.copy()
            for k, f in enumerate(free_idx):
                dR = _rotation(dp[k, :3])
                R_new[f], t_new[f] = dR @ R[f], dR @ t[f] + dp[k, 3:]
            trial = evaluate(R_new, t_new, X + dl)
            if trial[3] < cost:
                R, t, X = R_new, t_new, X + dl
                Xc, res, err, new_cost, w = trial
                lam = max(lam / 3, 1e-7)
                converged = cost - new_cost < 1e-4 * cost
                cost = new_cost
                break
            lam *= 4
            if lam > 1e4:
                converged = True
                break
    out = poses_cw.copy()
    out[:, :3, :3], out[:, :3, 3] = R, t
    return out


def _refine(rig: _Rig, poses_cw: np.ndarray, obs: _Observations, bad: set[int],
            cfg: OdometryConfig) -> np.ndarray:
    """Bundle-adjust ``poses_cw`` over sliding windows of ``ba_window`` frames (stride half a window).

    Each window keeps its first frame where the previous window left it (the gauge, and continuity), and
    carries its correction on to the frames after it. Tracks with an observation the adjusted geometry
    misses by more than ``inlier_px`` are dropped and the window adjusted again.
    """
    n = len(poses_cw)
    if cfg.ba_window == 0 or n < 2:
        return poses_cw
    fr, tr, uvr = obs.arrays()
    good = ~np.isin(tr, np.fromiter(bad, np.int64, len(bad)))
    fr, tr, uvr = fr[good], tr[good], uvr[good]
    poses_cw = poses_cw.copy()
    stride = max(1, cfg.ba_window // 2)
    s = 0
    while True:
        e = min(s + cfg.ba_window, n)
        sel = (fr >= s) & (fr < e)
        f_w, t_w, u_w = fr[sel] - s, tr[sel], uvr[sel]
        # Points seen in two frames at least, with a stereo match in one at least.
        ids, pi, seen = np.unique(t_w, return_inverse=True, return_counts=True)
        stereo = np.bincount(pi, weights=np.isfinite(u_w[:, 2]), minlength=len(ids))
        use = (seen[pi] >= 2) & (stereo[pi] >= 1)
        if use.any():
            _, pi = np.unique(t_w[use], return_inverse=True)
            old_last = poses_cw[e - 1].copy()
            poses_cw[s:e] = _bundle_adjust(rig, poses_cw[s:e], np.arange(e - s) > 0, f_w[use], pi, u_w[use], cfg)
            poses_cw[e:] = poses_cw[e:] @ np.linalg.inv(old_last) @ poses_cw[e - 1]
        if e == n:
            return poses_cw
        s += stride


def estimate_poses(left: np.ndarray, right: np.ndarray, *, K: np.ndarray, baseline: float,
                   cfg: OdometryConfig | None = None, disparities: np.ndarray | None = None) -> np.ndarray:
    """Camera-to-world poses (T x 4 x 4 float64, frame 0 the identity, OpenCV axes) of the left camera.

    ``left``/``right``: T x H x W x 3 uint8 RGB, rectified; ``K`` the 3x3 intrinsics; ``baseline`` in metres.
    ``disparities`` (optional, T x H x W float pixels of the left image, NaN where invalid:
    ``estimate_disparity``'s maps, which curation computes anyway) replace the odometry's own sparse
    stereo matching. Raises ``OdometryError`` naming the frame pair when the motion cannot be measured.
    """
    cfg = cfg if cfg is not None else OdometryConfig()
    k, b, disp_maps = _check_inputs(left, right, K, baseline, disparities)
    rig = _Rig(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), b)
    gray_l = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in left]
    gray_r = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in right] if disp_maps is None else []
    poses_cw, obs, bad = _track(rig, gray_l, gray_r, disp_maps, cfg)
    poses_cw = _refine(rig, poses_cw, obs, bad, cfg)
    poses = np.linalg.inv(poses_cw)
    # Frame 0 is the world: exactly the identity, whatever rounding the inversions left.
    return np.linalg.inv(poses[0]) @ poses if len(poses) else poses
