"""A few real smoke records of each kind (multiple choice by name, region-prompted with a Set-of-Marks
image, numeric); the smoke model and the records it is built from are in tests/conftest.py."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def records(curated_records: list[dict]) -> list[dict]:
    """Four records: two multiple choice by name, one region-prompted, one numeric."""
    by_name = [r for r in curated_records if r["answer_type"] == "mc" and not r["som_image"]]
    region = [r for r in curated_records if r["som_image"]]
    numeric = [r for r in curated_records if r["answer_type"] == "numeric"]
    assert len(by_name) >= 2 and region and numeric, "the smoke curation should yield every kind of record"
    return [by_name[0], region[0], numeric[0], by_name[-1]]
