"""Evaluate one checkpoint on the bench split: load it, generate in batches (and with the controls:
blank frames, shuffled video), score, join the text-only-trained checkpoint's predictions, report."""

from __future__ import annotations

from pathlib import Path

from components.config import EvaluateConfig, ModelConfig
from components.curation.schema import read_records
from components.evaluation.controls import add_headline, text_only_rows
from components.evaluation.harness import evaluate
from components.evaluation.report import EvalResult, write_report
from components.io import read_jsonl
from components.models import load_model
from components.models.generation import make_generate_fn


def bench_records(curated: Path, cfg: EvaluateConfig) -> list[dict]:
    """The bench split; with ``max_records`` an evenly spaced subset (every category keeps its share)."""
    return evenly_spaced(read_records(Path(curated) / "bench.jsonl", split="bench"), cfg.max_records)


def evenly_spaced(records: list[dict], n: int) -> list[dict]:
    """``n`` records spread over the list (0 = all): the bench is grouped by clip and category, so a prefix
    would see a few categories only."""
    if not n or len(records) <= n:
        return records
    step = len(records) / n
    return [records[int(i * step)] for i in range(n)]


def evaluate_checkpoint(cfg: EvaluateConfig, model_cfg: ModelConfig, curated: Path, model_dir: Path, out: Path, *,
                        name: str, progress: bool = True, text_only: Path | None = None) -> EvalResult:
    """``text_only``: the text-only-trained checkpoint's ``predictions.jsonl`` (its row and the headline).
    A checkpoint evaluated with ``model_cfg.blank_frames`` (the text-only control itself) sees no video, so
    its blind and shuffled rows would repeat its own: they are not run."""
    records = bench_records(curated, cfg)
    sees_video = not model_cfg.blank_frames
    control = read_jsonl(text_only) if text_only and sees_video else None
    if control is not None:
        text_only_rows(records, control)  # fail on mismatched bench records before any generation
    model, processor = load_model(model_dir, model_cfg)
    generate = make_generate_fn(model, processor, model_cfg, max_new_tokens=cfg.max_new_tokens)
    result = evaluate(records, generate, batch_size=cfg.batch_size, blind_baseline=cfg.blind_baseline and sees_video,
                      shuffled_baseline=cfg.shuffled_baseline and sees_video, shuffle_seed=cfg.shuffle_seed,
                      n_boot=cfg.bootstrap_samples, progress=progress)
    if sees_video:
        add_headline(result.metrics, result.predictions, control, n_boot=cfg.bootstrap_samples)
    result.metrics["input"] = "video" if sees_video else "blank frames"
    write_report(result, Path(out), title=f"{name}: {model_dir}")
    return result
