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
import re
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


def _count(value: object, name: str, clip: Path, minimum: int) -> int:
    """An integer >= ``minimum``: ``8`` or ``8.0``, not ``"eight"``, ``8.5``, ``true`` or NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value):
        raise ClipError(clip, "meta.json", f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ClipError(clip, "meta.json", f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


# A clip id names files (``som/<clip_id>.png``) and record ids: a plain file name, nothing a path could
# be built from (no separators, no "." or "..", no leading dot: dot-names are hidden or temporaries).
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def check_plain_name(value: object, name: str, clip: Path, file: str = "meta.json") -> str:
    """``value`` if it is safe to use as one file-name component; a ClipError naming ``name`` otherwise."""
    if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value):
        raise ClipError(clip, file, f"{name} {value!r} is not a plain name (letters, digits, '.', '_', '-'; "
                        "no path separators, no leading dot; at most 200 characters)")
    return value


def read_meta(clip_dir: str | Path) -> ClipMeta:
    clip = Path(clip_dir)
    path = clip / "meta.json"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ClipError(clip, "meta.json", "missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ClipError(clip, "meta.json", f"not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ClipError(clip, "meta.json", f"must be a JSON object, got {type(raw).__name__}")
    try:
        K = raw["K"]
        meta = ClipMeta(
            clip_id=check_plain_name(raw["clip_id"], "clip_id", clip) if "clip_id" in raw
            else check_plain_name(clip.name, "clip_id (the folder's name: meta.json has none)", clip),
            fps=_finite_positive(raw["fps"], "fps", clip),
            width=_count(raw["width"], "width", clip, minimum=1),
            height=_count(raw["height"], "height", clip, minimum=1),
            num_frames=_count(raw["num_frames"], "num_frames", clip, minimum=0),  # 0: "empty", below
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
    except ClipError:
        raise
    except (TypeError, ValueError) as exc:  # e.g. K a list, objects not a list of {id, label}, ragged poses
        raise ClipError(clip, "meta.json", f"malformed: {type(exc).__name__}: {exc}") from None
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


def read_mask(clip_dir: str | Path, relpath: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one instance mask (H x W uint8 ids); a missing, unreadable or malformed file is a ClipError.

    ``size`` (height, width) is the frame's: a mask of another size would pair pixels with the wrong
    depths and silently move objects, so it is refused rather than resized.
    """
    clip = Path(clip_dir)
    mask = _read_image(clip, relpath, cv2.IMREAD_UNCHANGED, "mask")
    if mask.dtype != np.uint8:
        raise ClipError(clip, relpath, f"mask dtype {mask.dtype}, expected uint8 (0 = background, k = object k)")
    if mask.ndim == 3:
        # A grey mask saved as colour (alpha or not) is fine; a colour-coded one is not instance ids.
        if (mask[..., :3] != mask[..., :1]).any():
            raise ClipError(clip, relpath, "mask colour channels differ: expected one channel of object ids")
        mask = mask[..., 0]
    if size is not None and mask.shape != tuple(size):
        raise ClipError(clip, relpath, f"mask size {mask.shape[1]}x{mask.shape[0]} differs from the frame's "
                        f"{size[1]}x{size[0]}")
    return mask


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
