"""The external-teacher adapter: every missing piece is an error that says what and how; a folder exported
from an embedded teacher loads through it, matches the teacher on the same grid and is resampled to another
student grid and map size, differentiably."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from components.config import ModelConfig, TeacherConfig
from components.teacher import (
    CHANNELS,
    EmbeddedTeacher,
    ExternalTeacher,
    TeacherError,
    TeacherResult,
    batch_input,
    load_teacher,
)


@pytest.fixture()
def folder(trained: TeacherResult, tmp_path: Path) -> Path:
    """An external teacher folder: the trained embedded teacher's files under another name."""
    out = tmp_path / "external"
    out.mkdir()
    shutil.copy(trained.out / "teacher.safetensors", out / "model.safetensors")
    manifest = json.loads((trained.out / "teacher.json").read_text())
    (out / "teacher.json").write_text(json.dumps({"kind": "embedded", "weights": "model.safetensors",
                                                  "architecture": manifest["architecture"],
                                                  "modalities": manifest["modalities"]}))
    return out


def _external(cfg: TeacherConfig, folder: Path) -> TeacherConfig:
    return replace(cfg, source=str(folder))


def test_missing_pieces_say_what_and_how(folder: Path, teacher_cfg: TeacherConfig, model_cfg: ModelConfig,
                                         tmp_path: Path) -> None:
    cfg = _external(teacher_cfg, folder)
    with pytest.raises(TeacherError, match="does not exist: put the teacher there.*nothing is downloaded"):
        load_teacher(tmp_path / "absent", cfg, model_cfg)
    (folder / "model.safetensors").unlink()
    with pytest.raises(TeacherError, match=r"model.safetensors is missing \(named by teacher.json\)"):
        load_teacher(folder, cfg, model_cfg)
    manifest = json.loads((folder / "teacher.json").read_text())
    (folder / "teacher.json").write_text(json.dumps({**manifest, "weights": "model.pt"}))
    with pytest.raises(TeacherError, match="must name a .safetensors file"):
        load_teacher(folder, cfg, model_cfg)
    (folder / "teacher.json").write_text(json.dumps({**manifest, "kind": "l4p"}))
    with pytest.raises(TeacherError, match="kind 'l4p' has no builder.*register_kind"):
        load_teacher(folder, cfg, model_cfg)
    (folder / "teacher.json").unlink()
    with pytest.raises(TeacherError, match="teacher.json is missing"):
        load_teacher(folder, cfg, model_cfg)


def test_a_mismatched_state_dict_is_a_clear_error(folder: Path, teacher_cfg: TeacherConfig,
                                                  model_cfg: ModelConfig) -> None:
    manifest = json.loads((folder / "teacher.json").read_text())
    manifest["architecture"]["channels"] = 64
    (folder / "teacher.json").write_text(json.dumps(manifest))
    with pytest.raises(TeacherError, match="cannot build a 'embedded' teacher"):
        load_teacher(folder, _external(teacher_cfg, folder), model_cfg)


def test_same_grid_matches_the_embedded_teacher(folder: Path, trained: TeacherResult, teacher_cfg: TeacherConfig,
                                                model_cfg: ModelConfig, records: list[dict]) -> None:
    external = load_teacher(folder, _external(teacher_cfg, folder), model_cfg)
    assert isinstance(external, ExternalTeacher) and not any(p.requires_grad for p in external.parameters())
    embedded = EmbeddedTeacher.load(trained.out).freeze()
    frames, times = batch_input(records[:2], model_cfg)
    with torch.no_grad():
        latent = external.encode(frames, times)
        assert torch.equal(latent, embedded.encode(frames, times))
        for m in CHANNELS:
            assert torch.equal(external.decode(latent, m), embedded.decode(latent, m))


def test_another_student_grid_and_map_size_are_resampled(folder: Path, teacher_cfg: TeacherConfig,
                                                         model_cfg: ModelConfig, records: list[dict]) -> None:
    student = replace(model_cfg, frame_size=112)  # 4 x 4 x 4 tokens
    cfg = replace(_external(teacher_cfg, folder), map_size=14)
    external = load_teacher(folder, cfg, student)
    frames, times = batch_input(records[:2], student)
    assert frames.shape[-1] == 112
    with torch.no_grad():
        latent = external.encode(frames, times)
    assert latent.shape == (2, 4, 4, 4, external.channels)
    native = replace(_external(teacher_cfg, folder), map_size=28)
    at_native = load_teacher(folder, native, student)
    latent.requires_grad_(True)
    flow = external.decode(latent, "flow")
    assert flow.shape == (2, 4, 2, 14, 14)
    # Same maps at half the size: flow in pixels of the smaller map is about half as long.
    big = at_native.decode(latent, "flow")
    assert torch.allclose(flow.detach().abs().mean(), big.detach().abs().mean() / 2, rtol=0.1)
    flow.square().mean().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    with pytest.raises(TeacherError, match="unknown modality"):
        external.decode(latent, "normals")
