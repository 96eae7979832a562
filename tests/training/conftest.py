"""The tiny base model, and the teacher with its cached targets, that the training-stage tests start from,
built once per session."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from components.config import TeacherConfig
from components.io import read_jsonl
from components.models import build_base_model, tokenizer_corpus


@pytest.fixture(scope="session")
def base(tmp_path_factory, smoke_params, smoke_curated) -> Path:
    curated, _ = smoke_curated
    texts = tokenizer_corpus(read_jsonl(curated / "sft.jsonl"), smoke_params.model)
    return build_base_model(smoke_params.model, texts, tmp_path_factory.mktemp("base") / "base")


TEACHER_STEPS = 10  # enough for targets of the right shapes; P4D's tests judge the student, not the teacher


@pytest.fixture(scope="session")
def teacher_and_targets(tmp_path_factory, smoke_params, smoke_curated) -> tuple[TeacherConfig, Path, Path]:
    from components.teacher import load_teacher, train_teacher, write_targets

    curated, _ = smoke_curated
    cfg = dataclasses.replace(smoke_params.teacher, max_steps=TEACHER_STEPS)
    out = tmp_path_factory.mktemp("teacher")
    train_teacher(cfg, smoke_params.model, curated, out / "teacher")
    teacher = load_teacher(out / "teacher", cfg, smoke_params.model)
    write_targets(teacher, read_jsonl(curated / "sft.jsonl"), smoke_params.model, out / "targets")
    return cfg, out / "teacher", out / "targets"
