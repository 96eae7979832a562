"""Train the embedded teacher on the curated records' frames, evaluate it on held-out clips, save it.

L4P is trained once, at scale, and 4D-RGPT uses it frozen. Here ``train_teacher`` plays that part for the
embedded default: it learns every modality from the clips' ground truth (or the project's own estimates,
``teacher.targets_from``) on the frames the student will see (each distinct clip + student frames of the
sft and rft records, plus other frame subsets of the same clips and mirrored copies: ``data.py``), and is
evaluated on the bench split's clips, which it never sees (splits are clip-disjoint), next to trivial
predictors (``baselines``) so that "it learned" can be checked. Losses and metrics: ``metrics.py``.

Reads top to bottom: seed, data, model, train, evaluate, save. Nothing is written unless training
finishes with finite losses; the weights and then the manifest are each written atomically.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from components.config import ModelConfig, StereoConfig, TeacherConfig
from components.io import read_jsonl
from components.teacher.base import TeacherError
from components.teacher.data import flip, load_data, mean_maps, temporal_views
from components.teacher.embedded import EmbeddedTeacher
from components.teacher.inputs import record_key
from components.teacher.metrics import baseline_metrics, evaluate, modality_loss

logger = logging.getLogger(__name__)

WARMUP = 0.05  # fraction of steps with a linear learning-rate warm-up, then cosine decay to FINAL_LR
FINAL_LR = 0.1
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
CURVE_POINTS = 50  # the loss curve keeps about this many points


@dataclass(frozen=True)
class TeacherResult:
    out: Path
    metrics: dict[str, float]  # held-out clips (bench split)
    baselines: dict[str, float]  # trivial predictors on the same held-out maps
    train_metrics: dict[str, float]  # the records' own training frames: tells under- from over-fitting
    loss_curve: list[dict[str, float]]  # step, loss and each modality's loss
    seconds: float
    train_samples: int  # distinct (clip, student frames) of the sft + rft records
    eval_samples: int
    parameters: int


def _lr_factor(step: int, total: int) -> float:
    warm = max(1, int(WARMUP * total))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * progress))


def _read_split(curated: Path, split: str, required: bool) -> list[dict]:
    path = curated / f"{split}.jsonl"
    if not path.is_file():
        if required:
            raise TeacherError(f"{path} is missing: run the curation stage first")
        return []
    return read_jsonl(path)


def train_teacher(cfg: TeacherConfig, model_cfg: ModelConfig, curated: Path, out: Path, *, progress: bool = False,
                  stereo: StereoConfig | None = None) -> TeacherResult:
    """Train the embedded teacher on the sft + rft records' frames, evaluate on the bench clips, write
    ``out/teacher.safetensors`` + ``out/teacher.json``. ``stereo`` configures the matcher when
    ``cfg.targets_from == "estimates"`` (pass ``curation.stereo``; the curation defaults otherwise)."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    curated, out = Path(curated), Path(out)

    records = _read_split(curated, "sft", True) + _read_split(curated, "rft", False)
    bench_records = _read_split(curated, "bench", False)
    held_out = {r["clip_id"] for r in bench_records}
    records = [r for r in records if r["clip_id"] not in held_out]  # splits are clip-disjoint; make sure
    own = len({record_key(r, model_cfg) for r in records})  # they come first in ``train``, views after
    train = load_data(records + temporal_views(records, model_cfg, rng), cfg, model_cfg, stereo)
    bench = load_data(bench_records, cfg, model_cfg, stereo) if bench_records else None
    logger.info("teacher data: %d training samples (%d of the records), %d held-out (%.1f s)", len(train.keys),
                own, len(bench.keys) if bench else 0, time.perf_counter() - start)

    teacher = EmbeddedTeacher.from_configs(cfg, model_cfg)
    teacher.set_priors(mean_maps(train))  # start from the training-mean maps: tokens learn what differs
    optimizer = torch.optim.AdamW(teacher.parameters(), lr=cfg.learning_rate, weight_decay=WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg.max_steps))

    curve, every, order = [], max(1, cfg.max_steps // CURVE_POINTS), np.array([], int)
    batch_size = min(cfg.batch_size, len(train.keys))
    teacher.train()
    for step in range(cfg.max_steps):
        if len(order) < batch_size:  # epochs of a fixed-seed permutation
            order = np.concatenate([order, rng.permutation(len(train.keys))])
        idx, order = torch.from_numpy(order[:batch_size]), order[batch_size:]
        frames, times, values, valid = train.batch(idx)
        frames, values, valid = flip(frames, values, valid, torch.from_numpy(rng.random(len(idx)) < 0.5))
        latent = teacher.encode(frames, times)
        losses = {m: modality_loss(m, teacher.decode(latent, m), values[m], valid[m]) for m in cfg.modalities}
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise TeacherError(f"teacher loss is not finite at step {step + 1} "
                               f"({ {m: v.item() for m, v in losses.items()} }): lower teacher.learning_rate")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(teacher.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        if step % every == 0 or step == cfg.max_steps - 1:
            curve.append({"step": step + 1, "loss": loss.item(), **{m: v.item() for m, v in losses.items()}})
            logger.log(logging.INFO if progress else logging.DEBUG, "teacher step %d/%d loss %.4f",
                       step + 1, cfg.max_steps, curve[-1]["loss"])

    teacher.eval()
    if bench is None:
        logger.warning("no bench records in %s: the teacher has no held-out metrics", curated)
    metrics = evaluate(teacher, bench, cfg.modalities) if bench else {}
    baselines = baseline_metrics(train.head(own), bench) if bench else {}
    train_metrics = evaluate(teacher, train.head(own), cfg.modalities)
    seconds = time.perf_counter() - start
    parameters = sum(p.numel() for p in teacher.parameters())
    eval_samples = len(bench.keys) if bench else 0
    teacher.save(out, metrics=metrics, extra={
        "config": asdict(cfg), "baselines": baselines, "train_metrics": train_metrics,
        "model": {"num_frames": model_cfg.num_frames, "frame_size": model_cfg.frame_size,
                  "visual_input": model_cfg.visual_input},
        "data": {"curated": str(curated), "train_samples": own, "with_views": len(train.keys),
                 "eval_samples": eval_samples, "held_out_clips": sorted(held_out)},
        "parameters": parameters, "seconds": round(seconds, 2)})
    logger.info("teacher trained in %.1f s; held-out %s; baselines %s", seconds,
                {k: round(v, 4) for k, v in metrics.items()}, {k: round(v, 4) for k, v in baselines.items()})
    return TeacherResult(out, metrics, baselines, train_metrics, curve, seconds, own, eval_samples, parameters)


def depth_image(depth: np.ndarray, *, near: float | None = None, far: float | None = None) -> np.ndarray:
    """A depth map (H, W) or (1, H, W) in metres -> (H, W, 3) uint8 RGB for logging: inverse depth through
    the turbo colormap (near is warm), scaled between ``near`` and ``far`` (default: the 2nd and 98th
    percentiles of the finite depths; pass the same pair to compare a prediction with its target);
    missing or non-positive depth is black."""
    depth = np.asarray(depth, dtype=np.float64).squeeze()
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W) or (1, H, W), got shape {np.shape(depth)}")
    ok = np.isfinite(depth) & (depth > 0)
    if not ok.any():
        return np.zeros((*depth.shape, 3), np.uint8)
    lo, hi = np.percentile(depth[ok], [2, 98])
    near, far = near or lo, far or hi
    inv = np.where(ok, 1.0 / np.where(ok, depth, 1.0), 0.0)
    scale = (inv - 1.0 / far) / max(1.0 / near - 1.0 / far, 1e-12)
    rgb = cv2.cvtColor(cv2.applyColorMap((np.clip(scale, 0.0, 1.0) * 255).astype(np.uint8), cv2.COLORMAP_TURBO),
                       cv2.COLOR_BGR2RGB)
    rgb[~ok] = 0
    return rgb
