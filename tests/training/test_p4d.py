"""P4D composes TRL's SFTTrainer with the distillation loss: the student and D_4DP train, the teacher stays
frozen, the exported model is exactly the base architecture, and bad targets fail before any step."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from components.config import ModalityWeights
from components.io import read_jsonl
from components.models import apply_trainable, encode_batch, load_model
from components.models.factory import model_digest
from components.teacher import TeacherError, load_teacher, student_grid
from components.training.p4d import TARGET_PREFIX, Distiller, TargetCollator, run_p4d
from components.training.sft import RecordCollator


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smoke_params, smoke_curated, base, teacher_and_targets):
    curated, _ = smoke_curated
    teacher_cfg, teacher_dir, targets = teacher_and_targets
    train = dataclasses.replace(smoke_params.p4d.train, max_steps=8, batch_size=4, logging_steps=2, save_steps=8)
    cfg = dataclasses.replace(smoke_params.p4d, train=train, depth_log_steps=2)
    out = tmp_path_factory.mktemp("p4d")
    return run_p4d(cfg, teacher_cfg, smoke_params.model, curated, base, teacher_dir, targets, out, progress=False), out


def test_p4d_trains_the_student_and_exports_the_base_architecture_only(trained, base):
    result, out = trained
    before, after = load_file(str(base / "model.safetensors")), load_file(str(result.model_dir / "model.safetensors"))
    assert before.keys() == after.keys()  # no D_4DP, no teacher decoder: training-only means training-only
    assert {k: v.shape for k, v in before.items()} == {k: v.shape for k, v in after.items()}
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.layers.") for k in changed), "the LLM did not train"
    assert result.losses and all(torch.isfinite(torch.tensor(result.losses)))
    parts = set().union(*(e.keys() for e in result.distill_curve))
    assert {"p4d/ld", "p4d/depth", "p4d/flow", "p4d/motion", "p4d/camray", "p4d/p4d"} <= parts
    assert len(result.depth_snapshots) == 2  # the student's depth beside the teacher's (4D-RGPT Fig. 5)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["stage"] == "p4d" and meta["steps"] == 8
    assert meta["inputs"]["sft_model"]["sha256"] == model_digest(base) is not None  # lineage, by digest


def test_distillation_gradients_reach_the_student_not_the_teacher(smoke_params, smoke_curated, base, teacher_and_targets):
    curated, _ = smoke_curated
    teacher_cfg, teacher_dir, targets = teacher_and_targets
    cfg = smoke_params.model
    teacher = load_teacher(teacher_dir, teacher_cfg, cfg)
    model, processor = load_model(base, cfg, for_training=True)
    model = apply_trainable(model, cfg)
    distiller = Distiller(model, teacher, smoke_params.p4d, student_grid(cfg))
    distiller.attach()
    records = read_jsonl(curated / "sft.jsonl")[:3]
    collate = TargetCollator(RecordCollator(processor, cfg), targets, cfg, ["depth", "flow", "motion", "camray"])
    batch = collate([{"record": json.dumps(r)} for r in records])
    model(**{k: v for k, v in batch.items() if k != "labels"})  # the pre-hook takes the targets out
    loss = distiller.loss()  # distillation only, no SFT term
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
               if n.startswith("model.language_model.layers."))
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for p in distiller.decoder.parameters())
    distiller.detach()
    assert not hasattr(model, "p4d_decoder")
    batch = encode_batch(records, processor, cfg, with_target=True)
    assert not any(k.startswith(TARGET_PREFIX) for k in batch)


def test_bad_targets_fail_before_training(tmp_path, smoke_params, smoke_curated, base, teacher_and_targets):
    curated, _ = smoke_curated
    teacher_cfg, teacher_dir, targets = teacher_and_targets
    p4d = smoke_params.p4d

    def run(targets_dir, cfg=p4d, model_cfg=smoke_params.model):
        return run_p4d(cfg, teacher_cfg, model_cfg, curated, base, teacher_dir, targets_dir, tmp_path / "out",
                       progress=False)

    with pytest.raises(TeacherError, match="index.json"):
        run(tmp_path / "nowhere")
    # a target file gone: named before any step
    broken = tmp_path / "broken"
    shutil.copytree(targets, broken)
    index = json.loads((broken / "index.json").read_text())
    for f in broken.glob("*.npz"):
        f.unlink()
    with pytest.raises(TeacherError, match="npz"):
        run(broken)
    # a student whose visual token grid differs from the targets'
    with pytest.raises(TeacherError, match="grid"):
        run(targets, model_cfg=dataclasses.replace(smoke_params.model, frame_size=2 * smoke_params.model.frame_size))
    # a modality the teacher did not produce
    index["modalities"] = ["depth"]
    (broken / "index.json").write_text(json.dumps(index))
    with pytest.raises(TeacherError, match="flow"):
        run(broken, cfg=dataclasses.replace(p4d, explicit_weights=ModalityWeights(flow=1.0)))
    assert not (tmp_path / "out" / "model").exists()
