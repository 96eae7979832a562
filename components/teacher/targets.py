"""Precomputed teacher outputs for P4D: F_4D and every P_m of each record's student frames.

4D-RGPT runs the frozen teacher beside the student at every training step. Its outputs depend only on
the frames, and every question of a clip shares them, so here the teacher runs once per distinct
(clip, student frames) and P4D reads the results:

    <out>/index.json         grid, channels, map_size, modalities, the teacher's digest, the model's frame
                             settings, {key: file, clip, frames}, {record id: key}
    <out>/<key>.npz          latent (N', h', w', c') and one (N, C_m, S, S) array per modality, float16

The folder is written beside its final place and swapped in whole: a failure leaves the previous targets
(or nothing), never a mix. Float16 halves the size; its 3 significant digits are below every metric's noise.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from components.config import ModelConfig
from components.io import write_json
from components.teacher.base import Grid, Teacher, TeacherError, student_grid
from components.teacher.inputs import batch_input, record_key, student_frames

logger = logging.getLogger(__name__)

INDEX = "index.json"
BATCH = 8


def teacher_digest(teacher: Teacher) -> str:
    """sha256 of the teacher's state (names, dtypes, shapes, values): which teacher made a set of targets."""
    h = hashlib.sha256()
    for name, tensor in teacher.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def write_targets(teacher: Teacher, records: list[dict], model_cfg: ModelConfig, out: Path) -> dict:
    """Run ``teacher`` once per distinct (clip, student frames) of ``records`` and write ``out`` (module
    docstring). Returns a summary: keys, records, seconds, digest, out."""
    start, out = time.perf_counter(), Path(out)
    grid = student_grid(model_cfg)
    teacher.check_compatible(grid, teacher.modalities)
    teacher.eval()
    device = next(teacher.parameters()).device
    first: dict[str, dict] = {}
    by_record: dict[str, str] = {}
    for r in records:
        key = record_key(r, model_cfg)
        first.setdefault(key, r)
        by_record[str(r["id"])] = key
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        keys = list(first)
        for i in range(0, len(keys), BATCH):
            chunk = [first[k] for k in keys[i:i + BATCH]]
            frames, times = batch_input(chunk, model_cfg)
            latent = teacher.encode(frames.to(device), times.to(device))
            maps = {m: teacher.decode(latent, m).cpu().numpy().astype(np.float16) for m in teacher.modalities}
            latent = latent.cpu().numpy().astype(np.float16)
            for j, key in enumerate(keys[i:i + BATCH]):
                np.savez_compressed(tmp / f"{key}.npz", latent=latent[j],
                                    **{m: v[j] for m, v in maps.items()})
        digest = teacher_digest(teacher)
        write_json(tmp / INDEX, {
            "grid": asdict(grid), "channels": teacher.channels, "map_size": teacher.map_size,
            "modalities": list(teacher.modalities), "teacher": {"digest": digest, "class": type(teacher).__name__},
            "model": {"num_frames": model_cfg.num_frames, "frame_size": model_cfg.frame_size,
                      "visual_input": model_cfg.visual_input},
            "keys": {k: {"file": f"{k}.npz", "clip_id": first[k]["clip_id"],
                         "frames": student_frames(first[k], model_cfg)} for k in keys},
            "records": by_record,
        })
        _swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    logger.info("teacher targets: %d keys for %d records in %.1f s -> %s", len(keys), len(by_record), seconds, out)
    return {"keys": len(keys), "records": len(by_record), "seconds": round(seconds, 2), "digest": digest,
            "out": str(out)}


def _swap_in(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


@functools.lru_cache(maxsize=8)
def _read_index(path: str, mtime_ns: int) -> dict:
    return json.loads(Path(path).read_text())


def read_index(root: Path) -> dict:
    path = Path(root) / INDEX
    if not path.is_file():
        raise TeacherError(f"{path} is missing: write the teacher targets first (write_targets over the records)")
    try:
        return _read_index(str(path), path.stat().st_mtime_ns)
    except json.JSONDecodeError as exc:
        raise TeacherError(f"{path}: not valid JSON ({exc}); write the teacher targets again") from None


def load_targets(root: Path, record: dict, model_cfg: ModelConfig) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The teacher's ``F_4D`` (N', h', w', c') and ``{modality: P_m (N, C_m, S, S)}`` for ``record``, float32."""
    root = Path(root)
    index = read_index(root)
    grid, expected = Grid(**index["grid"]), student_grid(model_cfg)
    if grid != expected:
        raise TeacherError(f"{root / INDEX}: targets were written for grid {grid}, the model's grid is {expected}: "
                           "write the targets again with this model config")
    key = index["records"].get(str(record["id"]))
    if key is None:
        raise TeacherError(f"record {record['id']!r} has no teacher targets in {root / INDEX}: write the targets "
                           "over the records being trained on")
    if key != record_key(record, model_cfg):
        raise TeacherError(f"{root / INDEX}: record {record['id']!r} was written for frames {key}, the model now "
                           f"sees {record_key(record, model_cfg)}: write the targets again")
    path = root / index["keys"][key]["file"]
    if not path.is_file():
        raise TeacherError(f"{path} is missing (listed in {root / INDEX}): write the teacher targets again")
    with np.load(path) as data:
        latent = data["latent"].astype(np.float32)
        maps = {m: data[m].astype(np.float32) for m in index["modalities"]}
    return latent, maps
