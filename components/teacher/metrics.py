"""Losses and metrics of the teacher's maps (also usable on a student's decoded maps).

Losses (4D-RGPT leaves the teacher's training to L4P): L1 on log-depth, Huber on flow (``FLOW_HUBER``),
BCE + soft Dice on the motion logit (``motion_loss``), L1 on the Pluecker rays; invalid pixels (the last
frame's flow, occlusions in estimated targets) never count. Metrics, pixel-weighted over a whole set: depth AbsRel,
flow end-point error (map pixels), motion-mask IoU (logit > 0 vs target >= 0.5), camray direction angle
(degrees) and moment L2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from components.teacher.base import Teacher
from components.teacher.data import Data, mean_maps

EVAL_BATCH = 16
STATIC_LOGIT = -10.0  # the all-static motion baseline
# Flow loss: Huber, quadratic below 1 map pixel. With plain L1, the sub-pixel errors of the many clips with
# a still camera give full-size sign gradients that drown the few turning clips' signal; large errors
# (motion edges) still count linearly.
FLOW_HUBER = 1.0


def _masked_mean(err: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    mask = valid.expand_as(err).to(err.dtype)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def modality_loss(modality: str, pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """One modality's loss between decoded ``pred`` and ``target`` maps (B, N, C, S, S), valid pixels only."""
    if modality == "depth":
        return _masked_mean((pred.clamp_min(1e-3).log() - target.clamp_min(1e-3).log()).abs(), valid)
    if modality == "motion":
        return motion_loss(pred, target, valid)
    if modality == "flow":
        return _masked_mean(F.smooth_l1_loss(pred, target, beta=FLOW_HUBER, reduction="none"), valid)
    return _masked_mean((pred - target).abs(), valid)  # camray


def motion_loss(logit: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice (1 - soft IoU-like overlap of the whole batch). Moving pixels are ~5% of a map: with
    BCE alone the head predicted "static" everywhere for hundreds of steps on some seeds (held-out IoU
    0.00-0.05 after 400 steps); with the Dice term 0.31 on both seeds tried."""
    bce = _masked_mean(F.binary_cross_entropy_with_logits(logit, target, reduction="none"), valid)
    prob, truth = torch.sigmoid(logit) * valid, target * valid
    return bce + 1 - (2 * (prob * truth).sum() + 1) / (prob.sum() + truth.sum() + 1)


class MetricSums:
    """Pixel-weighted sums over a whole evaluation set, so that metrics do not depend on the batching."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}

    def add(self, name: str, value: torch.Tensor | float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(value)

    def update(self, pred: dict[str, torch.Tensor], values: dict[str, torch.Tensor],
               valid: dict[str, torch.Tensor]) -> None:
        for m, p in pred.items():
            g, ok = values[m], valid[m][:, :, 0]
            self.add(f"{m}_pixels", ok.sum())
            if m == "depth":
                self.add("depth_absrel", (((p - g).abs() / g.clamp_min(1e-3))[:, :, 0] * ok).sum())
            elif m == "flow":
                self.add("flow_epe", (torch.linalg.vector_norm(p - g, dim=2) * ok).sum())
            elif m == "motion":
                moving, truth = (p[:, :, 0] > 0) & ok, (g[:, :, 0] >= 0.5) & ok
                self.add("motion_inter", (moving & truth).sum())
                self.add("motion_union", (moving | truth).sum())
            elif m == "camray":
                cos = (F.normalize(p[:, :, :3], dim=2) * F.normalize(g[:, :, :3], dim=2)).sum(2).clamp(-1.0, 1.0)
                self.add("camray_angle_deg", (torch.rad2deg(torch.acos(cos)) * ok).sum())
                self.add("camray_moment_l2", (torch.linalg.vector_norm(p[:, :, 3:] - g[:, :, 3:], dim=2) * ok).sum())

    def result(self) -> dict[str, float]:
        s, out = self.sums, {}
        for name in ("depth_absrel", "flow_epe", "camray_angle_deg", "camray_moment_l2"):
            if name in s:
                out[name] = s[name] / max(s[f"{name.split('_')[0]}_pixels"], 1.0)
        if "motion_union" in s:  # nothing moving and nothing predicted moving is perfect agreement
            out["motion_iou"] = s["motion_inter"] / s["motion_union"] if s["motion_union"] else 1.0
        return out


@torch.no_grad()
def evaluate(teacher: Teacher, data: Data, modalities: list[str] | tuple[str, ...]) -> dict[str, float]:
    """Metrics of ``teacher``'s decoded maps against ``data``'s targets."""
    sums = MetricSums()
    for start in range(0, len(data.keys), EVAL_BATCH):
        frames, times, values, valid = data.batch(slice(start, start + EVAL_BATCH))
        latent = teacher.encode(frames, times)
        sums.update({m: teacher.decode(latent, m) for m in modalities}, values, valid)
    return sums.result()


def baseline_metrics(train: Data, held_out: Data) -> dict[str, float]:
    """Trivial predictors on ``held_out``: the training-mean depth map (geometric mean per pixel), zero flow,
    all-static motion, the training-mean camray map per frame."""
    means = mean_maps(train)
    pred = {m: torch.zeros_like(v) if m == "flow" else torch.full_like(v, STATIC_LOGIT) if m == "motion"
            else means[m].expand_as(v) for m, v in held_out.values.items()}
    sums = MetricSums()
    sums.update(pred, held_out.values, held_out.valid)
    return sums.result()
