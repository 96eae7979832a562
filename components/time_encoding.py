"""The sinusoidal timestamp encoding of 4D-RGPT eq. 5, shared by the student's TPE
(``components.models.tpe``) and the embedded teacher's encoder (``components.teacher.embedded``).
A module of its own so that the teacher imports it without ``components.models`` (transformers)."""

from __future__ import annotations

import math

import torch


def timestamp_encoding(t: torch.Tensor, dim: int, max_timescale: float) -> torch.Tensor:
    """``(...)`` seconds -> ``(..., dim)`` sinusoids of eq. 5 (``dim`` even: sin at 2i, cos at 2i + 1)."""
    if dim % 2:
        raise ValueError(f"TPE needs an even feature size, got {dim}")
    i = torch.arange(dim // 2, dtype=torch.float32, device=t.device)
    freq = torch.exp(-math.log(max_timescale) * 2 * i / dim)  # 1 / T^(2i/D)
    angles = t.float()[..., None] * freq
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)
