"""The ``evaluation`` flow: every checkpoint on the bench split (with blind and random baselines), the
comparison table as a Prefect artifact, and the last checkpoint registered in MLflow as ``challenger``."""

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


@task(cache_policy=NO_CACHE)
def evaluate_task(params: Params, curated: Path, model_dir: Path, out: Path, name: str, root: Path,
                  register: bool) -> Path:
    stages.evaluate(params, curated, model_dir, out, name=name, root=root, register=register)
    return out / "metrics.json"


@flow(name="evaluation", log_prints=True)
def evaluation(checkpoints: dict[str, str], params_path: str = "params.yaml", overrides: list[str] | None = None,
               data_root: str = "data", reports_root: str = "reports") -> str:
    """``checkpoints``: name -> model folder, in pipeline order; the last one is registered."""
    params, root = params_from(params_path, overrides)
    curated, reports = Path(data_root) / "curated", Path(reports_root)
    last = list(checkpoints)[-1]
    metrics = {name: evaluate_task(params, curated, Path(path), reports / "eval" / name, name, root, name == last)
               for name, path in checkpoints.items()}
    table = comparison_table(metrics)
    write_text(reports / "comparison.md", table + "\n")
    create_markdown_artifact(key="evaluation-comparison", markdown="## Bench accuracy (%)\n\n" + table,
                             description="zero-shot / blind / SFT / random on the bench split")
    return table
