"""GRPO composes TRL's GRPOTrainer on the tiny model: it trains and logs every reward term, the frames reach
the loss, the LoRA path saves the base architecture, runs resume, bad configs fail before compute, and the
training gate judges the reward curve."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from components.config import GRPOConfig, ParamsError, RewardsConfig, RewardTerm
from components.io import read_jsonl
from components.models.factory import model_digest
from components.rewards import REGISTRY, BoundReward, completion_text
from components.training.gate import TrainingGateFailed, training_gate
from components.training.grpo import (
    BookedReward,
    CompletionBook,
    grpo_records,
    grpo_trainer,
    reward_terms,
    run_grpo,
    use_vllm,
)
from components.training.sft import run_sft

TERMS = ("format", "accuracy", "camera", "object", "format_valid", "brevity")


def brevity(completions: list, *, cfg: RewardsConfig, **columns) -> list[float]:
    """A test term that always varies within a group (sampled lengths differ), so the advantages are
    non-zero and every GRPO step moves the policy whatever the tiny model answers."""
    return [1.0 - min(len(completion_text(c)), 40) / 40 for c in completions]


@pytest.fixture(scope="module", autouse=True)
def _brevity_registered():
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(REGISTRY, "brevity", brevity)
        yield


@pytest.fixture(scope="module")
def rewards_cfg(smoke_params) -> RewardsConfig:
    return replace(smoke_params.rewards, terms=[*smoke_params.rewards.terms, RewardTerm("brevity", 0.5)])


@pytest.fixture(scope="module")
def sft_model(tmp_path_factory, smoke_params, smoke_curated, base) -> Path:
    """A briefly fine-tuned model: it already writes <answer> tags, so the ST-reward terms see answers."""
    curated, _ = smoke_curated
    cfg = replace(smoke_params.sft, max_steps=40, batch_size=8, logging_steps=10, save_steps=1000)
    return run_sft(cfg, smoke_params.model, curated, base, tmp_path_factory.mktemp("sft"), progress=False).model_dir


def _grpo(smoke_params, **changes) -> GRPOConfig:
    return replace(smoke_params.grpo, **{"max_steps": 4, "batch_size": 8, "num_generations": 4, "logging_steps": 2,
                                         "save_steps": 2, "sample_completions": 3, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, smoke_params, smoke_curated, sft_model, rewards_cfg):
    curated, _ = smoke_curated
    out = tmp_path_factory.mktemp("grpo")
    return run_grpo(_grpo(smoke_params), rewards_cfg, smoke_params.model, curated, sft_model, out, progress=False), out


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_grpo_trains_and_logs_every_reward_term(trained, sft_model):
    result, out = trained
    assert result.steps == 4 and len(result.reward_curve) == 2 and len(result.losses) == 2
    before, after = _weights(sft_model), _weights(result.model_dir)
    assert before.keys() == after.keys()  # the base architecture, nothing added
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.layers.") for k in changed), "the LLM did not train"
    assert any(".merger." in k for k in changed), "the projector did not train"
    assert not any(k.startswith("visual.") and ".merger." not in k for k in changed), "the frozen vision tower moved"
    for term in TERMS:  # TRL's per-term means, the zero-weight format-valid rate among them
        assert f"rewards/{term}/mean" in result.metrics
    assert {"kl", "completions/mean_length", "reward"} <= result.metrics.keys()
    assert set(result.unscorable) == set(TERMS)
    samples = sorted((out / "completions").glob("step_*.jsonl"))
    assert [p.name for p in samples] == ["step_000002.jsonl", "step_000004.jsonl"]
    rows = read_jsonl(samples[-1])
    assert len(rows) == 3 and all(set(r["rewards"]) == set(TERMS) and r["id"] and "completion" in r for r in rows)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["steps"] == 4 and meta["reward_curve"] == result.reward_curve
    assert meta["inputs"]["records"]["sha256"] and meta["inputs"]["init_model"]["sha256"]
    assert meta["inputs"]["init_model"]["sha256"] == model_digest(sft_model) is not None  # lineage, by digest


def test_frames_reach_the_loss(tmp_path, smoke_params, smoke_curated, sft_model, rewards_cfg):
    """TRL's loss sees the frames (pixel rows and their grid, image tokens marked where they are), its
    log-probabilities change when the frames are blanked, and its gradient reaches the projector."""
    curated, _ = smoke_curated
    cfg = _grpo(smoke_params, max_steps=1)
    trainer, _ = grpo_trainer(cfg, rewards_cfg, smoke_params.model, grpo_records(curated, cfg), sft_model, tmp_path,
                              progress=False)
    seen: list[dict] = []
    compute_loss = trainer.compute_loss

    def recording(model, inputs, *args, **kwargs):
        seen.append(inputs)
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = recording
    trainer.train()
    (inputs,) = seen
    n_images = cfg.batch_size * smoke_params.model.num_frames
    assert inputs["num_images"] == [smoke_params.model.num_frames] * cfg.batch_size
    assert len(inputs["image_grid_thw"]) == n_images
    assert inputs["pixel_values"].shape[0] == int(inputs["image_grid_thw"].prod(-1).sum())
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    # M-RoPE places the image tokens by mm_token_type_ids: they must mark exactly the image tokens (TRL
    # left-pads the prompts; a right-padding processor would shift them by the padding).
    assert torch.equal(inputs["mm_token_type_ids"] == 1, ids == trainer.model.config.image_token_id)

    model = trainer.model
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    keep = inputs["completion_ids"].shape[1]
    visual = {k: inputs[k] for k in ("pixel_values", "image_grid_thw", "mm_token_type_ids")}
    blank = inputs["pixel_values"].clone()
    blank[:, :-1] = 0.0  # every pixel of every frame, the TPE timestamp column (last) kept

    def logps(pixel_values: torch.Tensor) -> torch.Tensor:
        # the function TRL's loss computes its per-token log-probabilities with
        out, _, _ = trainer._get_per_token_logps_and_entropies(
            model, ids, mask, keep, num_images=inputs["num_images"], **{**visual, "pixel_values": pixel_values})
        return out

    model.eval()
    with torch.no_grad():
        real, blind = logps(inputs["pixel_values"]), logps(blank)
    tokens = inputs["completion_mask"].bool()
    assert (real - blind)[tokens].abs().max() > 1e-3, "the log-probabilities do not depend on the frames"

    model.train()
    model.zero_grad()
    trainer.compute_loss(model, inputs).backward()
    merger = [p.grad for n, p in model.named_parameters() if ".merger." in n]
    assert merger and all(g is not None for g in merger)
    assert sum(float(g.abs().sum()) for g in merger) > 0, "the GRPO loss has no gradient on the projector"


def test_lora_saves_the_base_architecture(tmp_path, smoke_params, smoke_curated, sft_model, rewards_cfg):
    curated, _ = smoke_curated
    cfg = _grpo(smoke_params, max_steps=2, use_lora=True, learning_rate=1e-2, save_steps=100)
    result = run_grpo(cfg, rewards_cfg, smoke_params.model, curated, sft_model, tmp_path / "lora", progress=False)
    before, after = _weights(sft_model), _weights(result.model_dir)
    assert before.keys() == after.keys() and not any("lora" in k for k in after)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("self_attn" in k for k in changed), changed  # merged adapters; the rest frozen


def test_resumes_from_the_last_checkpoint(trained, smoke_params, smoke_curated, sft_model, rewards_cfg):
    result, out = trained
    curated, _ = smoke_curated
    resumed = run_grpo(_grpo(smoke_params, max_steps=6), rewards_cfg, smoke_params.model, curated, sft_model, out,
                       progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resumed_from"].endswith("checkpoint-4") and resumed.steps == 6
    assert resumed.reward_curve[:2] == result.reward_curve and len(resumed.reward_curve) == 3


def test_rewards_decode_records_and_count_unscorable(tmp_path, smoke_curated, smoke_params):
    curated, _ = smoke_curated
    records = read_jsonl(curated / "rft.jsonl")
    camera_only = next(r for r in records if r["solution"].get("object_center") is None)
    with_object = next(r for r in records if r["solution"].get("object_center") is not None)
    book = CompletionBook(tmp_path, {"object": 0.1, "accuracy": 0.6}, samples=2)
    completions = [[{"role": "assistant", "content": f"<answer>{r['answer_text']}</answer>"}]
                   for r in (camera_only, with_object)]
    column = [json.dumps(r) for r in (camera_only, with_object)]
    # called as TRL calls a reward function: every dataset column by name, plus TRL's own keywords
    trl = {"prompts": [None, None], "completion_ids": [[1], [2]], "images": [[], []], "log_metric": print}
    obj = BookedReward(BoundReward("object", smoke_params.rewards), book)(completions=completions, record=column, **trl)
    acc = BookedReward(BoundReward("accuracy", smoke_params.rewards), book)(completions=completions, record=column, **trl)
    assert obj[0] is None and obj[1] == 0.0 and acc == [1.0, 1.0]
    assert book.unscorable == {"object": 1, "accuracy": 0}
    logs = {"reward": 0.5}
    book.on_log(None, type("State", (), {"global_step": 7})(), None, logs=logs)
    assert logs["rewards/object/unscorable"] == 1 and logs["rewards/accuracy/unscorable"] == 0
    rows = read_jsonl(tmp_path / "step_000007.jsonl")
    assert [r["id"] for r in rows] == [camera_only["id"], with_object["id"]]
    assert rows[0]["rewards"] == {"object": None, "accuracy": 1.0} and rows[0]["reward"] == pytest.approx(0.6)


def test_reverse_thinking_adds_reverse_records(smoke_params, smoke_curated):
    curated, _ = smoke_curated
    plain = grpo_records(curated, smoke_params.grpo)
    both = grpo_records(curated, replace(smoke_params.grpo, reverse_thinking=True))
    reverse = both[len(plain):]
    assert both[: len(plain)] == plain and reverse
    assert all(r["id"].endswith("-rev") and r["provenance"]["reverse_of"] for r in reverse)


def test_bad_config_fails_before_compute(tmp_path, smoke_params, smoke_curated, sft_model, caplog):
    curated, _ = smoke_curated
    grpo, rewards, model = smoke_params.grpo, smoke_params.rewards, smoke_params.model
    with pytest.raises(ValueError, match="visual_input: images"):
        run_grpo(grpo, rewards, replace(model, visual_input="video", time_cue="none"), curated, sft_model, tmp_path)
    with pytest.raises(ValueError, match="unknown reward 'nope'; valid rewards: .*accuracy"):
        run_grpo(grpo, replace(rewards, terms=[RewardTerm("nope", 1.0)]), model, curated, sft_model, tmp_path)
    with pytest.raises(FileNotFoundError, match="rft records not found"):
        run_grpo(grpo, rewards, model, tmp_path / "nowhere", sft_model, tmp_path)
    with pytest.raises(FileNotFoundError, match="missing"):
        run_grpo(grpo, rewards, model, curated, tmp_path / "missing", tmp_path)
    with pytest.raises(ParamsError, match="multiple of num_generations"):
        replace(grpo, batch_size=6, num_generations=4)
    assert reward_terms(rewards) == {"format": 0.2, "accuracy": 0.6, "camera": 0.1, "object": 0.1,
                                     "format_valid": 0.0}
    with caplog.at_level(logging.WARNING, logger="components.training.grpo"):
        assert use_vllm(replace(grpo, use_vllm=True), model) is False  # no vLLM here, and TPE is a transformers hook
    assert "generating with transformers instead" in caplog.text


def test_gate_judges_the_reward_curve(tmp_path, trained, smoke_params, smoke_curated):
    result, _ = trained
    curated, _ = smoke_curated
    bench = read_jsonl(curated / "bench.jsonl")
    gate = replace(smoke_params.grpo.gate, min_format_valid=0.0)
    report = training_gate(result.losses, result.model_dir, gate, smoke_params.model, bench, tmp_path / "g1.json",
                           rewards=[0.2, 0.3, 0.25], reward_tolerance=0.05)
    assert report["success"] and "loss_fell" not in report["checks"] and report["checks"]["reward_held"]["ok"]
    with pytest.raises(TrainingGateFailed, match="reward_held"):
        training_gate(result.losses, result.model_dir, gate, smoke_params.model, bench, tmp_path / "g2.json",
                      rewards=[0.6, 0.6, 0.2, 0.1], reward_tolerance=0.05)
    with pytest.raises(TrainingGateFailed, match="reward_held"):
        training_gate(result.losses, result.model_dir, gate, smoke_params.model, bench, tmp_path / "g3.json",
                      rewards=[0.2, float("nan")], reward_tolerance=0.05)
    assert json.loads((tmp_path / "g3.json").read_text())["checks"]["reward_held"]["last"] is None


def test_temporal_contrast_and_consistency_are_rewards_with_their_own_rollouts(tmp_path, smoke_params, smoke_curated,
                                                                                 sft_model):
    """Both rollout terms train, are logged like the others, and score what they should: the bonus only where
    the ordered group is correct, consistency only for records that have a reverse question."""
    curated, _ = smoke_curated
    rewards = replace(smoke_params.rewards, temporal_contrast=True, consistency_weight=0.2)
    result = run_grpo(_grpo(smoke_params, max_steps=2, save_steps=10), rewards, smoke_params.model, curated,
                      sft_model, tmp_path, progress=False)
    assert result.steps == 2
    for name in ("temporal_bonus", "consistency"):
        assert f"rewards/{name}/mean" in result.metrics, (name, sorted(result.metrics))
    rows = [json.loads(line) for f in sorted((tmp_path / "completions").glob("*.jsonl")) for line in f.open()]
    assert rows and all({"temporal_bonus", "consistency"} <= set(r["rewards"]) for r in rows)
    assert {r["rewards"]["temporal_bonus"] for r in rows} <= {0.0, rewards.temporal_bonus}


def test_shuffled_frames_reorders_only_the_frames_the_model_sees(smoke_params, smoke_curated):
    import numpy as np

    from components.models.inputs import frame_indices
    from components.training.grpo_rollouts import shuffled_frames

    curated, _ = smoke_curated
    record = read_jsonl(curated / "rft.jsonl")[0]
    picked = frame_indices(len(record["frame_paths"]), smoke_params.model.num_frames)
    out = shuffled_frames(record, smoke_params.model, np.random.default_rng(0))
    seen = [out["frame_paths"][i] for i in picked]
    assert seen != [record["frame_paths"][i] for i in picked]
    assert sorted(seen) == sorted(record["frame_paths"][i] for i in picked)
    assert out["timestamps"] == record["timestamps"] and out["question"] == record["question"]


def test_consistency_reward_pairs_each_completion_with_the_reverse_answer(smoke_curated):
    """A policy that answers each reverse question with its label: a forward completion with the forward
    label agrees (1), one with another option does not (0); a record without a reverse question gets None."""
    from components.curation.reverse import reverse_record
    from components.training.grpo_rollouts import ConsistencyReward

    curated, _ = smoke_curated
    records = read_jsonl(curated / "rft.jsonl") + read_jsonl(curated / "sft.jsonl")
    forward = next(r for r in records if r["answer_type"] == "mc" and reverse_record(r) is not None)
    no_reverse = next(r for r in records if reverse_record(r) is None)

    class LabelPolicy(ConsistencyReward):
        def generate(self, records, *, sample):
            return [f"<answer>{r['answer_text']}</answer>" for r in records]

    other = next(o for o in forward["options"] if o != forward["answer_text"])
    completions = [f"<answer>{forward['answer_text']}</answer>", f"<answer>{other}</answer>", "<answer>x</answer>"]
    rows = [json.dumps(forward)] * 2 + [json.dumps(no_reverse)]
    assert LabelPolicy(None, 16, 1.0)(completions, rows) == [1.0, 0.0, None]
