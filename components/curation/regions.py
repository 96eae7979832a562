"""Region prompts (R4D-Bench): first-frame boxes, masks as run-length encodings, Set-of-Marks images.

R4D-Bench replaces object names with region tokens (``<R1>``) and gives the model the first frame with
the regions marked (Set-of-Marks: a filled outline and a numbered label). We draw the marks from the
dataset's instance masks; 4D-RGPT finds them with GroundingDINO + SAM2 when a dataset has none.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from components.io import write_bytes

# Distinct mark colours (RGB), cycled by region index.
MARK_COLORS = ((255, 64, 64), (64, 200, 255), (255, 220, 0), (180, 90, 255), (0, 230, 120), (255, 140, 0))


def mask_box(mask: np.ndarray) -> list[int]:
    """Tight box [x0, y0, x1, y1] (inclusive-exclusive) of a boolean mask."""
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def rle_encode(mask: np.ndarray) -> dict:
    """COCO-style uncompressed RLE (column-major runs, starting with background)."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[False], flat, [False]]).astype(np.int8))) 
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if runs and runs[-1] == 0:
        runs.pop()
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": runs}


def rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    flat = np.zeros(h * w, dtype=bool)
    pos, value = 0, False
    for run in rle["counts"]:
        if value:
            flat[pos : pos + run] = True
        pos += run
        value = not value
    return flat.reshape((w, h)).T


def draw_set_of_marks(image: np.ndarray, masks: list[np.ndarray], tokens: list[str]) -> np.ndarray:
    """Overlay each mask (translucent fill, outline) with its token's number at the mask's centre."""
    out = image.astype(np.float32).copy()
    for i, mask in enumerate(masks):
        color = np.array(MARK_COLORS[i % len(MARK_COLORS)], np.float32)
        out[mask] = 0.6 * out[mask] + 0.4 * color
    out = out.clip(0, 255).astype(np.uint8)
    for i, (mask, token) in enumerate(zip(masks, tokens)):
        color = tuple(int(c) for c in MARK_COLORS[i % len(MARK_COLORS)])
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, 1)
        ys, xs = np.nonzero(mask)
        text = token.strip("<>")
        org = (int(xs.mean()) - 6, int(ys.mean()) + 4)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 2, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def som_relpath(clip_id: str) -> str:
    """Where a clip's Set-of-Marks image lives in the curated folder (``clip_id`` is a checked plain name)."""
    return f"som/{clip_id}.png"


def encode_som(image: np.ndarray, masks: list[np.ndarray], tokens: list[str]) -> bytes:
    """The Set-of-Marks image as PNG bytes (OpenCV's default PNG settings, as ``cv2.imwrite`` uses)."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(draw_set_of_marks(image, masks, tokens), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"could not encode a Set-of-Marks image of shape {image.shape}")
    return png.tobytes()


def write_som(path: Path, image: np.ndarray, masks: list[np.ndarray], tokens: list[str]) -> None:
    write_bytes(path, encode_som(image, masks, tokens))
