"""The ``pipeline`` flow: the whole chain under one MLflow parent run.

scenes -> curate -> data gate -> language-prior gate -> base model -> SFT -> gate (and the text-only-trained
control: SFT on blank frames -> gate) -> teacher -> teacher targets -> P4D -> gate -> GRPO -> gate -> evaluation
(zero-shot, SFT, P4D, GRPO, each with random, blank-frame, shuffled-video and text-only-trained controls and
the learning headline) -> register the GRPO checkpoint as ``challenger`` -> the promotion gate (``champion``
moves only if it passes). The parent run carries the comparison table, the registered model's headline
metrics and the decision; a Prefect artifact says where everything is.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from components.config import to_dict
from components.tracking import pipeline_run
from flows.common import params_from
from flows.curation import curation
from flows.evaluation import evaluation
from flows.promotion import promotion
from flows.training import training


def headline_metrics(metrics_file: Path) -> dict[str, float]:
    """The registered checkpoint's bench numbers for the parent run: its overall and dynamic mc macro, each
    control's, and the learning headline (model minus the stronger control)."""
    metrics = json.loads(Path(metrics_file).read_text())
    out = {}
    for row in ("model", "shuffled", "text_only", "random"):
        for key in ("overall", "dynamic_mc_macro"):
            value = (metrics.get(row) or {}).get(key)
            if value:
                out[f"{row}.{key}"] = float(value["value"])
    if metrics.get("headline"):
        out["headline.value"], (out["headline.ci_low"], out["headline.ci_high"]) = (
            metrics["headline"]["value"], metrics["headline"]["ci"])
    return out


@flow(name="pipeline", log_prints=True)
def pipeline(params_path: str = "params.yaml", overrides: list[str] | None = None, data_root: str = "data",
             reports_root: str = "reports", models_root: str = "models") -> str:
    params, root = params_from(params_path, overrides)
    reports = Path(reports_root)
    with pipeline_run("pipeline", params.tracking, root, params=to_dict(params)) as parent:
        stats = curation(params_path, overrides, data_root, reports_root)
        checkpoints = training(params_path, overrides, data_root, models_root, reports_root)
        table = evaluation(checkpoints, params_path, overrides, data_root, reports_root)
        registered = [name for name in checkpoints if name != "sft_text_only"][-1]
        parent.log_metrics(headline_metrics(reports / "eval" / registered / "metrics.json"))
        parent.log_text(table + "\n", "comparison.md")
        decision = None
        if params.evaluate.register:
            decision = promotion(params_path, overrides, data_root, reports_root)
            parent.log_metrics({"promoted": float(decision["verdict"] == "promoted")})
            parent.set_tags({"mllm4d.promotion": decision["verdict"],
                             "mllm4d.challenger_version": str(decision["challenger_version"])})
            parent.log_text(decision["summary"] + "\n", "promotion.md")
        places = [
            f"curated data: `{Path(data_root) / 'curated'}` ({stats['records']})",
            (f"data gate report: `{reports / 'quality' / 'gate_report.json'}` "
             f"(Data Docs: `{reports / 'quality' / 'data_docs'}`)"),
            f"language-prior gate report: `{reports / 'quality' / 'prior_report.md'}`",
            f"checkpoints: {', '.join(f'{k} `{v}`' for k, v in checkpoints.items())}",
            f"comparison: `{reports / 'comparison.md'}`",
            f"MLflow parent run: {parent.url()}",
        ]
        promoted = (f"\n\n## Promotion\n\n{decision['summary']}" if decision else "")
        # Markdown: the table keeps its single newlines (doubling them breaks it into lines of raw pipes).
        markdown = ("## Pipeline\n\n" + table + promoted + "\n\n## Where things are\n\n"
                    + "\n".join(f"- {p}" for p in places) + "\n")
        create_markdown_artifact(key="pipeline-summary", markdown=markdown,
                                 description="the comparison table, the promotion decision, where the outputs are")
    return f"{table}\n" + (f"\n{decision['summary']}\n" if decision else "") + "\n" + "\n".join(places)
