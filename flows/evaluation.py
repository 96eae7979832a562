"""The ``evaluation`` flow: every checkpoint on the bench split with its controls (random, blank frames,
shuffled video, and the text-only-trained checkpoint, evaluated first on blank frames), the comparison
table with the learning headline as a Prefect artifact, and the last checkpoint registered in MLflow as
``challenger``."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from components import stages
from components.config import Params
from components.evaluation.report import comparison_table
from components.io import write_text
from flows.common import params_from

TEXT_ONLY = "sft_text_only"  # the checkpoint name of the text-only-trained control


@task(cache_policy=NO_CACHE)
def evaluate_task(params: Params, curated: Path, model_dir: Path, out: Path, name: str, root: Path,
                  register: bool, text_only: Path | None = None) -> Path:
    stages.evaluate(params, curated, model_dir, out, name=name, root=root, register=register, text_only=text_only)
    return out / "metrics.json"


@flow(name="evaluation", log_prints=True)
def evaluation(checkpoints: dict[str, str], params_path: str = "params.yaml", overrides: list[str] | None = None,
               data_root: str = "data", reports_root: str = "reports") -> str:
    """``checkpoints``: name -> model folder, in pipeline order; the last one other than the text-only
    control (``sft_text_only``, evaluated first on blank frames) is registered."""
    params, root = params_from(params_path, overrides)
    curated, reports = Path(data_root) / "curated", Path(reports_root)
    metrics, text_only = {}, None
    if TEXT_ONLY in checkpoints:
        out = reports / "eval" / TEXT_ONLY
        metrics[TEXT_ONLY] = evaluate_task(stages.text_only_params(params), curated, Path(checkpoints[TEXT_ONLY]),
                                           out, TEXT_ONLY, root, False)
        text_only = out / "predictions.jsonl"
    models = {name: path for name, path in checkpoints.items() if name != TEXT_ONLY}
    last = list(models)[-1]
    for name, path in models.items():
        metrics[name] = evaluate_task(params, curated, Path(path), reports / "eval" / name, name, root, name == last,
                                      text_only)
    metrics = {name: metrics[name] for name in checkpoints}  # pipeline order in the table
    table = comparison_table(metrics)
    write_text(reports / "comparison.md", table + "\n")
    create_markdown_artifact(key="evaluation-comparison", markdown="## Bench accuracy (%)\n\n" + table,
                             description="checkpoints and their controls on the bench split, with the headline")
    return table
