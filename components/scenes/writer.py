"""Writing synthetic clips in the clip layout of ``components.sources.clip``.

A clip is rendered into a hidden temporary sibling folder and renamed into place only when complete, so a
crash never leaves half a clip where readers look, and an existing clip is replaced, never mixed with a new
one. Ground-truth arrays are streamed into their ``.npz`` files one frame at a time, so memory does not grow
with clip length; members carry a fixed timestamp, so re-rendering a seed reproduces the files byte for byte.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from components.config import ScenesConfig
from components.io import write_json
from components.scenes import motion as mo
from components.scenes.render import render_frame
from components.scenes.sampling import sample_scene
from components.scenes.spec import YAW_CONVENTION, SceneSpec
from components.sources.clip import ClipMeta, ObjectInfo, frame_name, write_png

logger = logging.getLogger(__name__)

_TMP_SUFFIX, _OLD_SUFFIX = ".tmp", ".old"


@contextmanager
def _npz_stream(
    path: Path, key: str, shape: tuple[int, ...], dtype: type
) -> Iterator[Callable[[np.ndarray], None]]:
    """Yield ``append(chunk)``; the chunks, in order, must fill ``shape`` exactly (first axis = frames)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    written = 0
    # Fast deflate: ground truth is rewritten often and level 1 is within a few % of level 6 on these arrays.
    # Members get zipfile's fixed default timestamp, as numpy.savez's do.
    zf = zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True)
    with zf, zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": shape,
        }
        np.lib.format.write_array_header_1_0(fh, header)

        def append(chunk: np.ndarray) -> None:
            nonlocal written
            data = np.ascontiguousarray(chunk, dtype=dtype)
            fh.write(data.tobytes())
            written += data.nbytes

        yield append
        if written != expected:
            raise RuntimeError(f"{path}: wrote {written} bytes of {expected}")


def tracks_json(spec: SceneSpec) -> dict:
    """``gt/tracks.json``: per-object identity, size and per-frame centre and yaw, plus the camera motion."""
    times = np.arange(spec.num_frames) / spec.fps
    return {
        "yaw_convention": YAW_CONVENTION,
        "camera_motion": spec.camera_motion,
        "camera_speed": spec.camera_speed,  # m/s, or rad/s for turns
        "objects": [
            {
                "id": obj.id,
                "label": obj.label,
                "shape": obj.shape,
                "color": obj.color,
                "size": list(obj.size),
                "center": mo.object_centers(obj, times, spec.camera_height_m).tolist(),
                "yaw": mo.object_yaws(obj, times).tolist(),
                "motion": obj.motion,
                "direction": obj.direction,
                "rotation": obj.rotation,
                "speed": obj.speed,
                "accel": obj.accel,
                "yaw_rate": obj.yaw_rate,
            }
            for obj in spec.objects
        ],
    }


def clip_meta(spec: SceneSpec) -> ClipMeta:
    return ClipMeta(
        clip_id=spec.clip_id,
        fps=spec.fps,
        width=spec.width,
        height=spec.height,
        num_frames=spec.num_frames,
        fx=spec.fx,
        fy=spec.fy,
        cx=spec.cx,
        cy=spec.cy,
        baseline_m=spec.baseline_m,
        poses=mo.camera_poses(spec),
        objects=tuple(ObjectInfo(obj.id, obj.label) for obj in spec.objects),
    )


def _write_clip(spec: SceneSpec, folder: Path) -> None:
    n, h, w = spec.num_frames, spec.height, spec.width
    gt = folder / "gt"
    with ExitStack() as stack:
        depth = stack.enter_context(_npz_stream(gt / "depth.npz", "depth", (n, h, w), np.float32))
        flow = stack.enter_context(_npz_stream(gt / "flow.npz", "flow", (n - 1, h, w, 2), np.float32))
        motion = stack.enter_context(_npz_stream(gt / "motion.npz", "motion", (n, h, w), np.bool_))
        for t in range(n):
            frame = render_frame(spec, t)
            write_png(folder / "left" / frame_name(t), frame.left)
            write_png(folder / "right" / frame_name(t), frame.right)
            write_png(folder / "masks" / frame_name(t), frame.instance)
            depth(frame.depth[None])
            motion(frame.motion[None])
            if t + 1 < n:
                flow(frame.flow[None])
    write_json(gt / "tracks.json", tracks_json(spec))
    write_json(folder / "meta.json", clip_meta(spec).to_json())  # last: a folder with meta.json is complete


def _move_into_place(tmp: Path, final: Path) -> None:
    if not final.exists():
        os.rename(tmp, final)
        return
    # Directories cannot be replaced atomically: move the old one aside, move the new one in, then delete.
    old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=_OLD_SUFFIX, dir=final.parent))
    os.rename(final, old / final.name)
    os.rename(tmp, final)
    shutil.rmtree(old)


def render_clip(cfg: ScenesConfig, index: int, out_root: Path) -> Path:
    """Render clip ``index`` to ``out_root/scene_<index:04d>/`` (replacing any earlier one) and return it."""
    spec = sample_scene(cfg, index)
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / spec.clip_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.clip_id}.", suffix=_TMP_SUFFIX, dir=out_root))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the clip it becomes is shared data
    try:
        _write_clip(spec, tmp)
        _move_into_place(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.debug("rendered %s (%s camera, %d objects)", final, spec.camera_motion, len(spec.objects))
    return final


def _remove_leftovers(out_root: Path, num_clips: int) -> None:
    """Temporary folders of a killed renderer, and synthetic clips beyond ``num_clips`` from a larger run.

    Readers take every clip folder under the root, so a stale ``scene_0030`` would silently join a 24-clip
    dataset. Only folders this module writes are touched: ``scene_<n>`` holding ``gt/tracks.json``.
    """
    for path in sorted(out_root.iterdir()):
        if not path.is_dir():
            continue
        name = path.name
        stale_tmp = name.startswith(".scene_") and name.endswith((_TMP_SUFFIX, _OLD_SUFFIX))
        number = name.removeprefix("scene_")
        extra = number.isdigit() and int(number) >= num_clips and (path / "gt" / "tracks.json").is_file()
        if stale_tmp or extra:
            logger.warning(
                "removing %s (%s)", path, "interrupted render" if stale_tmp else "beyond num_clips"
            )
            shutil.rmtree(path, ignore_errors=True)


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV threads would only oversubscribe


def _render_index(cfg: ScenesConfig, out_root: Path, index: int) -> Path:
    return render_clip(cfg, index, out_root)


def render_scenes(
    cfg: ScenesConfig, out_root: Path, *, workers: int = 1, progress: bool = True
) -> list[Path]:
    """Render all ``cfg.num_clips`` clips under ``out_root``; returns their folders in index order.

    ``workers > 1`` renders clips in that many processes; each clip is still written atomically.
    """
    out_root = Path(out_root)
    out_root.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(out_root, cfg.num_clips)
    job = partial(_render_index, cfg, out_root)
    paths: list[Path] = []
    with tqdm(total=cfg.num_clips, desc="render scenes", unit="clip", disable=not progress) as bar:
        if workers <= 1:
            for index in range(cfg.num_clips):
                paths.append(job(index))
                bar.update()
        else:
            # spawn, not fork: callers (Prefect, MLflow) run threads, and forking a threaded process can deadlock.
            with mp.get_context("spawn").Pool(min(workers, cfg.num_clips), initializer=_init_worker) as pool:
                for path in pool.imap(job, range(cfg.num_clips)):
                    paths.append(path)
                    bar.update()
    logger.info(
        "rendered %d clips (%dx%d, %d frames) under %s",
        len(paths),
        cfg.width,
        cfg.height,
        cfg.num_frames,
        out_root,
    )
    return paths
