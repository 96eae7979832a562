"""The smoke model, built once per session from the smoke curated records; a few real records of each
kind (multiple choice by name, region-prompted with a Set-of-Marks image, numeric)."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import ModelConfig, Params
from components.io import read_jsonl


@pytest.fixture(scope="session")
def model_cfg(smoke_params: Params) -> ModelConfig:
    return smoke_params.model


@pytest.fixture(scope="session")
def curated_records(smoke_curated: tuple[Path, dict]) -> list[dict]:
    out, _ = smoke_curated
    return [r for split in ("sft", "rft", "bench") for r in read_jsonl(out / f"{split}.jsonl")]


@pytest.fixture(scope="session")
def records(curated_records: list[dict]) -> list[dict]:
    """Four records: two multiple choice by name, one region-prompted, one numeric."""
    by_name = [r for r in curated_records if r["answer_type"] == "mc" and not r["som_image"]]
    region = [r for r in curated_records if r["som_image"]]
    numeric = [r for r in curated_records if r["answer_type"] == "numeric"]
    assert len(by_name) >= 2 and region and numeric, "the smoke curation should yield every kind of record"
    return [by_name[0], region[0], numeric[0], by_name[-1]]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, model_cfg: ModelConfig, curated_records: list[dict]) -> Path:
    from components.models import build_base_model, tokenizer_corpus

    # the tokenizer learns from the training splits only, as the pipeline does
    texts = tokenizer_corpus([r for r in curated_records if r["split"] != "bench"], model_cfg)
    return build_base_model(model_cfg, texts, tmp_path_factory.mktemp("models") / "base")
