"""The embedded teacher's training data: teacher inputs and target maps of each distinct (clip, student
frames), stacked in memory, with two augmentations.

4D-RGPT inherits L4P's training data (large video datasets with dense labels). Here there are a few dozen
clips, so two departures multiply them without touching the held-out clips:

- temporal views: besides the records' own student frames, ``EXTRA_VIEWS`` other ordered subsets of
  each training clip's record frames (other time gaps, so other flow magnitudes and camera turns).
  Measured on params.yaml's clips (19 training, 5 held-out, 400 steps, seed 0), without -> with: held-out
  camray angle 1.97 -> 0.24 degrees (without them the teacher learnt the training clips' turns by heart),
  flow EPE 0.55 -> 0.54, motion IoU 0.30 -> 0.31, depth AbsRel 0.030 -> 0.031.
- left-right mirroring of half of each batch (``flip``): a left turn becomes a right turn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from components.config import ModelConfig, StereoConfig, TeacherConfig
from components.teacher.base import TeacherError
from components.teacher.inputs import batch_input, clip_dir, record_key, student_frames
from components.teacher.maps import target_maps

EXTRA_VIEWS = 4


@dataclass
class Data:
    """Stacked teacher inputs and target maps of ``keys`` (one per distinct clip + student frames)."""

    keys: list[str]
    frames: torch.Tensor  # (K, N, 3, F, F) in [0, 1]
    times: torch.Tensor  # (K, N) seconds
    values: dict[str, torch.Tensor]  # (K, N, C, S, S)
    valid: dict[str, torch.Tensor]  # (K, N, 1, S, S) bool

    def batch(self, idx: torch.Tensor | slice) -> tuple:
        return (self.frames[idx], self.times[idx], {m: v[idx] for m, v in self.values.items()},
                {m: v[idx] for m, v in self.valid.items()})

    def head(self, n: int) -> Data:
        frames, times, values, valid = self.batch(slice(0, n))
        return Data(self.keys[:n], frames, times, values, valid)


def load_data(records: list[dict], cfg: TeacherConfig, model_cfg: ModelConfig,
              stereo: StereoConfig | None = None) -> Data:
    """Inputs and maps of each distinct (clip, student frames) of ``records``, in first-seen order."""
    unique: dict[str, dict] = {}
    for r in records:
        unique.setdefault(record_key(r, model_cfg), r)
    if not unique:
        raise TeacherError("no records to build teacher data from")
    maps = [target_maps(clip_dir(r), student_frames(r, model_cfg), cfg.map_size, modalities=cfg.modalities,
                        source=cfg.targets_from, stereo=stereo) for r in unique.values()]
    frames, times = batch_input(list(unique.values()), model_cfg)
    return Data(list(unique), frames, times,
                {m: torch.from_numpy(np.stack([x.values[m] for x in maps])) for m in cfg.modalities},
                {m: torch.from_numpy(np.stack([x.valid[m] for x in maps])) for m in cfg.modalities})


def temporal_views(records: list[dict], model_cfg: ModelConfig, rng: np.random.Generator) -> list[dict]:
    """Per distinct clip of ``records``, ``EXTRA_VIEWS`` random ordered subsets of its record frames, as
    pseudo-records holding exactly ``num_frames`` frames (so the student's frame rule takes them all)."""
    out, seen = [], set()
    for r in records:
        if r["clip_id"] in seen or len(r["frames"]) <= model_cfg.num_frames:
            continue
        seen.add(r["clip_id"])
        for _ in range(EXTRA_VIEWS):
            pick = np.sort(rng.choice(len(r["frames"]), model_cfg.num_frames, replace=False))
            out.append({"id": None, "clip_id": r["clip_id"], "frames": [r["frames"][i] for i in pick],
                        "timestamps": [r["timestamps"][i] for i in pick],
                        "frame_paths": [r["frame_paths"][i] for i in pick]})
    return out


# Mirroring negates x in the flow. Camray is not mirrored: its mirror image is exact only when the principal
# point is the centre of the pixel grid, (W-1)/2; the synthetic clips have W/2, a 0.2 degree error, as large
# as the camray errors themselves. Mirrored samples do not supervise camray.
def flip(frames: torch.Tensor, values: dict[str, torch.Tensor], valid: dict[str, torch.Tensor],
         which: torch.Tensor) -> tuple:
    """Mirror the samples ``which`` (B,) bool of a batch left-right, inputs and target maps together."""
    def pick(flipped: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.where(which.view(-1, *[1] * (x.ndim - 1)), flipped, x)

    sign = torch.tensor([-1.0, 1.0]).view(2, 1, 1)
    values = {m: pick(v.flip(-1) * sign, v) if m == "flow" else v if m == "camray" else pick(v.flip(-1), v)
              for m, v in values.items()}
    valid = {m: pick(torch.zeros_like(v), v) if m == "camray" else pick(v.flip(-1), v) for m, v in valid.items()}
    return pick(frames.flip(-1), frames), values, valid


def mean_maps(data: Data) -> dict[str, torch.Tensor]:
    """Per frame and pixel, the mean of each modality over ``data``'s valid pixels (N, C, S, S), as the
    decoders return it: depth in metres (geometric mean), motion as the logit of the mean probability."""
    out = {}
    for m, v in data.values.items():
        ok = data.valid[m].expand_as(v).float()
        count = ok.sum(0).clamp_min(1.0)
        if m == "depth":
            out[m] = torch.exp((v.clamp_min(1e-3).log() * ok).sum(0) / count)
        elif m == "motion":
            out[m] = torch.logit(((v * ok).sum(0) / count).clamp(1e-3, 1 - 1e-3))
        else:
            out[m] = (v * ok).sum(0) / count
    return out
