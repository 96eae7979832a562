"""The ``evaluation`` flow: every checkpoint on the bench split with its controls (random, blank frames,
shuffled video, and the text-only-trained checkpoint, evaluated first on blank frames), the comparison
table with the learning headline as a Prefect artifact, and the last checkpoint registered in MLflow as
``challenger``.

Each evaluation is ``mllm4d evaluate`` in a child process, so the ``pipeline`` flow can run it beside the
training of the next stage (``submit_evaluations`` takes the training tasks' futures): in the training process
it would contend with training for the GIL. On the default that hides ~40 s of the ~1 min of evaluations.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from components.evaluation.report import comparison_table
from components.io import write_text
from components.training.launch import cli_command, run_command

TEXT_ONLY = "sft_text_only"  # the checkpoint name of the text-only-trained control


@task(cache_policy=NO_CACHE)
def evaluate_task(params_path: str, overrides: list[str] | None, curated: Path, model_dir: Path, out: Path,
                  name: str, register: bool = False, text_only: Path | None = None,
                  blank_frames: bool = False) -> Path:
    """``mllm4d evaluate`` for one checkpoint in a child process (its MLflow run nests under the parent's through
    ``MLLM4D_PARENT_RUN_ID``); returns its ``metrics.json``."""
    args = ["--curated", curated, "--model", model_dir, "--name", name, "--out", out]
    args += (["--register"] if register else []) + (["--blank-frames"] if blank_frames else [])
    args += ["--text-only", text_only] if text_only else []
    run_command(cli_command("evaluate", params_path, overrides, args), f"the evaluation of {name}")
    return Path(out) / "metrics.json"


def submit_evaluations(checkpoints: dict[str, str | Path | PrefectFuture], params_path: str,
                       overrides: list[str] | None, data_root: str, reports_root: str) -> dict[str, PrefectFuture]:
    """An evaluation per checkpoint (a folder, or the future of the task that trains it: the evaluation starts when
    it ends), the text-only control first on blank frames: the others' learning headline reads its predictions.
    The last checkpoint other than the control is registered (when ``evaluate.register``)."""
    curated, reports = Path(data_root) / "curated", Path(reports_root)
    futures: dict[str, PrefectFuture] = {}
    text_only, after = None, []
    if TEXT_ONLY in checkpoints:
        out = reports / "eval" / TEXT_ONLY
        futures[TEXT_ONLY] = evaluate_task.submit(params_path, overrides, curated, checkpoints[TEXT_ONLY], out,
                                                  TEXT_ONLY, blank_frames=True)
        text_only, after = out / "predictions.jsonl", [futures[TEXT_ONLY]]
    models = [name for name in checkpoints if name != TEXT_ONLY]
    for name in models:
        futures[name] = evaluate_task.submit(params_path, overrides, curated, checkpoints[name], reports / "eval" / name,
                                             name, name == models[-1], text_only, wait_for=after)
    return {name: futures[name] for name in checkpoints}  # pipeline order in the table


def comparison(metrics: dict[str, Path], reports_root: str) -> str:
    """The comparison table of the evaluated checkpoints (``metrics.json`` by name), as a file and an artifact."""
    table = comparison_table(metrics)
    write_text(Path(reports_root) / "comparison.md", table + "\n")
    create_markdown_artifact(key="evaluation-comparison", markdown="## Bench accuracy (%)\n\n" + table,
                             description="checkpoints and their controls on the bench split, with the headline")
    return table


@flow(name="evaluation", log_prints=True)
def evaluation(checkpoints: dict[str, str], params_path: str = "params.yaml", overrides: list[str] | None = None,
               data_root: str = "data", reports_root: str = "reports") -> str:
    """``checkpoints``: name -> model folder, in pipeline order; the last one other than the text-only
    control (``sft_text_only``, evaluated first on blank frames) is registered."""
    futures = submit_evaluations(checkpoints, params_path, overrides, data_root, reports_root)
    return comparison({name: future.result() for name, future in futures.items()}, reports_root)
