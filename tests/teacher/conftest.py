"""The smoke clips' curated records, the student's default grid (4 frames x 2 x 2 tokens of 56-pixel frames)
and one embedded teacher trained briefly on them, shared by the teacher tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from components.config import ModelConfig, Params, TeacherConfig
from components.io import read_jsonl
from components.teacher import TeacherResult, train_teacher

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_cfg(smoke_params: Params) -> ModelConfig:
    return replace(smoke_params.model, num_frames=4)  # the default grid: 4 x 2 x 2


@pytest.fixture(scope="session")
def teacher_cfg(smoke_params: Params) -> TeacherConfig:
    return replace(smoke_params.teacher, channels=32, max_steps=40)


@pytest.fixture(scope="session")
def curated(smoke_curated: tuple[Path, dict]) -> Path:
    return smoke_curated[0]


@pytest.fixture(scope="session")
def records(curated: Path) -> list[dict]:
    return [r for split in ("sft", "rft", "bench") for r in read_jsonl(curated / f"{split}.jsonl")]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, teacher_cfg: TeacherConfig, model_cfg: ModelConfig,
            curated: Path) -> TeacherResult:
    return train_teacher(teacher_cfg, model_cfg, curated, tmp_path_factory.mktemp("teacher") / "teacher")
