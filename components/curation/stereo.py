"""Stereo depth for curation: a rectified RGB pair -> disparity (pixels) -> metric depth.

``estimate_disparity`` is OpenCV's semi-global matcher (``StereoSGBM``) plus the post-processing that
turns its raw output into something curation can measure objects with:

1. **Left padding.** SGBM leaves the leftmost ``max_disparity`` columns invalid (it cannot search the whole
   range there), a fifth of a 320-pixel frame at 64. Padding both images on the left lets it match every
   pixel whose correspondence lies inside the right image; the ones that do not are caught by step 3.
2. **A second, right-referenced pass** on the horizontally flipped and swapped pair, because the
   ``cv2.ximgproc`` disparity filters are not in ``opencv-python-headless``.
3. **Left-right consistency.** A left pixel whose disparity does not map to a right pixel that agrees within
   ``lr_max_diff`` is occluded, out of view or mismatched, and becomes invalid. SGBM's own uniqueness test
   and speckle filter run inside both passes; sub-pixel precision is SGBM's 1/16 pixel.
4. **Hole filling.** An invalid pixel takes the disparity of the nearer-to-the-camera-*farther* of its
   nearest valid neighbours on the same scanline (occlusions are background that the foreground hides in the
   other view), for gaps up to ``max_disparity`` wide, then a 3x3 median smooths the filled streaks only.

Departure from MLLM-4D: the paper derives depth for its curated 4D data with a learned stereo/depth model.
No weights can be downloaded here, so we use classical SGBM with the post-processing above; on the project's
synthetic clips it is measured by ``benchmarks/stereo_quality.py`` (bad-2px, end-point error, density, speed).
"""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np

from components.config import StereoConfig

log = logging.getLogger(__name__)

# SGBM_3WAY was the fastest mode and at least as accurate as the 5- and 8-direction modes on the synthetic
# clips (benchmarks/stereo_quality.py); the estimator runs on every curated frame, so speed matters.
SGBM_MODE = cv2.STEREO_SGBM_MODE_SGBM_3WAY
# OpenCV's recommended smoothness penalties, scaled by the matching window's pixel count and channels.
P1_PER_PIXEL = 8
P2_PER_PIXEL = 32
# The gradient prefilter's clip: OpenCV's samples use 63 (the maximum); lower values lose texture.
PRE_FILTER_CAP = 63
# A 3x3 median over filled pixels removes the one-pixel streaks scanline filling leaves; a larger window
# starts eating thin foreground structures.
FILL_MEDIAN_KSIZE = 3

_INVALID = np.float32(np.nan)


def _check_pair(left: np.ndarray, right: np.ndarray, max_disparity: int) -> None:
    for name, img in (("left", left), ("right", right)):
        if not isinstance(img, np.ndarray):
            raise ValueError(f"{name} image must be a numpy array, got {type(img).__name__}")
        if img.dtype != np.uint8:
            raise ValueError(f"{name} image must be uint8 RGB, got dtype {img.dtype}; convert with .astype(np.uint8)")
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"{name} image must be HxWx3 RGB, got shape {img.shape}")
    if left.shape != right.shape:
        raise ValueError(f"left and right images must have the same shape, got {left.shape} and {right.shape}")
    if isinstance(max_disparity, bool) or not isinstance(max_disparity, (int, np.integer)):
        raise ValueError(f"max_disparity must be an int, got {max_disparity!r}")
    if max_disparity < 16 or max_disparity % 16:
        raise ValueError(f"max_disparity must be a positive multiple of 16 (OpenCV SGBM), got {max_disparity}")


def _matcher(cfg: StereoConfig, max_disparity: int, channels: int) -> cv2.StereoSGBM:
    area = channels * cfg.block_size * cfg.block_size
    return cv2.StereoSGBM.create(
        minDisparity=0,
        numDisparities=max_disparity,
        blockSize=cfg.block_size,
        P1=P1_PER_PIXEL * area,
        P2=P2_PER_PIXEL * area,
        disp12MaxDiff=-1,  # the estimator does its own, stricter left-right check
        preFilterCap=PRE_FILTER_CAP,
        uniquenessRatio=cfg.uniqueness_ratio,
        speckleWindowSize=cfg.speckle_window,
        speckleRange=cfg.speckle_range,
        mode=SGBM_MODE,
    )


def _to_float(raw: np.ndarray) -> np.ndarray:
    """SGBM's int16 fixed point (4 fractional bits, negative = invalid) -> float32 pixels with NaN."""
    disp = raw.astype(np.float32) * np.float32(1.0 / cv2.StereoMatcher_DISP_SCALE)
    disp[raw < 0] = _INVALID
    return disp


def _padded_pass(matcher: cv2.StereoSGBM, ref: np.ndarray, other: np.ndarray, pad: int) -> np.ndarray:
    """Match ``ref`` against ``other`` (``other`` is shifted left), padding so no column is skipped."""
    ref_p = cv2.copyMakeBorder(ref, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
    other_p = cv2.copyMakeBorder(other, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
    return _to_float(matcher.compute(ref_p, other_p)[:, pad:])


def _lr_check(disp_left: np.ndarray, disp_right: np.ndarray, max_diff: float) -> np.ndarray:
    """Invalidate left disparities that the right view does not confirm (occlusions, mismatches)."""
    h, w = disp_left.shape
    cols = np.arange(w, dtype=np.float32)[None, :]
    # The right pixel a left pixel lands on; NaN disparities fall out through the comparison below.
    xr = np.rint(cols - np.nan_to_num(disp_left, nan=-1e6)).astype(np.int64)
    inside = (xr >= 0) & (xr < w) & np.isfinite(disp_left)
    rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
    matched = np.full((h, w), np.nan, np.float32)
    matched[inside] = disp_right[rows[inside], xr[inside]]
    with np.errstate(invalid="ignore"):
        agree = np.abs(disp_left - matched) <= max_diff
    out = disp_left.copy()
    out[~agree] = _INVALID
    return out


def _fill_holes(disp: np.ndarray, max_width: int) -> np.ndarray:
    """Fill invalid runs on each scanline from the farther (smaller-disparity) valid neighbour."""
    h, w = disp.shape
    valid = np.isfinite(disp)
    if valid.all() or not valid.any():
        return disp
    cols = np.arange(w)[None, :]
    # Index of the nearest valid pixel to the left / right of each pixel (-1 / w where there is none).
    left_idx = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    right_idx = np.minimum.accumulate(np.where(valid, cols, w)[:, ::-1], axis=1)[:, ::-1]
    padded = np.concatenate([np.full((h, 1), np.inf, np.float32), np.where(valid, disp, np.inf)], axis=1)
    padded = np.concatenate([padded, np.full((h, 1), np.inf, np.float32)], axis=1)
    rows = np.arange(h)[:, None]
    from_left = padded[rows, left_idx + 1]
    from_right = padded[rows, right_idx + 1]
    fill = np.minimum(from_left, from_right)
    # A gap wider than the largest possible occlusion is not an occlusion (sky, a textureless wall): leave it.
    # Gaps that touch the image edge are measured from that edge.
    gap = np.where(left_idx < 0, right_idx, np.where(right_idx >= w, w - 1 - left_idx, right_idx - left_idx - 1))
    use = ~valid & np.isfinite(fill) & (gap <= max_width)
    out = disp.copy()
    out[use] = fill[use]
    if FILL_MEDIAN_KSIZE > 1 and use.any():
        # medianBlur needs finite values; unfilled NaNs are restored afterwards.
        smooth = cv2.medianBlur(np.nan_to_num(out, nan=0.0), FILL_MEDIAN_KSIZE)
        out[use] = smooth[use]
    return out


def _resolve_cfg(cfg: StereoConfig | None, max_disparity: int) -> StereoConfig:
    return cfg if cfg is not None else StereoConfig(max_disparity=int(max_disparity))


def sgbm_disparity(
    left: np.ndarray, right: np.ndarray, *, max_disparity: int, cfg: StereoConfig | None = None
) -> np.ndarray:
    """Plain OpenCV StereoSGBM (same matcher settings as the estimator, no post-processing): the baseline.

    Returns HxW float32 disparity in pixels of the left image, NaN where SGBM gives none (including its
    unsearched leftmost ``max_disparity`` columns).
    """
    _check_pair(left, right, max_disparity)
    cfg = _resolve_cfg(cfg, max_disparity)
    matcher = _matcher(cfg, int(max_disparity), channels=3)
    return _to_float(matcher.compute(left, right))


def estimate_disparity(
    left: np.ndarray, right: np.ndarray, *, max_disparity: int, cfg: StereoConfig | None = None
) -> np.ndarray:
    """Disparity of the left image of a rectified RGB pair, in pixels (float32, NaN where invalid).

    ``max_disparity`` (a positive multiple of 16) bounds the search and wins over ``cfg.max_disparity``;
    the rest of ``cfg`` (block size, uniqueness, speckle filter, ``lr_max_diff``, ``fill_holes``) applies.
    """
    _check_pair(left, right, max_disparity)
    cfg = _resolve_cfg(cfg, max_disparity)
    d = int(max_disparity)
    matcher = _matcher(cfg, d, channels=3)
    disp_left = _padded_pass(matcher, left, right, d)
    # The right-referenced map: flipping both images makes the right view the left one of a valid pair.
    disp_right = _padded_pass(matcher, right[:, ::-1].copy(), left[:, ::-1].copy(), d)[:, ::-1]
    disp = _lr_check(disp_left, disp_right, cfg.lr_max_diff)
    if cfg.fill_holes:
        disp = _fill_holes(disp, max_width=d)
    return np.ascontiguousarray(disp, dtype=np.float32)


def disparity_to_depth(disparity: np.ndarray, fx: float, baseline_m: float) -> np.ndarray:
    """Depth in metres (float32) from disparity in pixels: ``fx * baseline / d``; NaN where ``d`` <= 0 or NaN."""
    for name, value in (("fx", fx), ("baseline_m", baseline_m)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(float(value)) or value <= 0:
            raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    disp = np.asarray(disparity, dtype=np.float32)
    depth = np.full(disp.shape, np.nan, np.float32)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(disp) & (disp > 0)
    depth[ok] = np.float32(fx * baseline_m) / disp[ok]
    return depth
