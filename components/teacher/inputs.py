"""What the teacher sees of a record: the student's frames, raw, and when they were taken.

4D-RGPT feeds the teacher the same sampled video ``V`` the student sees (eq. 1). Here that is the
``model.num_frames`` frames ``components.models.inputs.frame_indices`` picks from a record, resized to
``frame_size`` squares exactly as the student's processor input is (PIL bicubic). Two differences from the
student's input, both deliberate: the teacher always gets the raw first frame, never the Set-of-Marks
image (the marks are a prompt for the student, not part of the scene, and would corrupt every map of that
frame), and the timestamps are passed as numbers rather than burnt into or stated beside the frames.

Records that share a clip and the same student frames share one teacher input and one set of targets:
``record_key`` names that pair.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from components.config import ModelConfig


def _frame_indices(num_available: int, num_frames: int) -> list[int]:
    # Imported here: components.models pulls in transformers (seconds), which maps and targets never need
    # otherwise. The student's own selection rule, so teacher and student always see the same frames.
    from components.models.inputs import frame_indices

    return frame_indices(num_available, num_frames)


def student_positions(record: dict, cfg: ModelConfig) -> list[int]:
    """Positions within the record's ``frames`` / ``frame_paths`` that the student sees."""
    return _frame_indices(len(record["frame_paths"]), cfg.num_frames)


def student_frames(record: dict, cfg: ModelConfig) -> list[int]:
    """Clip frame indices (into ``left/``, ``gt/``, ``poses``) of the frames the student sees."""
    return [int(record["frames"][i]) for i in student_positions(record, cfg)]


def student_timestamps(record: dict, cfg: ModelConfig) -> list[float]:
    return [float(record["timestamps"][i]) for i in student_positions(record, cfg)]


def clip_dir(record: dict) -> Path:
    """The clip folder a record's frames come from (``frame_paths`` are ``<clip>/left/NNNNNN.png``)."""
    return Path(record["frame_paths"][0]).parent.parent


def record_key(record: dict, cfg: ModelConfig) -> str:
    """One name per distinct (clip, student frames): safe as a file name."""
    clip = re.sub(r"[^A-Za-z0-9_.-]", "_", str(record["clip_id"]))
    return f"{clip}__{'-'.join(str(f) for f in student_frames(record, cfg))}"


def teacher_input(record: dict, cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``(frames (N, 3, F, F) float32 in [0, 1], timestamps (N,) seconds)`` for one record: the raw left
    frames the student sees (never the Set-of-Marks image), ``F = cfg.frame_size``."""
    paths = [record["frame_paths"][i] for i in student_positions(record, cfg)]
    frames = np.stack([_load(Path(p), cfg.frame_size) for p in paths])
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)
    return pixels, torch.tensor(student_timestamps(record, cfg), dtype=torch.float32)


def batch_input(records: list[dict], cfg: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """``teacher_input`` of several records stacked: ``(B, N, 3, F, F)``, ``(B, N)``."""
    pairs = [teacher_input(r, cfg) for r in records]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _load(path: Path, size: int) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"frame {path} is missing: re-render or re-curate the clip")
    with Image.open(path) as image:  # the student's resize (components.models.inputs._load_frame)
        return np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
