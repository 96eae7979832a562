"""The interface on the embedded teacher: shapes on image and video grids, clear errors for an unknown
modality, a wrong latent and an incompatible student (differentiability: test_train.py, on a trained one)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from components.config import ModelConfig, TeacherConfig
from components.teacher import CHANNELS, EmbeddedTeacher, Grid, TeacherError, student_grid


def _inputs(cfg: ModelConfig, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    frames = torch.rand(batch, cfg.num_frames, 3, cfg.frame_size, cfg.frame_size)
    return frames, torch.arange(cfg.num_frames, dtype=torch.float32).expand(batch, -1) * 0.25


@pytest.mark.parametrize("model_cfg, grid", [
    (ModelConfig(), Grid(4, 2, 2)),
    (ModelConfig(visual_input="video", time_cue="prompt"), Grid(2, 2, 2)),
    (ModelConfig(num_frames=2, frame_size=112), Grid(2, 4, 4)),
])
def test_shapes_on_the_students_grid(model_cfg: ModelConfig, grid: Grid) -> None:
    torch.manual_seed(0)
    cfg = TeacherConfig(channels=16, heads=2, layers=1, map_size=20)
    teacher = EmbeddedTeacher.from_configs(cfg, model_cfg)
    assert student_grid(model_cfg) == grid == teacher.grid
    latent = teacher.encode(*_inputs(model_cfg))
    assert latent.shape == (2, grid.frames, grid.height, grid.width, 16)
    for m, c in CHANNELS.items():
        maps = teacher.decode(latent, m)
        assert maps.shape == (2, model_cfg.num_frames, c, 20, 20)
        assert torch.isfinite(maps).all()
    assert (teacher.decode(latent, "depth") > 0).all()  # metres


def test_clear_errors() -> None:
    cfg, model_cfg = TeacherConfig(channels=16, heads=2, layers=1, modalities=["depth", "flow"]), ModelConfig()
    teacher = EmbeddedTeacher.from_configs(cfg, model_cfg)
    latent = torch.zeros(1, 4, 2, 2, 16)
    with pytest.raises(TeacherError, match="unknown modality 'motion'"):
        teacher.decode(latent, "motion")
    with pytest.raises(TeacherError, match="latent must be"):
        teacher.decode(torch.zeros(1, 4, 3, 3, 16), "depth")
    with pytest.raises(TeacherError, match=r"frames must be \(B, 4"):
        teacher.encode(torch.zeros(1, 3, 3, 56, 56), torch.zeros(1, 3))
    with pytest.raises(TeacherError, match="does not match the student"):
        teacher.check_compatible(student_grid(replace(model_cfg, frame_size=112)), ["depth"])
    with pytest.raises(TeacherError, match=r"modalities \['camray'\]"):
        teacher.check_compatible(teacher.grid, ["depth", "camray"])
