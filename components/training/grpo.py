"""GRPO (MLLM-4D stage 3, ST-R1): TRL's ``GRPOTrainer`` on the ``rft`` split with the ST-reward.

What the papers do: MLLM-4D starts from its SFT model and runs GRPO on MLLM4D-R1-30k with ST-CoT prompts
and the ST-reward R = 0.2 F + 0.6 Acc + 0.1 R_cam + 0.1 R_obj (``components.rewards``), G = 8 rollouts per
prompt, KL weight 0.001, LoRA on the LLM, vLLM rollouts on GPUs. ST-R1 adds *reverse* questions (the clip
played backwards, ``curation.reverse``) to the GRPO data, with KL weight 0.1.

Composition, not copies: the trainer, its rollouts, advantages, KL and loss are TRL's. This module adds
the data path (one dataset row per record: the chat prompt without its target, the record's frames as a
list of images, the record as JSON for the rewards), one TRL reward function per ``rewards.terms`` entry
(the registry's functions with the record columns decoded, weights as TRL's ``reward_weights``, plus a
zero-weight ``format_valid`` term so the format-valid rate is logged), a callback that writes sample
completions and counts unscorable rewards, resumption, lineage and the saved model.

How the frames reach the loss: TRL re-runs the processor on the row's ``images`` for the loss forward and
passes ``pixel_values`` / ``image_grid_thw`` to the policy (and to the reference model), so the vision
tower and projector are in the graph of the GRPO loss. Its video path is not (docs/stack.md): the video tensors
are dropped there, so ``model.visual_input: video`` is refused here. ``tests/training/test_grpo.py``
proves it (projector gradients from the GRPO loss; log-probabilities change with the frames).

Departures, and why: the embedded default runs a tiny random-init Qwen2.5-VL on one CPU core, so rollouts
are plain ``transformers`` sampling (vLLM needs CUDA; ``grpo.use_vllm`` falls back with a warning), G
and the batch are small, and completions are short (``max_completion_length``): the point at this scale
is that the loop, the rewards and the lineage are the production ones, not that a 0.2 M-parameter model
learns 4D reasoning from a few GRPO steps. Video-R1's temporal contrast and the reverse-consistency reward
(``rewards.temporal_contrast``, ``rewards.consistency_weight``) are reward functions that sample from the
policy themselves (``grpo_rollouts``).

A term that cannot score a record returns None: TRL leaves it out of that term's mean and counts it as 0
in the weighted total; the counts are logged (``rewards/<term>/unscorable``) and returned.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from datasets import Dataset
from transformers import TrainerCallback, set_seed
from trl import GRPOConfig as TRLGRPOConfig
from trl import GRPOTrainer

from components.config import GRPOConfig, ModelConfig, RewardsConfig, TrainableConfig
from components.curation.reverse import reverse_records
from components.curation.schema import read_records
from components.models import apply_trainable, build_conversation, frames_for, load_model
from components.models.factory import save_model
from components.models.tpe import install_tpe
from components.rewards import BoundReward, check_terms, completion_text, weighted_total
from components.training.gate import loss_curve
from components.training.grpo_rollouts import rollout_rewards
from components.training.lineage import input_digests, write_lineage
from components.training.sft import ExactResume, PartLearningRates, common_args, fit, rank_progress

log = logging.getLogger(__name__)

FORMAT_VALID = "format_valid"  # logged at weight 0: rewards/format_valid/mean is the format-valid rate


@dataclass
class GRPOResult:
    model_dir: Path
    reward_curve: list[float]  # mean total (weighted) reward per logging step
    losses: list[float]  # the GRPO loss per logging step (need not fall)
    steps: int
    seconds: float
    unscorable: dict[str, int]  # reward term -> completions it could not score (None)
    metrics: dict  # the last logged step: rewards/<term>/mean, kl, completions/mean_length, ...
    train_metrics: dict


# ------------------------------------------------------------------------------------------------ data


def grpo_records(curated: Path, cfg: GRPOConfig) -> list[dict]:
    """The rft split, plus ST-R1's reverse questions when ``cfg.reverse_thinking``."""
    records = read_records(Path(curated) / "rft.jsonl", split="rft")
    if cfg.reverse_thinking:
        reverse, skipped = reverse_records(records)
        log.info("reverse thinking: %d reverse records added to %d; not reversible: %s", len(reverse), len(records),
                 skipped)
        records = records + reverse
    return records


class PromptRows:
    """Dataset transform: a JSON record -> TRL's conversational ``prompt`` (no target), the frames as
    ``images`` (the Set-of-Marks image first for region questions, as ``frames_for`` picks them) and the
    record itself. Frames load lazily, per batch, so the dataset holds no pixels."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        records = [json.loads(r) for r in batch["record"]]
        return {"prompt": [build_conversation(r, self.cfg, with_target=False) for r in records],
                "images": [frames_for(r, self.cfg) for r in records],
                "record": batch["record"]}


def prompt_dataset(records: list[dict], cfg: ModelConfig) -> Dataset:
    return Dataset.from_dict({"record": [json.dumps(r) for r in records]}).with_transform(PromptRows(cfg))


# --------------------------------------------------------------------------------------------- rewards


class CompletionBook(TrainerCallback):
    """What the reward functions saw: the latest batch's completions and per-term rewards, and the
    unscorable (None) counts. At each logging step it adds the counts since the previous log to the log
    entry (``rewards/<term>/unscorable``) and writes a few completions to ``completions/step_XXXXXX.jsonl``."""

    def __init__(self, out_dir: Path, weights: dict[str, float], samples: int) -> None:
        self.out_dir, self.weights, self.samples = Path(out_dir), weights, samples
        self.unscorable: Counter[str] = Counter({name: 0 for name in weights})
        self._since_log: Counter[str] = Counter()
        self._batch: tuple[list, list[dict], dict[str, list]] | None = None

    def add(self, name: str, completions: list, records: list[dict], values: list[float | None]) -> None:
        # TRL hands every reward function the same ``completions`` list of a batch: a new list is a new batch.
        if self._batch is None or self._batch[0] is not completions:
            self._batch = (completions, records, {})
        self._batch[2][name] = list(values)
        n = sum(v is None for v in values)
        self.unscorable[name] += n
        self._since_log[name] += n

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "reward" not in logs:  # the end-of-training summary carries no rewards
            return
        for name in self.weights:
            logs[f"rewards/{name}/unscorable"] = self._since_log[name]
        self._since_log.clear()
        if self.samples and self._batch is not None:
            self._write(state.global_step)

    def _write(self, step: int) -> None:
        completions, records, values = self._batch
        n = len(completions)
        picked = sorted({round(i * n / self.samples) for i in range(min(self.samples, n))})  # spread over prompts
        rows = []
        for i in picked:
            rewards = {name: v[i] for name, v in values.items()}
            total = weighted_total({k: [v] for k, v in rewards.items()}, self.weights)[0]
            rows.append({"step": step, "id": records[i]["id"], "completion": completion_text(completions[i]),
                         "rewards": rewards, "reward": total})
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"step_{step:06d}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


class BookedReward:
    """A reward function (a ``rewards.BoundReward`` term, or a rollout reward of ``grpo_rollouts``) whose values
    go to the book: what TRL trains on is what the completions files show."""

    def __init__(self, fn, book: CompletionBook) -> None:
        self.fn, self.book, self.__name__ = fn, book, fn.__name__

    def __call__(self, completions: list, record: list[str], **trl_kwargs) -> list[float | None]:
        values = self.fn(completions, record, **trl_kwargs)
        self.book.add(self.__name__, completions, [json.loads(r) for r in record], values)
        return values


def reward_terms(rewards_cfg: RewardsConfig) -> dict[str, float]:
    """Term name -> weight: the configured terms plus ``format_valid`` at weight 0 (logged, not trained on)."""
    check_terms(rewards_cfg)
    terms = {t.name: t.weight for t in rewards_cfg.terms}
    terms.setdefault(FORMAT_VALID, 0.0)
    return terms


def reward_curve(log_history: list[dict]) -> list[float]:
    """The mean total reward of each logging step, in order."""
    return [float(e["reward"]) for e in log_history if e.get("reward") is not None]


# --------------------------------------------------------------------------------------------- trainer


def check_inputs(cfg: GRPOConfig, rewards_cfg: RewardsConfig, model_cfg: ModelConfig) -> None:
    """What this module cannot do, before any compute is spent."""
    if model_cfg.visual_input != "images":
        raise ValueError("GRPO needs model.visual_input: images; TRL's GRPOTrainer generates from a video but "
                         "drops the video tensors from the loss forward, so the vision path would never train "
                         "(docs/stack.md)")
    reward_terms(rewards_cfg)


def use_vllm(cfg: GRPOConfig, model_cfg: ModelConfig) -> bool:
    """vLLM rollouts only where they can run and generate what the policy would."""
    if not cfg.use_vllm:
        return False
    why = ("vllm is not installed" if importlib.util.find_spec("vllm") is None
           else "no CUDA device" if not torch.cuda.is_available()
           # vLLM runs its own Qwen-VL implementation: it would sample from a policy without the timestamp encoding
           else "model.time_cue tpe is a hook on the transformers model, which vLLM does not run"
           if model_cfg.time_cue == "tpe" else None)
    if why:
        log.warning("grpo.use_vllm: %s; generating with transformers instead", why)
    return why is None


def trl_args(cfg: GRPOConfig, model_cfg: ModelConfig, weights: list[float], out: Path, *, report_to: str,
             progress: bool) -> TRLGRPOConfig:
    vllm = use_vllm(cfg, model_cfg)
    return TRLGRPOConfig(
        **common_args(cfg, model_cfg, out, report_to=report_to, progress=progress),
        # One step = batch_size completions = batch_size / G prompts, generated once and trained on once
        # (TRL's generation batch defaults to this batch, so steps_per_generation = 1: on-policy).
        num_generations=cfg.num_generations,
        temperature=cfg.temperature,
        max_completion_length=cfg.max_completion_length,
        beta=cfg.beta,
        loss_type=cfg.loss_type,
        reward_weights=weights,
        gradient_checkpointing=False,
        use_vllm=vllm,
        vllm_mode="colocate",
        deepspeed=cfg.deepspeed or None,
    )


def lora_config(cfg: GRPOConfig, model_cfg: ModelConfig) -> ModelConfig:
    """With ``grpo.use_lora``: LoRA on the LLM (``model.lora`` sizes; on the vision tower too when
    ``model.trainable.vision`` says lora), everything else frozen. TRL's reference policy for a LoRA model
    is the same network with the adapters off, so a fully trained part would move the reference too."""
    if not cfg.use_lora:
        return model_cfg
    trainable = TrainableConfig(vision="lora" if model_cfg.trainable.vision == "lora" else "frozen",
                                projector="frozen", llm="lora")
    if trainable != model_cfg.trainable:
        log.info("grpo.use_lora: training %s instead of model.trainable %s", trainable, model_cfg.trainable)
    return replace(model_cfg, trainable=trainable)


class ResumableGRPOTrainer(ExactResume, PartLearningRates, GRPOTrainer):
    """TRL's GRPOTrainer, resuming exactly, a learning rate per part."""


def grpo_trainer(cfg: GRPOConfig, rewards_cfg: RewardsConfig, model_cfg: ModelConfig, records: list[dict],
                 init_model: Path, out: Path, *, report_to: str = "none",
                 progress: bool = True) -> tuple[GRPOTrainer, CompletionBook]:
    """TRL's ``GRPOTrainer`` for ``records``, starting from ``init_model``, and the book of its rewards."""
    check_inputs(cfg, rewards_cfg, model_cfg)
    # an SFT or P4D output: it must carry the digest save_model wrote, and still match it
    model, processor = load_model(init_model, model_cfg, for_training=True, require_digest=True)
    model = apply_trainable(model, lora_config(cfg, model_cfg))
    # TRL left-pads the prompts and appends the processor's mm_token_type_ids to them (they place the image
    # tokens for M-RoPE): the processor must pad on the left too, or image positions shift by the padding.
    processor.tokenizer.padding_side = "left"
    terms = reward_terms(rewards_cfg)
    rollouts = rollout_rewards(rewards_cfg, model_cfg, num_generations=cfg.num_generations,
                               max_new_tokens=cfg.max_completion_length, temperature=cfg.temperature, seed=cfg.seed)
    weights = {**terms, **{name: weight for name, (_, weight) in rollouts.items()}}
    book = CompletionBook(Path(out) / "completions", weights, cfg.sample_completions)
    trainer = ResumableGRPOTrainer(
        model=model,
        reward_funcs=[BookedReward(BoundReward(name, rewards_cfg), book) for name in terms]
        + [BookedReward(fn, book) for fn, _ in rollouts.values()],
        args=trl_args(cfg, model_cfg, list(weights.values()), Path(out), report_to=report_to, progress=progress),
        train_dataset=prompt_dataset(records, model_cfg),
        processing_class=processor,
        callbacks=[book],
        lr_scales=model_cfg.trainable.lr_scales(),
    )
    if not trainer.is_world_process_zero():
        book.samples = 0  # under `accelerate launch` rank 0 writes its share of completions: one file per step
    for fn, _ in rollouts.values():
        fn.attach(trainer)
    if model_cfg.time_cue == "tpe" and trainer.ref_model is not None:
        # TRL loads the reference policy itself, from the checkpoint path and without load_model's hooks; it
        # gets the same frames (a timestamp column in pixel_values), so it needs the same TPE hooks.
        install_tpe(trainer.accelerator.unwrap_model(trainer.ref_model), model_cfg.tpe_max_timescale,
                    model_cfg.tpe_scale)
    return trainer, book


# ------------------------------------------------------------------------------------------------- run


def run_grpo(cfg: GRPOConfig, rewards_cfg: RewardsConfig, model_cfg: ModelConfig, curated: Path, init_model: Path,
             out: Path, *, report_to: str = "none", progress: bool = True) -> GRPOResult:
    """GRPO from ``init_model`` (an SFT or P4D ``model/`` folder) on ``curated/rft.jsonl``; resumes from the
    last checkpoint in ``out`` made from the same inputs and config; writes ``out/model`` (base
    architecture, LoRA merged), ``out/meta.json`` and ``out/completions/``."""
    set_seed(cfg.seed)
    check_inputs(cfg, rewards_cfg, model_cfg)
    out, data = Path(out), Path(curated) / "rft.jsonl"
    records = grpo_records(curated, cfg)
    trainer, book = grpo_trainer(cfg, rewards_cfg, model_cfg, records, init_model, out, report_to=report_to,
                                 progress=progress)
    sources = {"records": data, "init_model": Path(init_model)}
    digests = input_digests(sources)
    output, seconds, resume = fit(trainer, out, {**digests, "config": {
        "grpo": resume_key(cfg), "rewards": asdict(rewards_cfg), "model": asdict(model_cfg)}})
    model_dir, processes = out / "model", rank_progress(trainer)
    history = trainer.state.log_history
    curve, losses = reward_curve(history), loss_curve(history)
    last = next((e for e in reversed(history) if "reward" in e), {})
    config = {"grpo": asdict(cfg), "rewards": asdict(rewards_cfg), "model": asdict(model_cfg)}
    if trainer.is_world_process_zero():  # one rank writes the outputs, the others wait (as sft.run_sft)
        save_model(trainer.model, trainer.processing_class, model_dir)
        write_lineage(out, stage="grpo", config=config, inputs=sources, digests=digests, model_dir=model_dir,
                      n_records=len(records), resumed_from=resume, steps=trainer.state.global_step,
                      # strict JSON: a non-finite value (the gate's to judge) is written as null
                      reward_curve=[x if math.isfinite(x) else None for x in curve],
                      losses=[x if math.isfinite(x) else None for x in losses],
                      # under `accelerate launch`: rank 0's completions only
                      unscorable=dict(book.unscorable), processes=processes, train_metrics=output.metrics)
    trainer.accelerator.wait_for_everyone()
    log.info("GRPO: %d steps in %.1f s; mean reward %s -> %s", trainer.state.global_step, seconds,
             f"{curve[0]:.3f}" if curve else "-", f"{curve[-1]:.3f}" if curve else "-")
    return GRPOResult(model_dir, curve, losses, trainer.state.global_step, seconds, dict(book.unscorable), last,
                      output.metrics)


def resume_key(cfg: GRPOConfig) -> dict:
    """What a checkpoint must share with this run to be resumed; the step budget, logging and gate may change."""
    return {k: v for k, v in asdict(cfg).items()
            if k not in ("max_steps", "logging_steps", "save_steps", "sample_completions", "gate")}
