"""Supervised fine-tuning: TRL's ``SFTTrainer`` on the ``sft`` split, loss on the assistant turn only.

Composition, not copies: the trainer is TRL's; what this module adds is the data path (records ->
``components.models.encode_batch`` in a collator, so the frames reach the loss as images, which TRL's
own video path would drop: STACK.md), the lineage file and the training gate.

Departures from the papers: MLLM-4D and 4D-RGPT fine-tune 7-8B Qwen-VL checkpoints on millions of QA
pairs on GPUs; the embedded default trains a tiny random-init model of the same architecture on the
CPU. The same function runs on GPU workers under ``accelerate launch`` with ``sft.deepspeed`` pointing
at ``infra/deepspeed/zero{2,3}.json``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from datasets import Dataset
from transformers import set_seed
from transformers.integrations import MLflowCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig as TRLSFTConfig
from trl import SFTTrainer

from components.config import ModelConfig, SFTConfig
from components.curation.schema import RECORD_FIELDS
from components.io import file_digest, git_commit, read_jsonl, write_json
from components.models import apply_trainable, load_model
from components.models.factory import save_model
from components.models.inputs import encode_batch
from components.training.callbacks import ThroughputCallback
from components.training.gate import loss_curve

log = logging.getLogger(__name__)


def read_records(path: Path, *, split: str) -> list[dict]:
    """A split's records, checked against the contract before any compute is spent."""
    if not path.is_file():
        raise FileNotFoundError(f"{split} records not found: {path}")
    records = read_jsonl(path)
    if not records:
        raise ValueError(f"{path}: no records in the {split} split")
    for i, r in enumerate(records, 1):
        unknown, missing = set(r) - set(RECORD_FIELDS), set(RECORD_FIELDS) - set(r)
        if unknown or missing:
            raise ValueError(f"{path}:{i}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
    return records


class RecordCollator:
    """Dataset rows hold one JSON record each; a batch becomes model inputs with assistant-only labels."""

    def __init__(self, processor, cfg: ModelConfig) -> None:
        self.processor, self.cfg = processor, cfg

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        return encode_batch([json.loads(r["record"]) for r in rows], self.processor, self.cfg, with_target=True)


@dataclass
class TrainResult:
    model_dir: Path
    losses: list[float]
    steps: int
    seconds: float
    samples_per_s: float
    train_metrics: dict


def device_args(model_cfg: ModelConfig) -> dict:
    """TRL defaults to bf16 (and gradient checkpointing); neither helps (or works) on a CPU."""
    cuda = torch.cuda.is_available()
    return {"use_cpu": not cuda, "bf16": cuda and model_cfg.dtype == "bfloat16"}


def trl_args(cfg: SFTConfig, model_cfg: ModelConfig, out: Path, *, report_to: str, progress: bool) -> TRLSFTConfig:
    cuda = torch.cuda.is_available()
    return TRLSFTConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=int(cfg.warmup_ratio * cfg.max_steps),
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        report_to=report_to,
        **device_args(model_cfg),
        gradient_checkpointing=cfg.gradient_checkpointing and cuda,
        deepspeed=cfg.deepspeed or None,
        # Our collator builds inputs and labels from the records: TRL must not tokenise or drop the column.
        dataset_kwargs={"skip_prepare_dataset": True},
        remove_unused_columns=False,
        max_length=None,
        dataloader_num_workers=0,
        disable_tqdm=not progress,
    )


def run_sft(cfg: SFTConfig, model_cfg: ModelConfig, curated: Path, base_model: Path, out: Path, *,
            report_to: str = "none", progress: bool = True) -> TrainResult:
    """Fine-tune ``base_model`` on ``curated/sft.jsonl``; resumes from the last checkpoint in ``out``."""
    set_seed(cfg.seed)
    data = Path(curated) / "sft.jsonl"
    records = read_records(data, split="sft")
    model, processor = load_model(base_model, model_cfg, for_training=True)
    model = apply_trainable(model, model_cfg)
    trainer = SFTTrainer(
        model=model, args=trl_args(cfg, model_cfg, Path(out), report_to=report_to, progress=progress),
        train_dataset=records_dataset(records), data_collator=RecordCollator(processor, model_cfg),
        processing_class=processor, callbacks=[ThroughputCallback(cfg.batch_size * cfg.grad_accum)],
    )
    inputs = {"records": file_digest(data), "base_model": _meta_digest(Path(base_model)),
              "config": {"sft": resume_key(cfg), "model": asdict(model_cfg)}}
    output, seconds, resume = fit(trainer, Path(out), inputs)
    model_dir = save_model(trainer.model, processor, Path(out) / "model")  # LoRA merged: base architecture
    losses = loss_curve(trainer.state.log_history)
    write_json(Path(out) / "meta.json", {
        "stage": "sft",
        "config": {"sft": asdict(cfg), "model": asdict(model_cfg)},
        "git_commit": git_commit(),
        "inputs": {"records": {"path": str(data), "sha256": file_digest(data)},
                   "base_model": {"path": str(base_model), "meta": _meta_digest(Path(base_model))}},
        "resumed_from": resume,
        "steps": trainer.state.global_step,
        "losses": losses,
        "train_metrics": output.metrics,
    })
    return TrainResult(model_dir, losses, trainer.state.global_step, seconds,
                       output.metrics.get("train_samples_per_second", math.nan), output.metrics)


def records_dataset(records: list[dict]) -> Dataset:
    """One JSON record per row: the collator builds the model inputs, so TRL never tokenises the data."""
    return Dataset.from_dict({"record": [json.dumps(r) for r in records]})


def resume_key(cfg: SFTConfig) -> dict:
    """What a checkpoint must share with this run to be resumed; the step budget and logging may change."""
    return {k: v for k, v in asdict(cfg).items() if k not in ("max_steps", "logging_steps", "save_steps")}


def fit(trainer, out: Path, inputs: dict):
    """Train ``trainer`` (resuming the last checkpoint in ``out/checkpoints`` when it was made from the same
    ``inputs``); returns ``(TrainOutput, seconds, resumed_from)``. Shared by the SFT and P4D stages."""
    # Callbacks that add to each log entry (throughput, P4D's loss parts) must run before MLflow's, so the
    # MLflow callback moves to the end of the list.
    if (mlflow_callback := trainer.pop_callback(MLflowCallback)) is not None:
        trainer.add_callback(mlflow_callback)
    resume = _resumable(out / "checkpoints", inputs)
    start = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=resume)
    return output, time.perf_counter() - start, resume


def _resumable(checkpoints: Path, inputs: dict) -> str | None:
    """The last checkpoint, if it was trained from the same records, base model and config; otherwise the
    old checkpoints are removed (resuming them would continue another run) and training starts fresh."""
    stamp = checkpoints / "inputs.json"
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last and stamp.is_file() and json.loads(stamp.read_text()) == json.loads(json.dumps(inputs)):
        log.info("resuming from %s", last)
        return last
    if checkpoints.is_dir():
        log.warning("discarding checkpoints in %s: they come from other inputs or config", checkpoints)
        shutil.rmtree(checkpoints)
    write_json(stamp, inputs)
    return None


def _meta_digest(model_dir: Path) -> str | None:
    meta = model_dir / "meta.json"
    return file_digest(meta) if meta.is_file() else None
