"""Small scenes (96 x 72, 4 frames) so that every test of the renderer runs in well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import ScenesConfig


@pytest.fixture(scope="session")
def small_cfg() -> ScenesConfig:
    return ScenesConfig(seed=3, num_clips=6, num_frames=4, width=96, height=72)


@pytest.fixture(scope="session")
def small_clips(tmp_path_factory: pytest.TempPathFactory, small_cfg: ScenesConfig) -> list[Path]:
    from components.scenes import render_scenes

    return render_scenes(small_cfg, tmp_path_factory.mktemp("scenes"), progress=False)
