"""The stereo estimator on literal synthetic pairs with known disparity (no renderer needed)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from components.config import StereoConfig
from components.curation.stereo import _lr_check, disparity_to_depth, estimate_disparity, sgbm_disparity

H, W, DMAX = 240, 320, 64


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Coloured multi-scale noise: matchable texture at several frequencies, like a real surface."""
    out = np.zeros((h, w, 3), np.float32)
    for sigma in (1.0, 3.0, 8.0):
        noise = cv2.GaussianBlur(rng.standard_normal((h, w, 3)).astype(np.float32), (0, 0), sigma)
        out += noise / noise.std()
    out = (out - out.min()) / (out.max() - out.min())
    return 40 + 200 * out * rng.uniform(0.3, 1.0, 3).astype(np.float32)


def _render(layers: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Render a rectified pair from layers ``(disparity per row (H,), mask (H, W + DMAX) in left coords)``.

    Each layer's texture is fixed to the surface: the right image at column ``x`` shows the surface point at
    left column ``x + d``. Nearer (larger-disparity) layers win in both views, so occlusions are exact.
    """
    ys = np.broadcast_to(np.arange(H, dtype=np.float32)[:, None], (H, W))
    views = {
        v: (np.zeros((H, W, 3), np.float32), np.full((H, W), -1.0, np.float32), np.full((H, W), -1))
        for v in ("left", "right")
    }
    for i, (drow, mask) in enumerate(layers):
        tex = _texture(rng, H, W + DMAX)
        d = np.broadcast_to(drow[:, None], (H, W)).astype(np.float32)
        img, z, ids = views["left"]
        m = mask[:, :W] & (d > z)
        img[m], z[m], ids[m] = tex[:, :W][m], d[m], i
        mapx = np.arange(W, dtype=np.float32)[None, :] + d
        img, z, ids = views["right"]
        sample = cv2.remap(tex, mapx, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        m = cv2.remap(mask.astype(np.float32), mapx, ys, cv2.INTER_NEAREST) > 0.5
        m &= d > z
        img[m], z[m], ids[m] = sample[m], d[m], i
    gt, left_ids = views["left"][1], views["left"][2]
    # A left pixel is occluded when the right view shows another surface (or nothing) where it should land.
    xr = np.rint(np.arange(W)[None, :] - gt).astype(int)
    inside = (xr >= 0) & (xr < W)
    rows = np.broadcast_to(np.arange(H)[:, None], (H, W))
    occluded = np.ones((H, W), bool)
    occluded[inside] = views["right"][2][rows[inside], xr[inside]] != left_ids[inside]

    def noisy(img: np.ndarray) -> np.ndarray:
        return np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)

    return {
        "left": noisy(views["left"][0]),
        "right": noisy(views["right"][0]),
        "gt": gt,
        "occluded": occluded,
    }


def _box(y1: int, y2: int, x1: int, x2: int) -> np.ndarray:
    m = np.zeros((H, W + DMAX), bool)
    m[y1:y2, x1:x2] = True
    return m


@pytest.fixture(scope="module")
def occlusion_pair() -> dict[str, np.ndarray]:
    """A far wall, a slanted ground plane and three fronto-parallel boxes (disparities 6.3 to 48 px)."""
    rng = np.random.default_rng(0)
    ground = np.zeros(H, np.float32)
    ground[H // 2 :] = np.linspace(8.0, 40.0, H - H // 2)
    layers = [
        (np.full(H, 6.3, np.float32), np.ones((H, W + DMAX), bool)),
        (ground, _box(H // 2, H, 0, W + DMAX)),
        (np.full(H, 20.6, np.float32), _box(40, 170, 60, 130)),
        (np.full(H, 34.2, np.float32), _box(90, 200, 170, 230)),
        (np.full(H, 48.0, np.float32), _box(20, 110, 240, 300)),
    ]
    return _render(layers, rng)


def _bad2(pred: np.ndarray, gt: np.ndarray, where: np.ndarray | None = None) -> float:
    """Share of pixels wrong by more than 2 px, missing (NaN) counted as wrong."""
    where = np.ones(gt.shape, bool) if where is None else where
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(pred - gt) <= 2.0)
    return float(bad[where].mean())


def test_output_convention(occlusion_pair: dict[str, np.ndarray]) -> None:
    for fn in (estimate_disparity, sgbm_disparity):
        disp = fn(occlusion_pair["left"], occlusion_pair["right"], max_disparity=DMAX)
        assert disp.shape == (H, W) and disp.dtype == np.float32
        finite = disp[np.isfinite(disp)]
        assert finite.size and finite.min() >= 0 and finite.max() <= DMAX
    # Without filling, invalid pixels are NaN (never SGBM's negative sentinel).
    raw = estimate_disparity(
        occlusion_pair["left"],
        occlusion_pair["right"],
        max_disparity=DMAX,
        cfg=StereoConfig(fill_holes=False),
    )
    assert np.isnan(raw).any() and not (raw < 0).any()
    # Plain SGBM cannot search its leftmost max_disparity columns.
    assert np.isnan(
        sgbm_disparity(occlusion_pair["left"], occlusion_pair["right"], max_disparity=DMAX)[:, :DMAX]
    ).all()


def test_accuracy_on_known_pair(occlusion_pair: dict[str, np.ndarray]) -> None:
    disp = estimate_disparity(occlusion_pair["left"], occlusion_pair["right"], max_disparity=DMAX)
    gt = occlusion_pair["gt"]
    assert np.isfinite(disp).mean() > 0.99
    assert _bad2(disp, gt) < 0.05
    visible = ~occlusion_pair["occluded"]
    assert float(np.nanmedian(np.abs(disp - gt)[visible])) < 0.5


def test_beats_plain_sgbm(occlusion_pair: dict[str, np.ndarray]) -> None:
    left, right, gt = occlusion_pair["left"], occlusion_pair["right"], occlusion_pair["gt"]
    ours = _bad2(estimate_disparity(left, right, max_disparity=DMAX), gt)
    plain = _bad2(sgbm_disparity(left, right, max_disparity=DMAX), gt)
    assert ours < 0.5 * plain, (ours, plain)


@pytest.mark.parametrize(("gain", "offset"), [(1.0, 0.0), (1.15, 10.0)])
def test_subpixel_on_fractional_plane(gain: float, offset: float) -> None:
    rng = np.random.default_rng(1)
    pair = _render([(np.full(H, 10.4, np.float32), np.ones((H, W + DMAX), bool))], rng)
    # The second case: the right camera is brighter (gain and offset), as real camera pairs often are.
    right = np.clip(pair["right"] * gain + offset, 0, 255).astype(np.uint8)
    disp = estimate_disparity(pair["left"], right, max_disparity=DMAX)
    inner = disp[10:-10, 30:-10]
    # Integer matching would give 10 everywhere (error 0.4); SGBM's parabola fit alone reads ~10.19.
    assert abs(float(np.nanmedian(inner)) - 10.4) < 0.1
    assert float(np.nanmean(np.abs(inner - 10.4))) < 0.15


def test_lr_check_invalidates_occlusions(occlusion_pair: dict[str, np.ndarray]) -> None:
    left, right = occlusion_pair["left"], occlusion_pair["right"]
    occluded = occlusion_pair["occluded"]
    raw = estimate_disparity(left, right, max_disparity=DMAX, cfg=StereoConfig(fill_holes=False))
    # Before filling, occluded pixels are mostly invalid, visible ones mostly kept.
    assert np.isnan(raw[occluded]).mean() > 0.8
    assert np.isfinite(raw[~occluded]).mean() > 0.9
    # Filling then puts the background disparity back into the occlusions.
    filled = estimate_disparity(left, right, max_disparity=DMAX)
    assert _bad2(filled, occlusion_pair["gt"], occluded) < 0.2


def test_lr_check_on_literal_maps() -> None:
    # One scanline: background at disparity 2, a foreground at 4 from column 6 (x_right = x_left - d).
    left = np.array([[2, 2, 2, 2, 2, 2, 4, 4, 4, 4]], np.float32)
    right = np.array([[2, 2, 4, 4, 4, 4, 2, 2, 2, np.nan]], np.float32)
    out = _lr_check(left, right, max_diff=1.0)
    # Columns 0-1 land outside the right image; 4-5 land on right pixels that see the foreground (occluded).
    expected_valid = [False, False, True, True, False, False, True, True, True, True]
    assert np.isfinite(out[0]).tolist() == expected_valid
    np.testing.assert_array_equal(out[0][expected_valid], left[0][expected_valid])


def test_textureless_region_is_invalid_not_infinitely_far() -> None:
    # SGBM alone reports disparity 0 (infinitely far) on a flat region; the estimator leaves it NaN when it
    # is wider than any occlusion, and fills only the narrow margin next to the texture.
    rng = np.random.default_rng(2)
    img = np.full((H, W, 3), 128, np.uint8)
    img[:, : W // 2] = rng.integers(0, 256, (H, W // 2, 3), dtype=np.uint8)
    assert (sgbm_disparity(img, img, max_disparity=DMAX)[:, -W // 4 :] == 0).all()
    disp = estimate_disparity(img, img, max_disparity=DMAX)
    assert np.isnan(disp[:, W // 2 + DMAX + 8 :]).all()
    assert np.nanmax(np.abs(disp[:, DMAX : W // 2 - 8])) < 0.5


@pytest.mark.parametrize(
    ("left", "right", "max_disparity", "match"),
    [
        (np.zeros((H, W, 3), np.float32), np.zeros((H, W, 3), np.uint8), DMAX, "uint8"),
        (np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8), DMAX, "HxWx3"),
        (np.zeros((H, W, 4), np.uint8), np.zeros((H, W, 4), np.uint8), DMAX, "HxWx3"),
        (np.zeros((H, W, 3), np.uint8), np.zeros((H, W + 2, 3), np.uint8), DMAX, "same shape"),
        (np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8), 0, "multiple of 16"),
        (np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8), 20, "multiple of 16"),
        (np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8), -16, "multiple of 16"),
        (np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8), 16.5, "multiple of 16"),
        ([[[0, 0, 0]]], np.zeros((H, W, 3), np.uint8), DMAX, "uint8"),
    ],
)
def test_bad_input_raises(left: np.ndarray, right: np.ndarray, max_disparity: int, match: str) -> None:
    for fn in (estimate_disparity, sgbm_disparity):
        with pytest.raises(ValueError, match=match):
            fn(left, right, max_disparity=max_disparity)


def test_max_disparity_wider_than_image_raises() -> None:
    img = np.zeros((32, 48, 3), np.uint8)
    for fn in (estimate_disparity, sgbm_disparity):
        with pytest.raises(ValueError, match="wider"):
            fn(img, img, max_disparity=64)


def test_disparity_to_depth() -> None:
    disp = np.array([[10.0, 20.0, 0.0], [-1.0, np.nan, 5.0]], np.float32)
    depth = disparity_to_depth(disp, fx=100.0, baseline_m=0.5)
    assert depth.dtype == np.float32 and depth.shape == disp.shape
    np.testing.assert_allclose(depth[0, :2], [5.0, 2.5])
    assert depth[1, 2] == pytest.approx(10.0)
    assert np.isnan(depth[0, 2]) and np.isnan(depth[1, 0]) and np.isnan(depth[1, 1])


@pytest.mark.parametrize(
    ("fx", "baseline", "match"),
    [
        (100.0, 0.0, "baseline_m"),
        (100.0, -0.5, "baseline_m"),
        (0.0, 0.5, "fx"),
        (-3.0, 0.5, "fx"),
        (float("nan"), 0.5, "fx"),
        (100.0, float("inf"), "baseline_m"),
        ("wide", 0.5, "fx"),
    ],
)
def test_disparity_to_depth_bad_camera_raises(fx: float, baseline: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        disparity_to_depth(np.ones((2, 2), np.float32), fx=fx, baseline_m=baseline)
