"""A short training on the smoke clips: the loss falls, held-out metrics are finite, the folder reloads to
the same outputs, frozen, with decoders differentiable in the latent; nothing is written on failure."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import ModelConfig, TeacherConfig
from components.teacher import (
    CHANNELS,
    EmbeddedTeacher,
    TeacherError,
    TeacherResult,
    batch_input,
    depth_image,
    load_teacher,
    teacher_digest,
    train_teacher,
)

METRICS = {"depth_absrel", "flow_epe", "motion_iou", "camray_angle_deg", "camray_moment_l2"}


def test_loss_falls_and_held_out_metrics_are_finite(trained: TeacherResult) -> None:
    # The heads start at the training-mean maps, so the loss starts at the trivial baseline's level; batches
    # differ, so compare averages.
    curve = trained.loss_curve
    assert curve[-1]["step"] == 40 and len(curve) == 40
    assert np.mean([p["loss"] for p in curve[-10:]]) < np.mean([p["loss"] for p in curve[:10]])
    assert np.mean([p["depth"] for p in curve[-10:]]) < 0.85 * np.mean([p["depth"] for p in curve[:10]])
    assert set(trained.metrics) == set(trained.baselines) == set(trained.train_metrics) == METRICS
    assert all(np.isfinite(v) for v in [*trained.metrics.values(), *trained.baselines.values()])
    assert trained.train_samples >= 4 and trained.eval_samples >= 1
    assert trained.seconds < 60  # about 10 s on one core


def test_the_folder_is_complete_and_reloads_frozen(trained: TeacherResult, teacher_cfg: TeacherConfig,
                                                   model_cfg: ModelConfig, records: list[dict]) -> None:
    out = trained.out
    assert sorted(p.name for p in out.iterdir()) == ["teacher.json", "teacher.safetensors"]  # no temporaries
    manifest = json.loads((out / "teacher.json").read_text())
    assert manifest["kind"] == "embedded" and manifest["grid"] == {"frames": 4, "height": 2, "width": 2}
    assert manifest["metrics"] == pytest.approx(trained.metrics) and manifest["weights_sha256"]
    teacher = load_teacher(out, teacher_cfg, model_cfg)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    again = EmbeddedTeacher.load(out).eval()
    frames, times = batch_input(records[:3], model_cfg)
    with torch.no_grad():
        a, b = teacher.encode(frames, times), again.encode(frames, times)
        assert torch.equal(a, b)
        for m in CHANNELS:
            assert torch.equal(teacher.decode(a, m), again.decode(b, m))
    assert teacher_digest(teacher) == teacher_digest(again)


def test_decoders_are_differentiable_in_the_latent_while_frozen(trained: TeacherResult, teacher_cfg: TeacherConfig,
                                                                model_cfg: ModelConfig, records: list[dict]) -> None:
    teacher = load_teacher(trained.out, teacher_cfg, model_cfg)
    with torch.no_grad():
        latent = teacher.encode(*batch_input(records[:2], model_cfg))
    latent.requires_grad_(True)
    sum(teacher.decode(latent, m).square().mean() for m in CHANNELS).backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


def test_training_is_deterministic_with_the_seed(tmp_path: Path, teacher_cfg: TeacherConfig,
                                                 model_cfg: ModelConfig, curated: Path) -> None:
    cfg = replace(teacher_cfg, max_steps=3)
    a = train_teacher(cfg, model_cfg, curated, tmp_path / "a")
    b = train_teacher(cfg, model_cfg, curated, tmp_path / "b")
    assert a.loss_curve == b.loss_curve and a.metrics == b.metrics
    assert teacher_digest(EmbeddedTeacher.load(a.out)) == teacher_digest(EmbeddedTeacher.load(b.out))


def test_estimated_targets_train_too(tmp_path: Path, teacher_cfg: TeacherConfig, model_cfg: ModelConfig,
                                     curated: Path, smoke_params) -> None:
    cfg = replace(teacher_cfg, max_steps=2, targets_from="estimates")
    result = train_teacher(cfg, model_cfg, curated, tmp_path / "t", stereo=smoke_params.curation.stereo)
    assert all(np.isfinite(v) for v in result.metrics.values())


def test_a_failure_writes_nothing(tmp_path: Path, teacher_cfg: TeacherConfig, model_cfg: ModelConfig,
                                  curated: Path, records: list[dict]) -> None:
    # A copy of the curated records pointing at a clip whose gt/ is gone.
    clip = Path(records[0]["frame_paths"][0]).parent.parent
    broken = tmp_path / "scenes" / clip.name
    shutil.copytree(clip, broken)
    shutil.rmtree(broken / "gt")
    rows = [{**r, "frame_paths": [str(broken / "left" / Path(p).name) for p in r["frame_paths"]]}
            for r in records if r["clip_id"] == clip.name and r["split"] == "sft"]
    (tmp_path / "curated").mkdir()
    (tmp_path / "curated" / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TeacherError, match=rf"{clip.name} \(gt/depth.npz\): missing"):
        train_teacher(teacher_cfg, model_cfg, tmp_path / "curated", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_load_teacher_refuses_a_mismatched_config(trained: TeacherResult, teacher_cfg: TeacherConfig,
                                                  model_cfg: ModelConfig, tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="map_size"):
        load_teacher(trained.out, replace(teacher_cfg, map_size=14), model_cfg)
    with pytest.raises(TeacherError, match="does not match the student"):
        load_teacher(trained.out, teacher_cfg, replace(model_cfg, frame_size=112))
    with pytest.raises(TeacherError, match="names no folder"):
        load_teacher("embedded", teacher_cfg, model_cfg)
    with pytest.raises(TeacherError, match="does not exist"):
        load_teacher(tmp_path / "nothing", teacher_cfg, model_cfg)
    copy = tmp_path / "copy"
    shutil.copytree(trained.out, copy)
    (copy / "teacher.safetensors").write_bytes((copy / "teacher.safetensors").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(TeacherError, match="does not match"):
        load_teacher(copy, teacher_cfg, model_cfg)


def test_depth_image() -> None:
    depth = np.linspace(1.0, 20.0, 12, dtype=np.float32).reshape(1, 3, 4)
    depth[0, 0, 0] = np.nan
    image = depth_image(depth)
    assert image.shape == (3, 4, 3) and image.dtype == np.uint8
    assert (image[0, 0] == 0).all() and image[2, 3].any()
    assert not np.array_equal(image[0, 1], image[2, 3])  # near and far differ
    assert (depth_image(np.full((2, 2), np.nan)) == 0).all()
