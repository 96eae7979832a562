"""Procedural surface texture: what makes the synthetic stereo pairs matchable.

Block matching and optical flow need high-frequency, non-repeating detail. One tileable noise image with a
1/f^0.8 spectrum (every scale from 2 to 128 texels, fine detail kept strong) is made once per process with
a fixed seed; surfaces sample it at their own (u, v) coordinates, scale and offset, so textures differ between
surfaces but are identical from run to run. The image is periodic by construction (built in the Fourier domain),
so wrapping (u, v) never shows a seam.

A far or grazing surface covers many texels per pixel; sampling the sharp texture there would alias, and the
left and right views would then disagree. Like mipmapping, the texture is stored at four blur levels (as the four
channels of one image, so one ``cv2.remap`` fetches them all) and each pixel blends the two levels that match its
footprint.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

TEX_SIZE = 256
LEVELS = 4  # blur sigma 0, 1, 2, 4 texels: footprints of 1, 2, 4, 8 texels
_SIGMAS = (0.0, 1.0, 2.0, 4.0)


@lru_cache(maxsize=1)
def noise_pyramid() -> np.ndarray:
    """TEX_SIZE x TEX_SIZE x LEVELS float32, zero-mean, level 0 roughly in [-1, 1]."""
    rng = np.random.default_rng(20240611)  # fixed: the texture is part of the renderer, not of a scene
    white = rng.standard_normal((TEX_SIZE, TEX_SIZE))
    f = np.fft.fftfreq(TEX_SIZE)
    radius = np.hypot(f[:, None], f[None, :])
    # Band-limited pink-ish spectrum: no structure larger than half the tile, so tiling is not visible.
    amplitude = np.where(radius >= 1 / 128, np.maximum(radius, 1e-9) ** -0.8, 0.0)
    spectrum = np.fft.fft2(white) * amplitude
    levels = []
    for sigma in _SIGMAS:
        blur = np.exp(-2 * (np.pi * sigma * radius) ** 2)  # a periodic Gaussian blur, exact in Fourier space
        levels.append(np.real(np.fft.ifft2(spectrum * blur)))
    stack = np.stack(levels, axis=-1)
    stack /= 2.5 * stack[..., 0].std()  # the sharp level spans about [-1, 1]; blurred ones have less contrast
    return np.clip(stack, -1, 1).astype(np.float32)


def sample(u: np.ndarray, v: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Texture at texel coordinates (u, v) (2-D float32 arrays) for pixels covering ``footprint`` texels.

    Coordinates may lie anywhere: the texture is periodic.
    """
    # Fold into the tile first: remap takes a slow path for every pixel whose taps fall outside the image.
    u = u - np.float32(TEX_SIZE) * np.floor(u * np.float32(1 / TEX_SIZE))
    v = v - np.float32(TEX_SIZE) * np.floor(v * np.float32(1 / TEX_SIZE))
    taps = cv2.remap(noise_pyramid(), u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP).reshape(-1)
    level = np.clip(np.log2(np.maximum(footprint.reshape(-1), 1.0)), 0, LEVELS - 1 - 1e-3)
    lo = level.astype(np.intp)
    frac = (level - lo).astype(np.float32)
    index = np.arange(0, lo.size * LEVELS, LEVELS) + lo  # flat gather: much faster than take_along_axis
    a, b = taps[index], taps[index + 1]
    return (a + (b - a) * frac).reshape(u.shape)
