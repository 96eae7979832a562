"""Shared fixtures: the smoke preset, rendered and curated once per session, tracked in a temporary
SQLite MLflow; the smoke model built once from its records; quiet, offline library defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.env import apply_quiet_defaults

apply_quiet_defaults()

from components.config import ModelConfig, Params, load_params
from components.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "presets" / "smoke.yaml"


@pytest.fixture(scope="session")
def project_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch project root: MLflow's SQLite file and artifacts land here, not in the checkout."""
    return tmp_path_factory.mktemp("project")


@pytest.fixture(scope="session")
def smoke_params() -> Params:
    return load_params(SMOKE)


@pytest.fixture(scope="session")
def smoke_scenes(tmp_path_factory: pytest.TempPathFactory, smoke_params: Params) -> Path:
    from components.scenes import render_scenes

    out = tmp_path_factory.mktemp("scenes")
    render_scenes(smoke_params.scenes, out, workers=2, progress=False)
    return out


@pytest.fixture(scope="session")
def smoke_curated(tmp_path_factory: pytest.TempPathFactory, smoke_params: Params, smoke_scenes: Path) -> tuple[Path, dict]:
    from components.curation.run import curate

    out = tmp_path_factory.mktemp("curated")
    stats = curate(smoke_scenes, smoke_params.curation, out, progress=False)
    return out, stats


@pytest.fixture(scope="session")
def model_cfg(smoke_params: Params) -> ModelConfig:
    return smoke_params.model


@pytest.fixture(scope="session")
def curated_records(smoke_curated: tuple[Path, dict]) -> list[dict]:
    out, _ = smoke_curated
    return [r for split in ("sft", "rft", "bench") for r in read_jsonl(out / f"{split}.jsonl")]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, model_cfg: ModelConfig, curated_records: list[dict]) -> Path:
    from components.models import build_base_model, tokenizer_corpus

    # the tokenizer learns from the training splits only, as the pipeline does
    texts = tokenizer_corpus([r for r in curated_records if r["split"] != "bench"], model_cfg)
    return build_base_model(model_cfg, texts, tmp_path_factory.mktemp("models") / "base")
