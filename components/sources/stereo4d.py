"""Stereo4D (Jin et al., CVPR 2025): VR180 internet stereo video, rectified to perspective pairs.

    <root>/<vid>.npz                    the released annotations of one clip (``vid`` = <video id>_<time>)
    <root>/<vid>-left_rectified.mp4     the rectified left-eye perspective video (``rectify.py``'s output)
    <root>/<vid>-right_rectified.mp4    the right eye; also found in <root>/<vid>/ (rectify.py's layout)
    <root>/<vid>-left_rectified/*.png   fallback: the same videos as folders of frames (sorted by name)

The root may also be the ``.npz`` itself. Facts from the authors' code (github.com/Stereo4d/stereo4d-code,
``README.md``, ``rectify.py``, ``utils.load_dataset_npz``, ``track_optimization.py``):

- npz keys: ``name``, ``video_id``, ``timestamps`` (T, microseconds in the source video: rectify.py seeks
  ``timestamp / 1e6`` s), ``camera2world`` (T x 3 x 4), ``track_lengths`` / ``track_indices`` /
  ``track_coordinates`` (3D tracks, flattened), ``rectified2rig`` (2 x 3 x 3, per eye), ``fov_bounds``
  (4: start/end yaw, start/end tilt of the VR180 equirectangular frame, degrees).
- K does NOT come from ``fov_bounds``: that is the equirectangular input's extent, used only to rectify
  and crop. The perspective videos are rendered by ``rectify.py`` with a pinhole of horizontal FoV
  ``output_hfov`` (default 60 degrees), square pixels and the principal point at the image centre:
  fx = fy = W / (2 tan(hfov / 2)). jaxcam puts pixel centres at +0.5, so in OpenCV's convention (centres
  at integers) cx = W / 2 - 0.5, cy = H / 2 - 0.5. Released perspective videos are 512 x 512.
- Baseline: not in the npz; the authors' code turns disparity into depth with a fixed 0.063 m (the VR180
  rig), and the 3D tracks and poses share that scale. We use 0.063 m: metric only as far as that holds.
- Axes: ``camera2world`` comes from jaxcam cameras (x right, y down, z forward: OpenCV) and pairs with the
  left-eye video in the authors' pipeline; we take it as the LEFT camera's pose, unchanged. Not confirmed
  by a statement in the release; a third-party loader wonders whether it is the right eye.

Frames are numbered 0..T-1 within the clip; timestamps are seconds of the source video; fps is the
median interval (the clips are often subsampled from 30 fps video). The number of video frames must
equal len(timestamps).
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from components.sources.sequence import (
    SourceError,
    StereoSequence,
    check_poses,
    median_fps,
    plain_name,
    read_image,
    to_rgb,
)

HFOV_DEG = 60.0
BASELINE_M = 0.063
REQUIRED_KEYS = ("timestamps", "camera2world")


def read(root: str | Path, *, hfov_deg: float = HFOV_DEG, baseline_m: float = BASELINE_M) -> StereoSequence:
    npz = _find_npz(Path(root))
    data = _load_npz(npz)
    vid = npz.stem
    timestamps = data["timestamps"].astype(np.float64) * 1e-6
    n = len(timestamps)
    c2w = data["camera2world"].astype(np.float64)
    if c2w.shape != (n, 3, 4):
        raise SourceError(npz, f"shape {c2w.shape}, expected ({n}, 3, 4) (one per timestamp)", "camera2world")
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :] = c2w
    poses = check_poses(poses, file=npz, field="camera2world")

    left, right = (_frames(npz.parent, vid, side) for side in ("left", "right"))
    for frames in (left, right):
        if frames.count not in (None, n):
            raise SourceError(frames.path, f"{frames.count} frames for {n} timestamps")
    width, height = left.size
    if (width, height) != right.size:
        raise SourceError(right.path, f"{right.size[0]}x{right.size[1]}, the left is {width}x{height}")
    f = width / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
    K = np.array([[f, 0, width / 2.0 - 0.5], [0, f, height / 2.0 - 0.5], [0, 0, 1]])

    name = str(data["name"]) if "name" in data and data["name"].ndim == 0 else vid
    fov = data["fov_bounds"].tolist() if "fov_bounds" in data else None  # provenance only (see above)
    return StereoSequence(
        name=plain_name(name), frame_ids=list(range(n)), K=K, baseline_m=baseline_m,
        fps=median_fps(timestamps, file=npz), timestamps=timestamps, poses=poses,
        source={"format": "stereo4d", "root": str(npz), "pose_source": "camera2world",
                "notes": f"K from hfov {hfov_deg} deg (rectify.py default), baseline {baseline_m} m assumed "
                         f"(authors' constant); equirectangular fov_bounds {fov}"},
        pair_reader=lambda i: (left.frame(i), right.frame(i)))


def _find_npz(root: Path) -> Path:
    if root.is_file():
        return root
    found = sorted(root.glob("*.npz")) if root.is_dir() else []
    if len(found) != 1:
        raise SourceError(root, f"expected one <vid>.npz (or the npz itself), found {len(found)}")
    return found[0]


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise SourceError(path, f"not a readable npz: {exc}") from None
    for key in REQUIRED_KEYS:
        if key not in data:
            raise SourceError(path, "missing field", key)
    if data["timestamps"].ndim != 1 or len(data["timestamps"]) < 2:
        raise SourceError(path, f"shape {data['timestamps'].shape}, expected (T,) with T >= 2", "timestamps")
    return data


def _frames(folder: Path, vid: str, side: str) -> _Video | _ImageFolder:
    stem = f"{vid}-{side}_rectified"
    for video in (folder / f"{stem}.mp4", folder / vid / f"{stem}.mp4"):
        if video.is_file():
            return _Video(video)
    for frames in (folder / stem, folder / vid / stem):
        if frames.is_dir():
            return _ImageFolder(frames)
    raise SourceError(folder / f"{stem}.mp4", "missing (nor a folder of frames of that name)")


class _ImageFolder:
    def __init__(self, path: Path):
        self.path = path
        self.files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not self.files:
            raise SourceError(path, "no frames")
        self.count: int | None = len(self.files)
        first = read_image(self.files[0])
        self.size = (first.shape[1], first.shape[0])

    def frame(self, i: int) -> np.ndarray:
        return read_image(self.files[i])


class _Video:
    """Frames of a video by index. Decodes forwards from where it is (ingest reads in order); seeking
    back reopens the file, since frame-accurate seeking is not reliable across codecs."""

    def __init__(self, path: Path):
        self.path, self._cap, self._next = path, None, 0
        cap = self._open()
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.count = count if count > 0 else None  # some containers do not say; then reading tells
        if min(self.size) <= 0:
            raise SourceError(path, "video has no frame size (not a video, or no codec for it)")

    def _open(self) -> cv2.VideoCapture:
        if self._cap is not None:
            self._cap.release()
        self._cap, self._next = cv2.VideoCapture(str(self.path)), 0
        if not self._cap.isOpened():
            raise SourceError(self.path, "cannot open the video (missing codec or not a video)")
        return self._cap

    def frame(self, i: int) -> np.ndarray:
        if i < self._next:
            self._open()
        while self._next < i:
            if not self._cap.grab():
                raise SourceError(self.path, f"the video ends at frame {self._next}; frame {i} was asked for")
            self._next += 1
        ok, image = self._cap.read()
        if not ok:
            raise SourceError(self.path, f"the video ends at frame {self._next}; frame {i} was asked for")
        self._next += 1
        return to_rgb(image, self.path)
