"""Supervised fine-tuning: TRL's ``SFTTrainer`` on the ``sft`` split, loss on the assistant turn only.

Composition, not copies: the trainer is TRL's; what this module adds is the data path (records ->
``components.models.encode_batch`` in a collator, so the frames reach the loss as images, which TRL's
own video path would drop: docs/stack.md), the lineage file and the training gate.

Departures from the papers: MLLM-4D and 4D-RGPT fine-tune 7-8B Qwen-VL checkpoints on millions of QA
pairs on GPUs; the embedded default trains a tiny random-init model of the same architecture on the
CPU. The same function runs on GPU workers under ``accelerate launch`` with ``sft.deepspeed`` pointing
at ``infra/deepspeed/zero{2,3}.json``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list, gather_object
from datasets import Dataset
from transformers import PreTrainedModel, Trainer, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from components.config import GRPOConfig, ModelConfig, SFTConfig
from components.curation.schema import read_records
from components.io import (
    check_folder_digest,
    write_json,
)
from components.models import apply_trainable, load_model, scale_part_learning_rates
from components.models.factory import DIGEST, load_checkpoint_weights, save_model
from components.models.inputs import EncodingCache
from components.tracking.callback import use_filtered_mlflow_callback
from components.training.callbacks import CheckpointDigest, ThroughputCallback
from components.training.gate import loss_curve
from components.training.lineage import input_digests, write_lineage

log = logging.getLogger(__name__)


class RecordCollator:
    """Dataset rows hold one JSON record each; a batch becomes model inputs with assistant-only labels.
    Each record is parsed once (a record with its ST-CoT and solution took ~1 ms to parse, ~2% of a
    tiny-model SFT step, every epoch) and encoded once (``EncodingCache``: the batch's tensors are the same)."""

    def __init__(self, processor, cfg: ModelConfig) -> None:
        self.encoded = EncodingCache(processor, cfg, with_target=True)
        self._parsed: dict[str, dict] = {}

    def record(self, row: dict) -> dict:
        text = row["record"]
        if text not in self._parsed:
            self._parsed[text] = json.loads(text)
        return self._parsed[text]

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        return self.encoded([(r["record"], self.record(r)) for r in rows])


@dataclass
class TrainResult:
    model_dir: Path
    losses: list[float]
    steps: int
    seconds: float
    samples_per_s: float
    train_metrics: dict


class ExactResume:
    """Trainer mixin: resuming restores the checkpoint's weights, every one of them, under the model's own names.

    ``Trainer._load_from_checkpoint`` loads a transformers-5 Qwen-VL checkpoint without the key renaming that
    ``from_pretrained`` applies (``components.models.factory.load_checkpoint_weights`` says why), so resumed runs
    kept the base weights. Only the loading of full weights is replaced; optimizer, scheduler, RNG, data order
    and LoRA adapters (PEFT names those itself) stay the Trainer's.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        model = self.model if model is None else model
        unwrapped = self.accelerator.unwrap_model(model)
        folder = Path(resume_from_checkpoint)
        full = (folder / SAFE_WEIGHTS_NAME).is_file() or (folder / SAFE_WEIGHTS_INDEX_NAME).is_file()
        if not full or not isinstance(unwrapped, PreTrainedModel):
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        n = load_checkpoint_weights(unwrapped, folder)
        log.info("restored %d weight tensors from %s", n, folder)


class PartLearningRates:
    """Trainer mixin: one learning rate per part (vision tower, projector, LLM), ``model.trainable``'s scales
    times the stage's ``learning_rate``. Transformers' Trainer has one rate for all; TRL takes an optimizer,
    but building it here keeps its class, decay groups and DeepSpeed handling the Trainer's."""

    def __init__(self, *args, lr_scales: dict[str, float] | None = None, **kwargs) -> None:
        self.lr_scales = dict(lr_scales or {})
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        return scale_part_learning_rates(optimizer, self.model if model is None else model, self.lr_scales)


class ResumableSFTTrainer(ExactResume, PartLearningRates, SFTTrainer):
    """TRL's SFTTrainer, resuming exactly, a learning rate per part."""


def common_args(cfg: SFTConfig | GRPOConfig, model_cfg: ModelConfig, out: Path, *, report_to: str,
                progress: bool) -> dict:
    """The TRL arguments SFT, P4D and GRPO set alike: where checkpoints go, the step budget, logging, the
    device. TRL defaults to bf16 (and gradient checkpointing); neither helps (or works) on a CPU."""
    cuda = torch.cuda.is_available()
    return {
        "output_dir": str(out / "checkpoints"), "max_steps": cfg.max_steps, "per_device_train_batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate, "logging_steps": cfg.logging_steps, "save_steps": cfg.save_steps,
        "save_total_limit": 2, "seed": cfg.seed, "report_to": report_to, "use_cpu": not cuda,
        "bf16": cuda and model_cfg.dtype == "bfloat16", "dataloader_num_workers": 0, "disable_tqdm": not progress,
    }


def trl_args(cfg: SFTConfig, model_cfg: ModelConfig, out: Path, *, report_to: str, progress: bool) -> TRLSFTConfig:
    return TRLSFTConfig(
        **common_args(cfg, model_cfg, out, report_to=report_to, progress=progress),
        gradient_accumulation_steps=cfg.grad_accum,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(cfg.warmup_ratio * cfg.max_steps),
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        gradient_checkpointing=cfg.gradient_checkpointing and torch.cuda.is_available(),
        deepspeed=cfg.deepspeed or None,
        # Under `accelerate launch` (DDP): no search for unused parameters. It walks back from the forward's outputs,
        # so it counts P4D's D_4DP (run by the distillation loss, after the forward) as unused and DDP then marks its
        # parameters ready twice; SFT has no unused parameters to find (DDP warns the search is wasted).
        ddp_find_unused_parameters=False,
        # Our collator builds inputs and labels from the records: TRL must not tokenise or drop the column.
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        max_length=None,
    )


def run_sft(cfg: SFTConfig, model_cfg: ModelConfig, curated: Path, base_model: Path, out: Path, *,
            report_to: str = "none", progress: bool = True, callbacks: tuple = ()) -> TrainResult:
    """Fine-tune ``base_model`` on ``curated/sft.jsonl``; resumes from the last checkpoint in ``out``.
    ``callbacks``: more ``TrainerCallback``s (the learning benchmark keeps each checkpoint for its curve)."""
    set_seed(cfg.seed)
    data = Path(curated) / "sft.jsonl"
    records = read_records(data, split="sft")
    model, processor = load_model(base_model, model_cfg, for_training=True)
    model = apply_trainable(model, model_cfg)
    trainer = ResumableSFTTrainer(
        model=model, args=trl_args(cfg, model_cfg, Path(out), report_to=report_to, progress=progress),
        train_dataset=records_dataset(records), data_collator=RecordCollator(processor, model_cfg),
        processing_class=processor, callbacks=[ThroughputCallback(cfg.batch_size * cfg.grad_accum), *callbacks],
        lr_scales=model_cfg.trainable.lr_scales(),
    )
    sources = {"records": data, "base_model": Path(base_model)}
    digests = input_digests(sources)
    output, seconds, resume = fit(trainer, Path(out), {**digests,
                                                       "config": {"sft": resume_key(cfg), "model": asdict(model_cfg)}})
    model_dir, losses, processes = Path(out) / "model", loss_curve(trainer.state.log_history), rank_progress(trainer)
    # Under `accelerate launch` every rank holds the same trained weights (DDP, ZeRO-2): rank 0 writes the outputs,
    # the others wait for it, so each returns with the folder whole. In one process: write, and no wait.
    if trainer.is_world_process_zero():
        save_model(trainer.model, processor, model_dir)  # LoRA merged: base architecture
        write_lineage(Path(out), stage="sft", config={"sft": asdict(cfg), "model": asdict(model_cfg)}, inputs=sources,
                      digests=digests, model_dir=model_dir, resumed_from=resume, steps=trainer.state.global_step,
                      losses=losses, processes=processes, train_metrics=output.metrics)
    trainer.accelerator.wait_for_everyone()
    return TrainResult(model_dir, losses, trainer.state.global_step, seconds,
                       output.metrics.get("train_samples_per_second", math.nan), output.metrics)


def records_dataset(records: list[dict]) -> Dataset:
    """One JSON record per row: the collator builds the model inputs, so TRL never tokenises the data."""
    return Dataset.from_dict({"record": [json.dumps(r) for r in records]})


def resume_key(cfg: SFTConfig) -> dict:
    """What a checkpoint must share with this run to be resumed; the step budget and logging may change."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("max_steps", "logging_steps", "save_steps")}


def fit(trainer: ExactResume, out: Path, inputs: dict):
    """Train ``trainer`` (resuming the last whole checkpoint in ``out/checkpoints`` when it was made from the same
    ``inputs``); returns ``(TrainOutput, seconds, resumed_from)``. Shared by the SFT, P4D and GRPO stages."""
    if not isinstance(trainer, ExactResume):  # TRL's own trainers would resume with the base weights
        raise TypeError(f"fit needs a trainer with ExactResume, got {type(trainer).__name__}")
    trainer.add_callback(CheckpointDigest())
    # Callbacks that add to each log entry (throughput, P4D's loss parts) must run before MLflow's, so the
    # MLflow callback moves to the end of the list.
    use_filtered_mlflow_callback(trainer)
    # Under `accelerate launch` rank 0 alone decides (it may remove stale checkpoints) and every rank resumes from
    # what it chose; in one process the broadcast hands the value back.
    resume = _resumable(out / "checkpoints", inputs) if trainer.is_world_process_zero() else None
    resume = broadcast_object_list([resume], from_process=0)[0]
    start = time.perf_counter()
    state = TrainerState.load_from_json(str(Path(resume) / TRAINER_STATE_NAME)) if resume else None
    if state is not None and state.global_step >= trainer.args.max_steps:
        # A finished run (e.g. `make run` again): its last checkpoint is its result. The Trainer, resumed there,
        # trains one step past max_steps (transformers 5.23), so a re-run would change a finished model.
        trainer._load_from_checkpoint(resume)
        trainer.state = state
        log.info("%s already holds the finished run (step %d of %d): nothing to train", resume, state.global_step,
                 trainer.args.max_steps)
        return TrainOutput(state.global_step, float("nan"), {}), time.perf_counter() - start, resume
    output = trainer.train(resume_from_checkpoint=resume)
    return output, time.perf_counter() - start, resume


def rank_progress(trainer: Trainer) -> list[dict]:
    """Each process's rank and the optimizer steps it took, from every rank (a collective: all ranks call it).
    Under `accelerate launch` ``meta.json`` shows that every rank trained; one entry for a run in one process."""
    mine = {"rank": trainer.args.process_index, "steps": trainer.state.global_step}
    return sorted(gather_object([mine]), key=lambda p: p["rank"])


def _resumable(checkpoints: Path, inputs: dict) -> str | None:
    """The last whole checkpoint, if it was trained from the same records, base model and config; otherwise the
    old checkpoints are removed (resuming them would continue another run) and training starts fresh."""
    stamp = checkpoints / "inputs.json"
    last = last_whole_checkpoint(checkpoints) if _same_inputs(stamp, inputs) else None
    if last is not None:
        log.info("resuming from %s", last)
        return str(last)
    if checkpoints.is_dir():
        if any(p.name != stamp.name for p in checkpoints.iterdir()):  # the Trainer makes the folder empty at start
            log.warning("discarding checkpoints in %s: they come from other inputs or config, or none is whole",
                        checkpoints)
        shutil.rmtree(checkpoints)
    write_json(stamp, inputs)
    return None


def _same_inputs(stamp: Path, inputs: dict) -> bool:
    try:
        return stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(inputs))
    except json.JSONDecodeError:
        return False


_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def last_whole_checkpoint(checkpoints: Path) -> Path | None:
    """The newest checkpoint whose files all match the digest written once it was saved (``CheckpointDigest``).

    A newer one that does not (a kill while saving, a file corrupted since) is named in a warning and removed:
    the resumed run saves that step again, and must not write into a half-made folder.
    """
    if not checkpoints.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in checkpoints.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name)))
    for _, checkpoint in reversed(found):
        try:
            check_folder_digest(checkpoint, DIGEST)
            return checkpoint
        except ValueError as exc:
            log.warning("skipping checkpoint %s, it is not whole (%s); removing it and resuming from the one before",
                        checkpoint, exc)
            shutil.rmtree(checkpoint)
    return None
