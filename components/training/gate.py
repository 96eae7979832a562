"""The training gate (DESIGN.md): after a training stage, the loss is finite and has fallen, the saved
checkpoint reloads, and its answers parse on a few bench records. A failed gate raises and stops the
pipeline; the report is written either way."""

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


def training_gate(losses: list[float], model_dir: Path, gate: TrainingGateConfig, model_cfg: ModelConfig,
                  bench: list[dict], report_path: Path, *, raise_on_failure: bool = True) -> dict:
    from components.evaluation.answers import extract_answer  # torch and transformers load only when gating
    from components.models import load_model
    from components.models.generation import make_generate_fn

    ok_fell, first, last = fell(losses) if losses else (False, math.nan, math.nan)
    checks = {
        "loss_finite": {"ok": bool(losses) and all(math.isfinite(x) for x in losses), "n_logged": len(losses)},
        "loss_fell": {"ok": ok_fell, "first": first, "last": last},
    }
    try:
        model, processor = load_model(model_dir, model_cfg)
        checks["reloads"] = {"ok": True}
    except Exception as exc:  # the report names the error; the gate fails below
        checks["reloads"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if checks["reloads"]["ok"]:
        records = bench[: gate.records]
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
