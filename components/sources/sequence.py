"""What every reader of a real stereo recording returns (``StereoSequence``), and how it becomes clips.

A reader (``folder``, ``karlsruhe``, ``kitti``, ``stereo4d``) parses its layout once, checks the calibration
and returns a ``StereoSequence``: frame numbers, the rectified left camera's K, the baseline, fps, optional
timestamps and left-camera poses, and a ``read_pair`` that decodes one frame pair on demand (recordings are
far larger than memory). ``write_clips`` cuts the sequence into fixed-length windows and writes each as one
clip of the clip contract (``components/sources/clip.py``), atomically: a killed or failing ingest leaves no
half clip, and a clip of the same id written before is replaced whole.

Bad input is a ``SourceError`` (a ``ValueError``) that names the file and, where there is one, the field.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from components.io import atomic_dir, write_json
from components.sources.clip import frame_name, read_meta, write_png

log = logging.getLogger(__name__)


class SourceError(ValueError):
    """A source recording cannot be read; ``str()`` names the file and the field."""

    def __init__(self, file: str | Path, reason: str, field: str | None = None):
        self.file, self.field, self.reason = str(file), field, reason
        super().__init__(f"{file}: " + (f"{field}: " if field else "") + reason)


@dataclass
class StereoSequence:
    name: str                      # plain name (letters, digits, . _ -), used to name clips
    frame_ids: list[int]           # the source's own frame numbers (need not start at 0)
    K: np.ndarray                  # 3x3 intrinsics of the rectified left camera
    baseline_m: float              # > 0
    fps: float                     # > 0
    timestamps: np.ndarray | None  # seconds, one per frame, or None
    poses: np.ndarray | None       # N x 4 x 4 camera-to-world of the LEFT camera, OpenCV axes, or None
    source: dict                   # provenance: format, root, pose_source, notes
    pair_reader: Callable[[int], tuple[np.ndarray, np.ndarray]] = field(repr=False, default=None)  # type: ignore

    def __post_init__(self) -> None:
        root = self.source.get("root", self.name)
        if not _PLAIN.fullmatch(self.name):
            raise SourceError(root, f"sequence name {self.name!r} is not a plain name", "name")
        n = len(self.frame_ids)
        self.K = np.asarray(self.K, dtype=np.float64)
        check_calibration(self.K, self.baseline_m, file=root)
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise SourceError(root, f"fps must be finite and > 0, got {self.fps}", "fps")
        if self.timestamps is not None:
            self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
            if self.timestamps.shape != (n,) or not np.isfinite(self.timestamps).all():
                raise SourceError(root, f"need {n} finite timestamps, got shape {self.timestamps.shape}",
                                  "timestamps")
        if self.poses is not None:
            self.poses = np.asarray(self.poses, dtype=np.float64)
            if self.poses.shape != (n, 4, 4) or not np.isfinite(self.poses).all():
                raise SourceError(root, f"need {n} finite 4x4 poses, got shape {self.poses.shape}", "poses")
        if self.pair_reader is None:
            raise SourceError(root, "no frame reader", "read_pair")

    def __len__(self) -> int:
        return len(self.frame_ids)

    def read_pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``i`` (0-based position, not the source's number): H x W x 3 uint8 RGB left, right."""
        left, right = self.pair_reader(i)
        where = f"{self.source.get('root', self.name)} frame {self.frame_ids[i]}"
        for side, image in (("left", left), ("right", right)):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise SourceError(where, f"{side} image is {image.dtype} {image.shape}, expected H x W x 3 uint8")
        if left.shape != right.shape:
            raise SourceError(where, f"left {left.shape[1]}x{left.shape[0]} and right "
                              f"{right.shape[1]}x{right.shape[0]} differ in size")
        return left, right


_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")


def plain_name(text: str) -> str:
    """``text`` made safe as a clip-name prefix: other characters become ``_``, no leading dot."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip("._-")[:150]
    return name or "sequence"


# --- Images --------------------------------------------------------------------------------------------------


def to_rgb(image: np.ndarray, where: str | Path) -> np.ndarray:
    """An image as OpenCV decodes it (grey, BGR or BGRA, uint8) as H x W x 3 RGB."""
    if image.dtype != np.uint8:
        raise SourceError(where, f"{image.dtype} pixels; expected 8-bit images")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise SourceError(where, f"image of shape {image.shape}; expected grey, BGR or BGRA")


def read_image(path: Path) -> np.ndarray:
    """One image file as H x W x 3 uint8 RGB (grey is replicated); missing or unreadable: SourceError."""
    if not path.is_file():
        raise SourceError(path, "missing")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise SourceError(path, "unreadable or truncated image")
    return to_rgb(image, path)


# --- Calibration ---------------------------------------------------------------------------------------------


def check_calibration(K: np.ndarray, baseline_m: float, *, file: str | Path,
                      P_left: np.ndarray | None = None, P_right: np.ndarray | None = None) -> None:
    """K finite with positive focal lengths and centre, baseline finite and > 0; given both projection
    matrices, also that the pair is rectified: the same K, and the right camera displaced along x only.

    The y/z displacement may be up to 2 % of the baseline: KITTI's rectified P matrices carry a few mm
    (a sub-pixel effect beyond 2 m), which a stricter check would reject.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise SourceError(file, f"K must be a finite 3x3 matrix, got {K.shape}", "K")
    for name, value in (("fx", K[0, 0]), ("fy", K[1, 1]), ("cx", K[0, 2]), ("cy", K[1, 2])):
        if value <= 0:
            raise SourceError(file, f"{name} must be > 0, got {value}", "K")
    if not np.allclose(K[2], [0, 0, 1]) or abs(K[1, 0]) > 1e-9 or abs(K[0, 1]) > 1e-6 * K[0, 0]:
        raise SourceError(file, f"K is not a pinhole matrix [[fx,0,cx],[0,fy,cy],[0,0,1]]: {K.tolist()}", "K")
    if not (isinstance(baseline_m, (int, float, np.floating)) and math.isfinite(baseline_m) and baseline_m > 0):
        raise SourceError(file, f"baseline must be finite and > 0, got {baseline_m}", "baseline_m")
    if P_left is None or P_right is None:
        return
    if not np.allclose(P_left[:, :3], P_right[:, :3], rtol=1e-6, atol=1e-6):
        raise SourceError(file, "left and right projection matrices have different K or rotation: the pair "
                          "is not rectified", "P")
    t = np.linalg.solve(K, P_right[:, 3]) - np.linalg.solve(K, P_left[:, 3])
    if abs(t[1]) > 0.02 * baseline_m or abs(t[2]) > 0.02 * baseline_m:
        raise SourceError(file, f"the right camera is offset by y={t[1]:.4f} m, z={t[2]:.4f} m (baseline "
                          f"{baseline_m:.4f} m): the pair is not rectified (vertical offset)", "P")


def rectified_stereo(P_left: np.ndarray, P_right: np.ndarray, *, file: str | Path) -> tuple[np.ndarray, float]:
    """K and baseline (metres) of a rectified pair from its 3x4 projection matrices, checked.

    P = K [I | t]: t = K^-1 P[:, 3]; the right camera sits at +x of the left, so baseline = t_left.x - t_right.x
    (Karlsruhe, KITTI: -P_right[0, 3] / fx when the left P has no offset).
    """
    P_left, P_right = np.asarray(P_left, dtype=np.float64), np.asarray(P_right, dtype=np.float64)
    K = P_left[:, :3].copy()
    if not np.isfinite(P_left).all() or not np.isfinite(P_right).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise SourceError(file, "projection matrices must be finite with positive focal lengths", "P")
    t = np.linalg.solve(K, P_left[:, 3]) - np.linalg.solve(K, P_right[:, 3])
    baseline = float(t[0])
    check_calibration(K, baseline, file=file, P_left=P_left, P_right=P_right)
    return K, baseline


def check_poses(poses: np.ndarray, *, file: str | Path, field: str = "poses", tol: float = 1e-3) -> np.ndarray:
    """``poses`` (N x 4 x 4) if each is a rigid transform: rotation orthonormal with det +1, last row 0 0 0 1."""
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4) or not np.isfinite(poses).all():
        raise SourceError(file, f"poses must be finite N x 4 x 4, got {poses.shape}", field)
    R = poses[:, :3, :3]
    bad_rot = np.abs(R @ R.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2)) > tol
    bad = bad_rot | (np.abs(np.linalg.det(R) - 1) > tol) | (np.abs(poses[:, 3] - [0, 0, 0, 1]).max(axis=1) > tol)
    if bad.any():
        raise SourceError(file, f"pose {int(np.argmax(bad))} is not a rigid transform (rotation not "
                          "orthonormal with det +1, or last row not 0 0 0 1)", field)
    return poses


def median_fps(timestamps: np.ndarray, *, file: str | Path) -> float:
    """Frames per second from the median frame interval (robust to a dropped or doubled frame)."""
    dt = np.diff(np.asarray(timestamps, dtype=np.float64))
    if dt.size == 0 or not np.isfinite(dt).all() or np.median(dt) <= 0:
        raise SourceError(file, "need at least two increasing timestamps to derive fps", "timestamps")
    return float(1.0 / np.median(dt))


# --- Windows and clips ---------------------------------------------------------------------------------------


def windows(n_frames: int, window: int, stride: int) -> list[range]:
    """Full windows of ``window`` frames every ``stride`` frames; frames in none of them are dropped (logged)."""
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    out = [range(s, s + window) for s in range(0, n_frames - window + 1, stride)]
    dropped = n_frames - len(set().union(*out))  # the tail, and the gaps when stride > window
    if dropped:
        log.info("%d of %d frames are in no full window of %d (stride %d) and are dropped", dropped, n_frames,
                 window, stride)
    return out


def clip_id(seq: StereoSequence, frames: range) -> str:
    return f"{seq.name}_{seq.frame_ids[frames.start]:06d}"


def write_clips(seq: StereoSequence, out: str | Path, *, window: int, stride: int | None = None,
                poses: bool = True) -> list[Path]:
    """Write one clip folder per window under ``out``; return their paths. ``poses=False`` drops the poses."""
    out = Path(out)
    written = []
    for frames in windows(len(seq), window, stride or window):
        path = out / clip_id(seq, frames)
        with atomic_dir(path) as tmp:
            size = None
            for j, i in enumerate(frames):
                left, right = seq.read_pair(i)
                if size is None:
                    size = left.shape[:2]
                elif left.shape[:2] != size:
                    raise SourceError(f"{seq.source.get('root')} frame {seq.frame_ids[i]}",
                                      f"size {left.shape[1]}x{left.shape[0]} differs from the clip's "
                                      f"{size[1]}x{size[0]}")
                write_png(tmp / "left" / frame_name(j), left)
                write_png(tmp / "right" / frame_name(j), right)
            write_json(tmp / "meta.json", _meta(seq, frames, path.name, size, poses))
            read_meta(tmp)  # the clip contract's own check, before the clip becomes visible
        written.append(path)
        log.info("wrote clip %s (%d frames)", path, len(frames))
    return written


def _meta(seq: StereoSequence, frames: range, name: str, size: tuple[int, int], poses: bool) -> dict:
    sl = slice(frames.start, frames.stop)
    keep = poses and seq.poses is not None
    pose_source = seq.source.get("pose_source") or "none"
    if not poses:
        pose_source = "none (dropped with --no-poses)"
    K = seq.K
    return {
        "clip_id": name, "fps": seq.fps, "width": int(size[1]), "height": int(size[0]),
        "num_frames": len(frames),
        "K": {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])},
        "baseline_m": float(seq.baseline_m),
        "poses": seq.poses[sl].tolist() if keep else None,
        "objects": [],
        "source": {
            "format": seq.source.get("format"), "root": str(seq.source.get("root")),
            "frame_ids": [int(f) for f in seq.frame_ids[sl]],
            "timestamps": None if seq.timestamps is None else seq.timestamps[sl].tolist(),
            "pose_source": pose_source, "notes": seq.source.get("notes", ""),
        },
    }


def read_number_rows(path: Path, *, field: str | None = None) -> list[tuple[int, list[float]]]:
    """The non-blank lines of a text table as (line number, numbers); a non-number names the file and line."""
    rows = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, [float(v) for v in line.split()]))
        except ValueError:
            raise SourceError(f"{path}:{lineno}", "not a row of numbers", field) from None
    return rows
