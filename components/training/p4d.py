"""Perceptual 4D Distillation (4D-RGPT Sec. 4.2): SFT loss + latent + explicit distillation.

The student is the SFT checkpoint. Two training-only pieces sit on top of it:

- ``D_4DP`` (``Distiller.decoder``), an MLP from the LLM's hidden states at the visual tokens, rearranged
  to the teacher's grid ``N' x h' x w'`` (eq. 3), to ``F_hat_4D`` with the teacher's ``c'`` channels;
- the teacher's frozen decoders ``D_m``, applied to ``F_hat_4D`` to give ``P_hat_m`` (eq. 4).

Loss = ``L_SFT + w_LD * L_LD + sum_m lambda_m * Delta_m(P_m, P_hat_m)`` (eq. 6, 7), against the teacher's
``F_4D`` and ``P_m`` cached on disk by the ``teacher_targets`` stage. ``Delta``: smooth-L1 / MSE / cosine on
the latent (config), L1 on log-depth, L1 on flow (the last frame has none), BCE against the teacher's
motion probabilities, L1 on the Pluecker rays.

How it hooks into TRL: ``SFTTrainer.compute_loss`` is overridden to add the distillation term to TRL's own
loss (``super()``), the narrowest public seam. TRL's ``compute_loss_func`` argument was the first
choice, but TRL then runs a second, no-grad forward per step for its metrics. The teacher targets ride in
the batch and a forward pre-hook takes them out before the model sees them; a forward hook keeps the LLM
hidden states. ``D_4DP`` is attached to the model while training (so the optimizer and checkpoints
include it) and removed before export: the saved model has exactly the base parameters, and inference
costs what SFT's does (``benchmarks/p4d_inference_cost.py`` measures both).

Departures from the paper: the teacher is the project's small embedded one (or an external one through
its adapter), not L4P itself; the losses are means over tokens / pixels rather than sums over frames,
so the weights keep one scale whatever the number of frames.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import TrainerCallback, set_seed
from trl import SFTTrainer

from components.config import MODALITIES, ModelConfig, P4DConfig, TeacherConfig
from components.curation.schema import read_records
from components.models import apply_trainable, load_model
from components.models.factory import save_model
from components.teacher import Grid, Teacher, TeacherError, load_targets, load_teacher, student_grid
from components.teacher.targets import read_index
from components.training.callbacks import ThroughputCallback
from components.training.gate import loss_curve
from components.training.lineage import input_digests, write_lineage
from components.training.sft import (
    ExactResume,
    PartLearningRates,
    RecordCollator,
    TrainResult,
    fit,
    rank_progress,
    records_dataset,
    resume_key,
    trl_args,
)

log = logging.getLogger(__name__)

TARGET_PREFIX = "p4d_"


def active_modalities(cfg: P4DConfig) -> list[str]:
    """The modalities of L_ED: those with a positive lambda_m."""
    return [m for m in MODALITIES if getattr(cfg.explicit_weights, m) > 0]


def latent_delta(kind: str, target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Delta_LD of eq. 6, averaged over the grid."""
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, target)
    return (1 - F.cosine_similarity(pred, target, dim=-1)).mean()


def explicit_delta(modality: str, target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Delta_m of eq. 7 for maps ``(B, N, C, S, S)``."""
    if modality == "depth":
        return F.l1_loss(pred.clamp_min(1e-3).log(), target.clamp_min(1e-3).log())
    if modality == "flow":  # frame n -> n + 1: the last frame has no flow
        return F.l1_loss(pred[:, :-1], target[:, :-1])
    if modality == "motion":
        return F.binary_cross_entropy_with_logits(pred, torch.sigmoid(target))
    return F.l1_loss(pred, target)


class Distiller(nn.Module):
    """``D_4DP`` plus the hooks and loss of P4D, attached to a student model for training."""

    def __init__(self, student: nn.Module, teacher: Teacher, cfg: P4DConfig, grid: Grid) -> None:
        super().__init__()
        base = student.get_base_model() if hasattr(student, "get_base_model") else student
        hidden = base.config.text_config.hidden_size
        self.decoder = nn.Sequential(nn.Linear(hidden, cfg.decoder_hidden), nn.GELU(),
                                     nn.Linear(cfg.decoder_hidden, teacher.channels))
        self.cfg, self.grid, self.modalities = cfg, grid, active_modalities(cfg)
        self.image_token_id = base.config.image_token_id
        object.__setattr__(self, "teacher", teacher)  # frozen and not ours: not a submodule, never saved
        object.__setattr__(self, "student", base)
        self._hooks: list = []
        self._batch: dict = {}
        self._hidden: torch.Tensor | None = None
        self.sums: dict[str, float] = {}
        self.count = 0
        self.last_depth: tuple[np.ndarray, np.ndarray] | None = None  # (student, teacher) of a batch's first record

    def attach(self) -> None:
        """Register ``D_4DP`` on the student (the trainer optimises and checkpoints it) and the hooks."""
        self.student.p4d_decoder = self.decoder
        text_model = self.student.model.language_model
        layer = text_model if self.cfg.hidden_layer == -1 else text_model.layers[self.cfg.hidden_layer]
        self._hooks = [self.student.register_forward_pre_hook(self._take_targets, with_kwargs=True),
                       layer.register_forward_hook(self._keep_hidden)]

    def detach(self) -> None:
        """Remove ``D_4DP`` and the hooks: what remains is the base architecture."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if hasattr(self.student, "p4d_decoder"):
            del self.student.p4d_decoder

    def _take_targets(self, module, args, kwargs):
        self._batch = {k.removeprefix(TARGET_PREFIX): kwargs.pop(k) for k in list(kwargs) if k.startswith(TARGET_PREFIX)}
        self._batch["input_ids"] = kwargs.get("input_ids")
        return args, kwargs

    def _keep_hidden(self, module, args, output):
        self._hidden = output.last_hidden_state if hasattr(output, "last_hidden_state") else (
            output[0] if isinstance(output, tuple) else output)

    def loss(self) -> torch.Tensor:
        """L_LD + L_ED for the batch the student just saw (eq. 6, 7)."""
        if "latent" not in self._batch or self._hidden is None:
            raise RuntimeError("P4D: the forward pass carried no teacher targets (is the P4D collator in use?)")
        latent, ids, hidden = self._batch["latent"], self._batch["input_ids"], self._hidden
        b = ids.shape[0]
        visual = hidden[ids == self.image_token_id]  # (B * N' * h' * w', H), row-major per image
        if visual.shape[0] != b * self.grid.tokens:
            raise TeacherError(f"P4D: the student has {visual.shape[0] // max(b, 1)} visual tokens per record, the "
                               f"teacher's grid {self.grid} has {self.grid.tokens}")
        f_hat = self.decoder(visual.reshape(b, self.grid.frames, self.grid.height, self.grid.width, -1))
        parts = {"ld": latent_delta(self.cfg.latent_loss, latent, f_hat)} if self.cfg.latent_weight > 0 else {}
        total = self.cfg.latent_weight * parts["ld"] if parts else f_hat.new_zeros(())
        for m in self.modalities:
            pred = self.teacher.decode(f_hat, m)
            parts[m] = explicit_delta(m, self._batch[m], pred)
            total = total + getattr(self.cfg.explicit_weights, m) * parts[m]
            if m == "depth":
                self.last_depth = (pred[0].detach().float().cpu().numpy(), self._batch[m][0].float().cpu().numpy())
        for k, v in parts.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v.detach())
        self.sums["p4d"] = self.sums.get("p4d", 0.0) + float(total.detach())
        self.count += 1
        self._batch, self._hidden = {}, None
        return total

    def take_means(self) -> dict[str, float]:
        means = {f"p4d/{k}": v / self.count for k, v in self.sums.items()} if self.count else {}
        self.sums, self.count = {}, 0
        return means


class P4DTrainer(ExactResume, PartLearningRates, SFTTrainer):
    """TRL's SFTTrainer with P4D's distillation term added to its loss (public ``compute_loss`` + ``super()``),
    resuming exactly (``D_4DP`` is part of the checkpointed model, so it resumes too)."""

    def __init__(self, *args, distiller: Distiller, **kwargs) -> None:
        self.distiller = distiller
        super().__init__(*args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)
        if not model.training:
            return result
        if return_outputs:
            return result[0] + self.distiller.loss(), result[1]
        return result + self.distiller.loss()


class TargetCollator:
    """The SFT batch plus each record's teacher targets (``p4d_latent``, ``p4d_<modality>``)."""

    def __init__(self, records: RecordCollator, targets: Path, cfg: ModelConfig, modalities: list[str]) -> None:
        self.records, self.targets, self.cfg, self.modalities = records, Path(targets), cfg, modalities

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        batch = self.records(rows)
        loaded = [self._load(r["record"]) for r in rows]
        batch[TARGET_PREFIX + "latent"] = torch.from_numpy(np.stack([lat for lat, _ in loaded])).float()
        for m in self.modalities:
            batch[TARGET_PREFIX + m] = torch.from_numpy(np.stack([maps[m] for _, maps in loaded])).float()
        return batch

    @functools.lru_cache(maxsize=4096)  # noqa: B019 (one collator per run; records share their clip's targets)
    def _load(self, record_json: str):
        return load_targets(self.targets, json.loads(record_json), self.cfg)


class P4DLogCallback(TrainerCallback):
    """Adds the mean distillation losses to each log entry and keeps the student's depth maps (Fig. 5)."""

    def __init__(self, distiller: Distiller, cfg: P4DConfig, out: Path) -> None:
        self.distiller, self.out = distiller, out
        self.curve: list[dict] = []  # Trainer appends to log_history before callbacks add to the entry
        steps = cfg.train.max_steps
        n = cfg.depth_log_steps
        self.depth_steps = {max(1, round(steps * (i + 1) / n)) for i in range(n)} if n else set()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is not None and "loss" in logs:
            means = self.distiller.take_means()
            logs.update(means)
            self.curve.append({"step": state.global_step, **means})

    def on_step_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:  # under `accelerate launch` every rank would write the same file
            return
        if state.global_step in self.depth_steps and self.distiller.last_depth is not None:
            student, teacher = self.distiller.last_depth
            np.savez_compressed(self.out / f"step_{state.global_step:06d}.npz", student=student, teacher=teacher)


@dataclass
class P4DResult(TrainResult):
    distill_curve: list[dict] = field(default_factory=list)
    depth_snapshots: list[Path] = field(default_factory=list)


def check_targets(targets: Path, grid: Grid, modalities: list[str], cfg: ModelConfig, records: list[dict]) -> dict:
    """Everything P4D needs from the cached targets, checked before any training step."""
    index = read_index(targets)  # a missing or broken index.json: TeacherError naming it
    if Grid(**index["grid"]) != grid:
        raise TeacherError(f"{Path(targets) / 'index.json'}: targets on grid {Grid(**index['grid'])}, the student's "
                           f"visual token grid is {grid}; re-run teacher and teacher_targets")
    missing = sorted(set(modalities) - set(index["modalities"]))
    if missing:
        raise TeacherError(f"{Path(targets) / 'index.json'}: modalities {missing} requested by p4d.explicit_weights, "
                           f"the teacher produced only {index['modalities']}")
    load_targets(targets, records[0], cfg)  # one real read: a missing file fails here, named
    return index


def run_p4d(cfg: P4DConfig, teacher_cfg: TeacherConfig, model_cfg: ModelConfig, curated: Path, sft_model: Path,
            teacher_dir: Path, targets: Path, out: Path, *, report_to: str = "none", progress: bool = True) -> P4DResult:
    """P4D on ``curated/sft.jsonl`` from the SFT checkpoint, with the frozen teacher's cached targets."""
    set_seed(cfg.train.seed)
    out = Path(out)
    data = Path(curated) / "sft.jsonl"
    records = read_records(data, split="sft")
    grid, modalities = student_grid(model_cfg), active_modalities(cfg)
    index = check_targets(targets, grid, modalities, model_cfg, records)
    teacher = load_teacher(teacher_dir, teacher_cfg, model_cfg)
    teacher.check_compatible(grid, modalities)
    # the SFT stage's output: it must carry the digest save_model wrote, and still match it
    model, processor = load_model(sft_model, model_cfg, for_training=True, require_digest=True)
    model = apply_trainable(model, model_cfg)
    distiller = Distiller(model, teacher, cfg, grid)
    distiller.attach()
    depth_dir = out / "depth"
    depth_dir.mkdir(parents=True, exist_ok=True)
    p4d_log = P4DLogCallback(distiller, cfg, depth_dir)
    trainer = P4DTrainer(
        model=model, args=trl_args(cfg.train, model_cfg, out, report_to=report_to, progress=progress),
        train_dataset=records_dataset(records),
        data_collator=TargetCollator(RecordCollator(processor, model_cfg), targets, model_cfg, modalities),
        processing_class=processor, distiller=distiller,
        callbacks=[ThroughputCallback(cfg.train.batch_size * cfg.train.grad_accum), p4d_log],
        lr_scales=model_cfg.trainable.lr_scales(),
    )
    teacher.to(trainer.args.device)
    sources = {"records": data, "sft_model": Path(sft_model), "targets": Path(targets) / "index.json"}
    digests = input_digests(sources)
    inputs = {**digests, "config": {"p4d": {**asdict(cfg), "train": resume_key(cfg.train)}, "model": asdict(model_cfg)}}
    output, seconds, resume = fit(trainer, out, inputs)
    distiller.detach()  # training-only modules go: the export is the base architecture
    model_dir, losses, processes = out / "model", loss_curve(trainer.state.log_history), rank_progress(trainer)
    curve = p4d_log.curve  # under `accelerate launch`: rank 0's share of each batch
    if trainer.is_world_process_zero():  # one rank writes the outputs, the others wait (as run_sft)
        save_model(trainer.model, processor, model_dir)
        write_lineage(out, stage="p4d", config={"p4d": asdict(cfg), "teacher": asdict(teacher_cfg),
                                                "model": asdict(model_cfg)},
                      inputs=sources, digests=digests, model_dir=model_dir, teacher={"path": str(teacher_dir)},
                      targets_teacher=index.get("teacher"), resumed_from=resume, steps=trainer.state.global_step,
                      losses=losses, distill_curve=curve, processes=processes, train_metrics=output.metrics)
    trainer.accelerator.wait_for_everyone()
    return P4DResult(model_dir, losses, trainer.state.global_step, seconds,
                     output.metrics.get("train_samples_per_second", math.nan), output.metrics, curve,
                     sorted(depth_dir.glob("step_*.npz")))
