"""The training gate (DESIGN.md): after a training stage, the loss is finite and has fallen, the saved
checkpoint reloads, and its answers parse on a few bench records. A failed gate raises and stops the
pipeline; the report is written either way.

GRPO's loss need not fall (it is an advantage-weighted log-likelihood whose scale moves with the rewards'
spread), so for GRPO the caller passes the mean reward curve: the loss must still be finite, and instead of
"loss fell" the reward must be finite and must not have fallen by more than ``reward_tolerance``."""

from __future__ import annotations

import logging
import math
from pathlib import Path

from components.config import ModelConfig, TrainingGateConfig
from components.io import write_json

log = logging.getLogger(__name__)


def loss_curve(log_history: list[dict]) -> list[float]:
    """The training losses a ``Trainer`` logged, in order (finite or not: the gate judges)."""
    return [float(e["loss"]) for e in log_history if "loss" in e and "eval_loss" not in e]


def fell(losses: list[float], window: int = 3) -> tuple[bool, float, float]:
    """Whether the mean of the last ``window`` losses is below the mean of the first ``window``."""
    w = max(1, min(window, len(losses) // 2))
    first, last = sum(losses[:w]) / w, sum(losses[-w:]) / w
    return last < first and all(math.isfinite(x) for x in losses), first, last


class TrainingGateFailed(RuntimeError):
    def __init__(self, report: dict) -> None:
        failed = [name for name, check in report["checks"].items() if not check["ok"]]
        super().__init__(f"training gate failed ({', '.join(failed)}): see {report['report']}")
        self.report = report


def held(rewards: list[float], tolerance: float, window: int = 3) -> tuple[bool, float, float]:
    """Whether the mean of the last ``window`` rewards is at least the first ``window``'s minus ``tolerance``."""
    w = max(1, min(window, len(rewards) // 2))
    first, last = sum(rewards[:w]) / w, sum(rewards[-w:]) / w
    return last >= first - tolerance and all(math.isfinite(x) for x in rewards), first, last


def _json_float(x: float) -> float | None:
    """None for NaN / inf: the report is strict JSON, and a non-finite curve is what the gate must report."""
    return x if math.isfinite(x) else None


def training_gate(losses: list[float], model_dir: Path, gate: TrainingGateConfig, model_cfg: ModelConfig,
                  bench: list[dict], report_path: Path, *, raise_on_failure: bool = True,
                  rewards: list[float] | None = None, reward_tolerance: float | None = None) -> dict:
    """``rewards`` (GRPO's mean reward per logging step) replaces the "loss fell" check by "reward held" within
    ``reward_tolerance`` (``grpo.reward_tolerance``: the one place its value lives)."""
    if rewards is not None and reward_tolerance is None:
        raise ValueError("training_gate: rewards given without reward_tolerance")
    from components.evaluation.answers import extract_answer  # torch and transformers load only when gating
    from components.evaluation.checkpoint import evenly_spaced
    from components.models import load_model
    from components.models.generation import make_generate_fn

    checks = {"loss_finite": {"ok": bool(losses) and all(math.isfinite(x) for x in losses), "n_logged": len(losses)}}
    if rewards is None:
        ok_fell, first, last = fell(losses) if losses else (False, math.nan, math.nan)
        checks["loss_fell"] = {"ok": ok_fell, "first": _json_float(first), "last": _json_float(last)}
    else:
        ok_held, first, last = held(rewards, reward_tolerance) if rewards else (False, math.nan, math.nan)
        checks["reward_held"] = {"ok": ok_held, "first": _json_float(first), "last": _json_float(last),
                                 "tolerance": reward_tolerance, "n_logged": len(rewards)}
    try:
        model, processor = load_model(model_dir, model_cfg)
        checks["reloads"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 (any load error fails the gate; the report names it)
        checks["reloads"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if checks["reloads"]["ok"]:
        records = evenly_spaced(bench, gate.records)
        outputs = make_generate_fn(model, processor, model_cfg, max_new_tokens=gate.max_new_tokens)(records, False)
        valid = [extract_answer(o, r).format_valid for o, r in zip(outputs, records)]
        rate = sum(valid) / max(len(valid), 1)
        checks["answers_parse"] = {"ok": rate >= gate.min_format_valid, "format_valid_rate": rate,
                                   "threshold": gate.min_format_valid, "n": len(records),
                                   "examples": outputs[:3]}
    else:
        checks["answers_parse"] = {"ok": False, "error": "checkpoint did not reload"}
    report = {"success": all(c["ok"] for c in checks.values()), "checks": checks, "model_dir": str(model_dir),
              "report": str(report_path)}
    write_json(report_path, report)
    (log.info if report["success"] else log.warning)("training gate %s: %s", "passed" if report["success"] else "FAILED",
                                                     {k: v["ok"] for k, v in checks.items()})
    if not report["success"] and raise_on_failure:
        raise TrainingGateFailed(report)
    return report
