"""Evaluate one checkpoint on the bench split: load it, generate in batches (and blind), score, report."""

from __future__ import annotations

from pathlib import Path

from components.config import EvaluateConfig, ModelConfig
from components.evaluation.harness import EvalResult, evaluate
from components.evaluation.report import write_report
from components.models import load_model
from components.models.generation import make_generate_fn
from components.training.sft import read_records


def bench_records(curated: Path, cfg: EvaluateConfig) -> list[dict]:
    """The bench split; with ``max_records`` an evenly spaced subset (every category keeps its share)."""
    records = read_records(Path(curated) / "bench.jsonl", split="bench")
    if cfg.max_records and len(records) > cfg.max_records:
        step = len(records) / cfg.max_records
        records = [records[int(i * step)] for i in range(cfg.max_records)]
    return records


def evaluate_checkpoint(cfg: EvaluateConfig, model_cfg: ModelConfig, curated: Path, model_dir: Path, out: Path, *,
                        name: str, progress: bool = True) -> EvalResult:
    records = bench_records(curated, cfg)
    model, processor = load_model(model_dir, model_cfg)
    generate = make_generate_fn(model, processor, model_cfg, max_new_tokens=cfg.max_new_tokens)
    result = evaluate(records, generate, batch_size=cfg.batch_size, blind_baseline=cfg.blind_baseline,
                      progress=progress)
    write_report(result, Path(out), title=f"{name}: {model_dir}")
    return result
