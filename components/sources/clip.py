"""The clip contract (``DESIGN.md``): what every source produces and curation reads.

    <clip_id>/left/000000.png    RGB frames of the left camera (the reference view)
    <clip_id>/right/000000.png   RGB frames of the right camera, rectified, same size
    <clip_id>/meta.json          fps, width, height, num_frames, K {fx, fy, cx, cy}, baseline_m,
                                 poses (optional: per frame 4x4 camera-to-world, OpenCV axes:
                                 x right, y down, z forward), objects (optional: instance id -> label)
    <clip_id>/masks/000000.png   optional instance masks: uint8 PNG, 0 = background, k = object id k
    <clip_id>/gt/                optional ground truth (synthetic clips only; curation never reads it):
                                 depth.npz (depth: T x H x W float32 metres, left camera z),
                                 flow.npz (flow: T-1 x H x W x 2 float32, left frame t -> t+1 pixels),
                                 motion.npz (motion: T x H x W bool, pixel on a moving object),
                                 tracks.json (per object: id, label, shape, color, size [x, y, z] metres,
                                 center [T x 3] world metres, yaw [T] radians, motion, rotation)

Readers raise ``ClipError`` naming the clip and the file; curation catches it per clip and quarantines.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np


class ClipError(ValueError):
    """A clip cannot be used; ``str()`` names the clip and the file."""

    def __init__(self, clip: str | Path, file: str | Path | None, reason: str):
        self.clip = str(clip)
        self.file = str(file) if file is not None else None
        self.reason = reason
        where = f"{self.clip}" + (f" ({self.file})" if self.file else "")
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True)
class ObjectInfo:
    id: int
    label: str  # e.g. "red cube": the name a question uses


@dataclass(frozen=True)
class ClipMeta:
    clip_id: str
    fps: float
    width: int
    height: int
    num_frames: int
    fx: float
    fy: float
    cx: float
    cy: float
    baseline_m: float
    poses: np.ndarray | None  # T x 4 x 4 camera-to-world, or None when the dataset has no poses
    objects: tuple[ObjectInfo, ...]

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def timestamp(self, frame: int) -> float:
        return frame / self.fps

    def to_json(self) -> dict:
        return {
            "clip_id": self.clip_id,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "K": {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy},
            "baseline_m": self.baseline_m,
            "poses": None if self.poses is None else np.asarray(self.poses).tolist(),
            "objects": [{"id": o.id, "label": o.label} for o in self.objects],
        }


def frame_name(index: int) -> str:
    return f"{index:06d}.png"


def _finite_positive(value: object, name: str, clip: Path) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ClipError(clip, "meta.json", f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ClipError(clip, "meta.json", f"{name} is not finite ({value!r})")
    if number <= 0:
        raise ClipError(clip, "meta.json", f"{name} must be > 0, got {number}")
    return number


def read_meta(clip_dir: str | Path) -> ClipMeta:
    clip = Path(clip_dir)
    path = clip / "meta.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClipError(clip, "meta.json", "missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipError(clip, "meta.json", f"not valid JSON: {exc}") from None
    try:
        K = raw["K"]
        meta = ClipMeta(
            clip_id=str(raw.get("clip_id", clip.name)),
            fps=_finite_positive(raw["fps"], "fps", clip),
            width=int(_finite_positive(raw["width"], "width", clip)),
            height=int(_finite_positive(raw["height"], "height", clip)),
            num_frames=int(raw["num_frames"]),
            fx=_finite_positive(K["fx"], "K.fx", clip),
            fy=_finite_positive(K["fy"], "K.fy", clip),
            cx=_finite_positive(K["cx"], "K.cx", clip),
            cy=_finite_positive(K["cy"], "K.cy", clip),
            baseline_m=_finite_positive(raw["baseline_m"], "baseline_m", clip),
            poses=None if raw.get("poses") is None else np.asarray(raw["poses"], dtype=np.float64),
            objects=tuple(ObjectInfo(int(o["id"]), str(o["label"])) for o in raw.get("objects") or []),
        )
    except KeyError as exc:
        raise ClipError(clip, "meta.json", f"missing field {exc.args[0]!r}") from None
    if meta.num_frames < 1:
        raise ClipError(clip, "meta.json", "num_frames is 0: the clip is empty")
    if meta.poses is not None:
        if meta.poses.shape != (meta.num_frames, 4, 4):
            raise ClipError(clip, "meta.json", f"poses must be {meta.num_frames}x4x4, got {meta.poses.shape}")
        if not np.isfinite(meta.poses).all():
            raise ClipError(clip, "meta.json", "poses contain NaN or infinite values")
    return meta


def _read_image(clip_dir: str | Path, relpath: str, flags: int, what: str) -> np.ndarray:
    clip = Path(clip_dir)
    path = clip / relpath
    if not path.is_file():
        raise ClipError(clip, relpath, "missing")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise ClipError(clip, relpath, f"unreadable or truncated {what}")
    return image


def read_rgb(clip_dir: str | Path, relpath: str) -> np.ndarray:
    """Read one frame as H x W x 3 uint8 RGB; a missing, truncated or unreadable file is a ClipError."""
    return cv2.cvtColor(_read_image(clip_dir, relpath, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def read_mask(clip_dir: str | Path, relpath: str) -> np.ndarray:
    """Read one instance mask (uint8 ids); a missing or unreadable file is a ClipError."""
    mask = _read_image(clip_dir, relpath, cv2.IMREAD_UNCHANGED, "mask")
    return mask[..., 0] if mask.ndim == 3 else mask


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write RGB (H x W x 3) or single-channel uint8 as PNG (fast compression: clips are rewritten often)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise OSError(f"could not write {path}")


def list_clips(root: str | Path) -> list[Path]:
    """Clip folders under ``root`` (anything holding a meta.json or a left/ folder), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"clip root not found: {root}")
    # Dot-folders are temporaries of an interrupted writer, never clips.
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and ((p / "meta.json").exists() or (p / "left").is_dir()))
