"""The ``pipeline`` flow: the whole chain under one MLflow parent run.

scenes -> curate -> data gate -> language-prior gate -> base model -> SFT -> gate (and the text-only-trained
control: SFT on blank frames -> gate) -> teacher -> teacher targets -> P4D -> gate -> GRPO -> gate -> evaluation
(zero-shot, SFT, P4D, GRPO, each with random, blank-frame, shuffled-video and text-only-trained controls and
the learning headline) -> register the GRPO checkpoint as ``challenger``, with the comparison table and the
MLflow parent run's link as a Prefect artifact.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from components.config import to_dict
from components.tracking import pipeline_run
from flows.common import params_from
from flows.curation import curation
from flows.evaluation import evaluation
from flows.training import training


@flow(name="pipeline", log_prints=True)
def pipeline(params_path: str = "params.yaml", overrides: list[str] | None = None, data_root: str = "data",
             reports_root: str = "reports", models_root: str = "models") -> str:
    params, root = params_from(params_path, overrides)
    with pipeline_run("pipeline", params.tracking, root, params=to_dict(params)) as parent:
        stats = curation(params_path, overrides, data_root, reports_root)
        checkpoints = training(params_path, overrides, data_root, models_root, reports_root)
        table = evaluation(checkpoints, params_path, overrides, data_root, reports_root)
        summary = (
            f"{table}\n\n"
            f"curated data: {Path(data_root) / 'curated'} ({stats['records']})\n"
            f"data gate report: {Path(reports_root) / 'quality' / 'gate_report.json'} "
            f"(Data Docs: {Path(reports_root) / 'quality' / 'data_docs'})\n"
            f"language-prior gate report: {Path(reports_root) / 'quality' / 'prior_report.md'}\n"
            f"checkpoints: {checkpoints}; comparison: {Path(reports_root) / 'comparison.md'}\n"
            f"MLflow parent run: {parent.url()}"
        )
        create_markdown_artifact(key="pipeline-summary", markdown="## Pipeline\n\n" + summary.replace("\n", "\n\n"),
                                 description="where the outputs and the MLflow run are")
    return summary
