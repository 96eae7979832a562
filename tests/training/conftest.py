"""The tiny base model the training-stage tests start from, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.io import read_jsonl
from components.models import build_base_model, tokenizer_corpus


@pytest.fixture(scope="session")
def base(tmp_path_factory, smoke_params, smoke_curated) -> Path:
    curated, _ = smoke_curated
    texts = tokenizer_corpus(read_jsonl(curated / "sft.jsonl"), smoke_params.model)
    return build_base_model(smoke_params.model, texts, tmp_path_factory.mktemp("base") / "base")
