"""Render speed of the synthetic stereo world on one core.

Two numbers, in stereo frame pairs per second (a pair = left + right image with the left view's depth,
instance mask, flow and motion mask):

- ``render``: ``render_frame`` alone, in memory;
- ``render_write``: ``render_clip``, i.e. scene sampling, rendering, PNGs, streamed ``.npz`` ground truth, JSON
  and the atomic move into place (on a temporary folder on the local disk).

Each is reported as wall time and CPU time per pair; on a shared machine the CPU time is the steadier one.

Threads are pinned to one (OpenCV, OpenMP, BLAS) so that the number is per core: ``render_scenes`` scales it
by running one process per worker. Writes ``benchmarks/results/render_speed.json`` (or ``--out``) and prints a
summary line.

    .venv/bin/python benchmarks/render_speed.py [--frames 64] [--width 320] [--height 240]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported, or BLAS has already started its threads

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from components.config import ScenesConfig
from components.scenes import render_clip, render_frame, sample_scene

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "render_speed.json"


def time_render(cfg: ScenesConfig, frames: int) -> tuple[float, float, int]:
    """(wall s, CPU s, pairs) to render ``frames`` pairs, walking through clips to include every kind of scene."""
    specs = [sample_scene(cfg, i) for i in range(-(-frames // cfg.num_frames))]
    render_frame(specs[0], 0)  # warm caches (texture, ray grid) outside the timing
    done, wall, cpu = 0, time.perf_counter(), time.process_time()
    for spec in specs:
        for t in range(min(spec.num_frames, frames - done)):
            render_frame(spec, t)
            done += 1
    return time.perf_counter() - wall, time.process_time() - cpu, done


def time_render_write(cfg: ScenesConfig, frames: int, root: Path) -> tuple[float, float, int]:
    """The same through ``render_clip`` (scene sampling, rendering and writing), whole clips."""
    clips = max(1, -(-frames // cfg.num_frames))
    render_clip(cfg, 0, root / "warmup")
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(clips):
        render_clip(cfg, index, root / "clips")
    return time.perf_counter() - wall, time.process_time() - cpu, clips * cfg.num_frames


def _rates(wall: float, cpu: float, pairs: int) -> dict[str, float]:
    return {
        "pairs": pairs,
        "seconds": round(wall, 4),
        "pairs_per_s": round(pairs / wall, 2),
        "ms_per_pair": round(1e3 * wall / pairs, 3),
        # CPU time is the steadier number on a shared machine: other processes inflate wall time only.
        "cpu_ms_per_pair": round(1e3 * cpu / pairs, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=64, help="stereo pairs to time (per measurement)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    cfg = ScenesConfig(width=args.width, height=args.height)

    render = _rates(*time_render(cfg, args.frames))
    with tempfile.TemporaryDirectory(prefix="render_speed_") as tmp:
        render_write = _rates(*time_render_write(cfg, args.frames, Path(tmp)))

    result = {
        "width": cfg.width,
        "height": cfg.height,
        "frames_per_clip": cfg.num_frames,
        "threads": 1,
        "render": render,
        "render_write": render_write,
        "env": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp_out, args.out)  # atomic: a reader never sees half a result
    print(
        f"render_speed {cfg.width}x{cfg.height}, 1 thread: render {render['pairs_per_s']:.1f} pairs/s "
        f"({render['ms_per_pair']:.1f} ms/pair, {render['cpu_ms_per_pair']:.1f} ms CPU), render+write "
        f"{render_write['pairs_per_s']:.1f} pairs/s ({render_write['ms_per_pair']:.1f} ms/pair, "
        f"{render_write['cpu_ms_per_pair']:.1f} ms CPU) -> {args.out}"
    )


if __name__ == "__main__":
    main()
