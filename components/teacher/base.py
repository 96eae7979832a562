"""One interface for any 4D perception teacher (4D-RGPT eq. 1 and 4; L4P's structure).

A teacher encodes the frames a student sees into latent features ``F_4D`` of shape
``(B, N', h', w', c')`` on the student's visual token grid, and decodes any such latent (the teacher's
own, or the student's ``F_hat_4D``) with one decoder ``D_m`` per modality into per-pixel maps
``P_m`` of shape ``(B, N, C_m, S, S)``. P4D needs the decoders to be differentiable in their input and
frozen in their weights, so that the explicit distillation loss trains the student, not the teacher.

Maps, per frame ``n`` of the ``N`` input frames (in the first sampled frame's camera: x right, y down,
z forward):
  depth   1 channel, metres
  flow    2 channels, pixels at map resolution, from frame n to n+1 (the last frame's flow is zero and
          masked out of losses and metrics)
  motion  1 channel, logit of "this pixel belongs to a moving object"
  camray  6 channels, the Pluecker ray (direction d, moment o x d) of each pixel
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from components.config import MODALITIES, ModelConfig

CHANNELS: dict[str, int] = {"depth": 1, "flow": 2, "motion": 1, "camray": 6}
assert set(CHANNELS) == set(MODALITIES)


class TeacherError(ValueError):
    """A teacher cannot be used as asked: missing weights, a grid or modality mismatch."""


@dataclass(frozen=True)
class Grid:
    """The student's visual token grid: ``frames`` (N') x ``height`` (h') x ``width`` (w')."""

    frames: int
    height: int
    width: int

    @property
    def tokens(self) -> int:
        return self.frames * self.height * self.width


def student_grid(cfg: ModelConfig, *, patch_size: int | None = None, merge_size: int | None = None,
                 temporal_patch_size: int | None = None) -> Grid:
    """The token grid a Qwen-VL model gives ``cfg.num_frames`` frames of ``cfg.frame_size`` pixels: one
    temporal slot per image (images), or per ``temporal_patch_size`` frames (video); one token per
    ``patch_size * merge_size`` pixels. Sizes default to ``cfg.tiny``; pass a checkpoint's own."""
    patch = patch_size or cfg.tiny.patch_size
    merge = merge_size or cfg.tiny.spatial_merge_size
    temporal = temporal_patch_size or cfg.tiny.temporal_patch_size
    side = cfg.frame_size // (patch * merge)
    frames = cfg.num_frames if cfg.visual_input == "images" else cfg.num_frames // temporal
    return Grid(frames, side, side)


class Teacher(nn.Module):
    """The interface. Implementations: ``EmbeddedTeacher`` (trained here), ``ExternalTeacher`` (L4P)."""

    grid: Grid
    channels: int  # c'
    map_size: int  # S
    modalities: tuple[str, ...]

    def encode(self, frames: torch.Tensor, timestamps: torch.Tensor) -> torch.Tensor:
        """``frames`` (B, N, 3, H, W) in [0, 1], ``timestamps`` (B, N) seconds -> ``F_4D`` (B, N', h', w', c')."""
        raise NotImplementedError

    def decode(self, latent: torch.Tensor, modality: str) -> torch.Tensor:
        """``latent`` (B, N', h', w', c') -> ``P_m`` (B, N, C_m, S, S)."""
        raise NotImplementedError

    def check_compatible(self, grid: Grid, modalities: list[str] | tuple[str, ...]) -> None:
        """Raise ``TeacherError`` before any training if the student's grid or the asked modalities do
        not match what this teacher produces."""
        if grid != self.grid:
            raise TeacherError(f"the teacher's latent grid {self.grid} does not match the student's visual token "
                               f"grid {grid}: rebuild the teacher for model.num_frames / frame_size / visual_input")
        missing = sorted(set(modalities) - set(self.modalities))
        if missing:
            raise TeacherError(f"modalities {missing} requested, but the teacher produces only {list(self.modalities)}")

    def freeze(self) -> Teacher:
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
        return self
