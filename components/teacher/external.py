"""An external, pre-trained 4D perception teacher (L4P, or any model with the same outputs), from a folder.

4D-RGPT uses L4P's encoder and decoders as they are, frozen. L4P's code and weights cannot be installed or
downloaded here, so this adapter defines the seam instead of faking the model:

    <folder>/teacher.json   {"kind": ..., "weights": "<file>.safetensors", "modalities": [...], ...}
    <folder>/<file>.safetensors

``kind`` names a builder in ``KINDS`` that makes the model (a ``Teacher`` on its own latent grid) from the
manifest and the state dict; ``register_kind("l4p", builder)`` adds L4P where its code is installed.
Shipped: ``"embedded"`` (an ``EmbeddedTeacher`` folder, possibly trained for another grid). Weights are
read with safetensors only: no pickle, no ``trust_remote_code``, no download.

The adapter then puts the model on the student's grid: ``encode`` resizes the frames to the model's input
and adaptive-average-pools its latent (T, h, w) to the student's (N', h', w'); ``decode`` interpolates a
student-grid latent back to (T, h, w) (trilinear), runs the model's decoder and resizes the maps to
``teacher.map_size`` (bilinear; flow rescaled to the new pixels). Both resamplings are differentiable, and
the identity when the grids agree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file

from components.config import ModelConfig, TeacherConfig
from components.teacher.base import Grid, Teacher, TeacherError, student_grid
from components.teacher.embedded import Architecture, EmbeddedTeacher, read_manifest

Builder = Callable[[dict, dict[str, torch.Tensor]], Teacher]
HOW = ("put the teacher there: teacher.json naming its kind, weights file and modalities, beside the weights as "
       ".safetensors (convert a PyTorch checkpoint with safetensors.torch.save_file); nothing is downloaded")


def _embedded(manifest: dict, state: dict[str, torch.Tensor]) -> Teacher:
    teacher = EmbeddedTeacher(Architecture.from_json(manifest["architecture"]))
    teacher.load_state_dict(state)
    return teacher


KINDS: dict[str, Builder] = {"embedded": _embedded}


def register_kind(name: str, builder: Builder) -> None:
    """Teach the adapter a model family: ``builder(manifest, state_dict)`` returns a ``Teacher`` (its own
    grid, channels, map_size, modalities) with the weights loaded."""
    KINDS[name] = builder


class ExternalTeacher(Teacher):
    """A model on its own latent grid, adapted to the student's grid and map size (module docstring)."""

    def __init__(self, model: Teacher, grid: Grid, num_frames: int, map_size: int):
        super().__init__()
        self.model, self.grid, self.num_frames = model, grid, num_frames
        self.channels, self.map_size, self.modalities = model.channels, map_size, tuple(model.modalities)

    @classmethod
    def load(cls, folder: str | Path, cfg: TeacherConfig, model_cfg: ModelConfig) -> ExternalTeacher:
        folder = Path(folder)
        manifest = read_manifest(folder, how=HOW)
        kind, weights = manifest.get("kind"), manifest.get("weights")
        if kind not in KINDS:
            raise TeacherError(f"{folder / 'teacher.json'}: kind {kind!r} has no builder (known: {sorted(KINDS)}). "
                               "L4P's code is not installable here: where it is, register one with "
                               "components.teacher.external.register_kind(kind, builder)")
        if not isinstance(weights, str) or not weights.endswith(".safetensors"):
            raise TeacherError(f"{folder / 'teacher.json'}: 'weights' must name a .safetensors file in the folder, "
                               f"got {weights!r} (pickle checkpoints are never loaded: they can run code)")
        path = folder / weights
        if not path.is_file():
            raise TeacherError(f"{path} is missing (named by teacher.json): {HOW}")
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise TeacherError(f"{path}: not readable as safetensors ({exc})") from None
        try:
            model = KINDS[kind](manifest, state)
        except (KeyError, RuntimeError, TypeError) as exc:  # a missing manifest field, a state-dict mismatch
            raise TeacherError(f"{folder}: cannot build a {kind!r} teacher from teacher.json and {weights}: "
                               f"{exc}") from None
        return cls(model, student_grid(model_cfg), model_cfg.num_frames, cfg.map_size)

    def encode(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        size = getattr(getattr(self.model, "arch", None), "frame_size", None)
        if size and frames.shape[-2:] != (size, size):
            b, n = frames.shape[:2]
            frames = F.interpolate(frames.flatten(0, 1), size=(size, size), mode="bilinear", antialias=True,
                                   align_corners=False).view(b, n, 3, size, size)
        latent = self.model.encode(frames, timestamps)
        g = self.grid
        if tuple(latent.shape[1:4]) == (g.frames, g.height, g.width):
            return latent
        pooled = F.adaptive_avg_pool3d(latent.permute(0, 4, 1, 2, 3), (g.frames, g.height, g.width))
        return pooled.permute(0, 2, 3, 4, 1)

    def decode(self, latent: torch.Tensor, modality: str) -> torch.Tensor:
        if modality not in self.modalities:
            raise TeacherError(f"unknown modality {modality!r}: this teacher decodes {list(self.modalities)}")
        g, native = self.grid, self.model.grid
        if latent.ndim != 5 or tuple(latent.shape[1:]) != (g.frames, g.height, g.width, self.channels):
            raise TeacherError(f"latent must be (B, {g.frames}, {g.height}, {g.width}, {self.channels}), "
                               f"got {tuple(latent.shape)}")
        if (g.frames, g.height, g.width) != (native.frames, native.height, native.width):
            latent = F.interpolate(latent.permute(0, 4, 1, 2, 3), size=(native.frames, native.height, native.width),
                                   mode="trilinear", align_corners=False).permute(0, 2, 3, 4, 1)
        maps = self.model.decode(latent, modality)
        if maps.shape[1] != self.num_frames:
            raise TeacherError(f"the external teacher decodes {maps.shape[1]} frames; the student sees "
                               f"{self.num_frames}: match model.num_frames to the teacher's clip length")
        side = maps.shape[-1]
        if side != self.map_size:
            b, n, c = maps.shape[:3]
            maps = F.interpolate(maps.flatten(0, 1), size=(self.map_size, self.map_size), mode="bilinear",
                                 align_corners=False).view(b, n, c, self.map_size, self.map_size)
            if modality == "flow":  # pixels of the new map
                maps = maps * (self.map_size / side)
        return maps
