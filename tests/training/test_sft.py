"""SFT composes TRL's SFTTrainer on the tiny model: parameters change, the loss falls, the frozen vision
tower stays put, training resumes from a checkpoint, bad input fails before compute, the gate judges."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from components.io import check_folder_digest, read_jsonl
from components.models.factory import DIGEST, model_digest
from components.training.gate import TrainingGateFailed, training_gate
from components.training.sft import run_sft, trl_args

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smoke_params, smoke_curated, base):
    curated, _ = smoke_curated
    cfg = replace(smoke_params.sft, max_steps=12, batch_size=4, logging_steps=2, save_steps=6)
    out = tmp_path_factory.mktemp("sft")
    return run_sft(cfg, smoke_params.model, curated, base, out, progress=False), out


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_sft_changes_trainable_parts_only_and_loss_falls(trained, base):
    result, out = trained
    assert result.steps == 12 and len(result.losses) == 6
    assert result.losses[-1] < result.losses[0]
    before, after = _weights(base), _weights(result.model_dir)
    assert before.keys() == after.keys()  # the base architecture, nothing added
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(".merger." in k for k in changed), "the projector did not train"
    assert any(k.startswith("model.layers.") for k in changed), "the LLM did not train"
    assert not any(k.startswith("visual.") and ".merger." not in k for k in changed), "frozen vision moved"
    meta = json.loads((out / "meta.json").read_text())
    assert meta["inputs"]["records"]["sha256"] and meta["steps"] == 12


def test_lineage_records_the_model_digests(trained, base):
    """meta.json names the exact base model it started from and the model it wrote, by their digests."""
    result, out = trained
    meta = json.loads((out / "meta.json").read_text())
    assert meta["inputs"]["base_model"]["sha256"] == model_digest(base) is not None
    assert meta["model_digest"] == check_folder_digest(result.model_dir, DIGEST)


def test_sft_resumes_from_the_last_checkpoint(trained, smoke_params, smoke_curated, base):
    _, out = trained
    curated, _ = smoke_curated
    cfg = replace(smoke_params.sft, max_steps=14, batch_size=4, logging_steps=2, save_steps=6)
    resumed = run_sft(cfg, smoke_params.model, curated, base, out, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resumed_from"].endswith("checkpoint-12") and resumed.steps == 14


def test_a_finished_run_is_not_trained_again(trained, smoke_params, smoke_curated, base):
    """Run again with the same budget (a second `make run`): the finished run's last checkpoint is the model,
    no step past max_steps (the Trainer, resumed at max_steps, would train one more)."""
    _, out = trained
    curated, _ = smoke_curated
    cfg = replace(smoke_params.sft, max_steps=14, batch_size=4, logging_steps=2, save_steps=6)
    first = run_sft(cfg, smoke_params.model, curated, base, out, progress=False)  # finishes at 14 (or resumes)
    before = _weights(first.model_dir)
    again = run_sft(cfg, smoke_params.model, curated, base, out, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert again.steps == 14 and meta["steps"] == 14 and meta["resumed_from"].endswith("checkpoint-14")
    after = _weights(again.model_dir)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert again.losses == first.losses  # the log history comes back with the checkpoint


def test_bad_input_fails_before_compute(tmp_path, smoke_params, smoke_curated, base):
    curated, _ = smoke_curated
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "sft.jsonl").write_text("")
    with pytest.raises(ValueError, match="no records"):
        run_sft(smoke_params.sft, smoke_params.model, empty, base, tmp_path / "o1")
    odd = tmp_path / "odd"
    odd.mkdir()
    row = read_jsonl(curated / "sft.jsonl")[0] | {"surprise": 1}
    (odd / "sft.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"sft\.jsonl:1: unknown fields \['surprise'\]"):
        run_sft(smoke_params.sft, smoke_params.model, odd, base, tmp_path / "o2")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        run_sft(smoke_params.sft, smoke_params.model, curated, tmp_path / "nowhere", tmp_path / "o3")


def test_gate_fails_when_loss_did_not_fall(tmp_path, smoke_params, smoke_curated, trained):
    result, _ = trained
    curated, _ = smoke_curated
    bench = read_jsonl(curated / "bench.jsonl")
    with pytest.raises(TrainingGateFailed, match="loss_fell"):
        training_gate([5.0, 5.0, 5.1, 5.2], result.model_dir, smoke_params.sft.gate, smoke_params.model, bench,
                      tmp_path / "gate.json")
    report = json.loads((tmp_path / "gate.json").read_text())
    assert report["checks"]["reloads"]["ok"] and not report["checks"]["loss_fell"]["ok"]
    with pytest.raises(TrainingGateFailed, match="reloads"):
        training_gate(result.losses, tmp_path / "missing", smoke_params.sft.gate, smoke_params.model, bench,
                      tmp_path / "gate2.json")


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_parse_and_the_trainer_accepts_them(tmp_path, smoke_params, stage):
    path = ROOT / "infra" / "deepspeed" / f"zero{stage}.json"
    assert json.loads(path.read_text())["zero_optimization"]["stage"] == stage
    cfg = replace(smoke_params.sft, deepspeed=str(path))
    args = trl_args(cfg, smoke_params.model, tmp_path, report_to="none", progress=False)
    assert args.hf_deepspeed_config.config["zero_optimization"]["stage"] == stage
    assert args.hf_deepspeed_config.is_zero3() == (stage == 3)


def test_checkpoints_of_other_inputs_are_not_resumed(trained, smoke_params, smoke_curated, base, tmp_path):
    _, out = trained
    curated, _ = smoke_curated
    cfg = replace(smoke_params.sft, max_steps=2, batch_size=4, logging_steps=1, save_steps=2, learning_rate=1e-4)
    run_sft(cfg, smoke_params.model, curated, base, out, progress=False)  # another learning rate
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resumed_from"] is None and meta["steps"] == 2


def _median_step(before: dict, after: dict, prefix: str, exclude: str = "\0") -> float:
    steps = [(after[k] - before[k]).abs().flatten() for k in before
             if k.startswith(prefix) and exclude not in k and before[k].is_floating_point()]
    return torch.cat(steps).median().item()


@pytest.mark.parametrize("scale", [1.0, 0.1])
def test_each_part_trains_at_its_own_learning_rate(tmp_path, smoke_params, smoke_curated, base, scale):
    """One AdamW step moves each weight by about its group's lr (the update is g / |g|): the vision tower's
    median move is ``vision_lr_scale`` times the LLM's."""
    curated, _ = smoke_curated
    trainable = replace(smoke_params.model.trainable, vision="full", vision_lr_scale=scale)
    model_cfg = replace(smoke_params.model, trainable=trainable)
    cfg = replace(smoke_params.sft, max_steps=1, batch_size=4, warmup_ratio=0.0, lr_scheduler="constant")
    result = run_sft(cfg, model_cfg, curated, base, tmp_path / "sft", progress=False)
    before, after = _weights(base), _weights(result.model_dir)
    ratio = _median_step(before, after, "visual.", exclude=".merger.") / _median_step(before, after, "model.layers.")
    assert scale * 0.5 < ratio < scale * 2, ratio


def test_part_scales_are_checked():
    from components.config import ParamsError, TrainableConfig

    with pytest.raises(ParamsError, match="vision_lr_scale"):
        TrainableConfig(vision_lr_scale=0.0)
