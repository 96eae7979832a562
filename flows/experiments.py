"""The ``experiments`` flow: the seeds' ablation tables (4D-RGPT Tab. 4, 5, 6) as runs, one MLflow run each.

Shared work happens once (curation, base model, SFT, teacher, teacher targets); each row then trains
what it changes (``components.evaluation.ablation.TABLES``) and is evaluated on the same bench records,
so rows differ only by their overrides. Identical rows across tables run once. The tables, with 95%
intervals and paired differences to each table's reference row, go to ``reports/experiments/tables.md``
and to MLflow.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from components import stages
from components.config import Params, to_dict
from components.curation.schema import STATIC_CATEGORIES
from components.evaluation.ablation import (
    TABLES,
    Row,
    clips_by_id,
    paired_difference,
    render_table,
    scores_by_id,
)
from components.io import read_jsonl, write_json, write_text
from components.tracking import pipeline_run
from flows.common import params_from
from flows.curation import curation


def _slug(row: Row, params: Params, shared: Params) -> str:
    """Rows that would train the same thing share a slug (and so one run). A "chain" row whose model
    config equals the shared chain's is a plain P4D row (Tab. 6's TPE row is Tab. 4's P4D)."""
    if row.kind in ("base", "sft"):
        return row.kind
    kind = "p4d" if row.kind == "p4d" or params.model == shared.model else "chain"
    config = {"model": to_dict(params.model), "p4d": to_dict(params.p4d)}
    return f"{kind}-{hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]}"


@flow(name="experiments", log_prints=True)
def experiments(tables: list[str] | None = None, params_path: str = "params.yaml", overrides: list[str] | None = None,
                work_root: str = "experiments", reports_root: str = "reports/experiments") -> str:
    tables = tables or list(TABLES)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; valid: {sorted(TABLES)}")
    overrides = list(overrides or [])
    params, root = params_from(params_path, overrides)
    work, reports = Path(work_root), Path(reports_root)
    data, models = work / "data", work / "models"
    curated = data / "curated"
    with pipeline_run("experiments", params.tracking, root, params=to_dict(params)) as parent:
        curation(params_path, overrides, str(data), str(work / "reports"))
        base = stages.base_model(params, curated, models / "base", root=root)
        sft = stages.sft(params, curated, base, models / "sft", root=root).model_dir
        teacher = stages.teacher(params, curated, models / "teacher", root=root, metrics_file=reports / "teacher.json")
        targets = data / "teacher_targets"
        stages.teacher_targets(params, curated, teacher, targets, root=root)

        done: dict[str, dict] = {}
        markdown = []
        for key in tables:
            table = TABLES[key]
            results = {}
            for row in table.rows:
                row_params, _ = params_from(params_path, overrides + row.overrides)
                slug = _slug(row, row_params, params)
                if slug not in done:
                    model_dir = {"base": base, "sft": sft}.get(row.kind)
                    if model_dir is None:
                        start = sft
                        if slug.startswith("chain"):
                            row_base = stages.base_model(row_params, curated, models / slug / "base", root=root)
                            start = stages.sft(row_params, curated, row_base, models / slug / "sft", root=root).model_dir
                        model_dir = stages.p4d(row_params, curated, start, teacher, targets, models / slug / "p4d",
                                               root=root).model_dir
                    out = reports / "runs" / slug
                    metrics = stages.evaluate(row_params, curated, model_dir, out, name=f"exp-{slug}", root=root)
                    done[slug] = {"metrics": metrics["model"], "predictions": read_jsonl(out / "predictions.jsonl"),
                                  "model_dir": str(model_dir), "overrides": row.overrides}
                results[row.name] = {**done[slug], "slug": slug}
            _add_differences(table.reference, table.focus, results)
            markdown.append(render_table(table, results))
            write_json(reports / f"table{key}.json",
                       {name: {k: v for k, v in r.items() if k != "predictions"} for name, r in results.items()})
        text = "\n\n".join(markdown) + "\n"
        write_text(reports / "tables.md", text)
        parent.log_artifact(reports / "tables.md", "experiments")
        create_markdown_artifact(key="experiments-tables", markdown=text, description="4D-RGPT ablations in miniature")
    return text


def _add_differences(reference: str, focus: tuple[str, ...], results: dict[str, dict]) -> None:
    static = frozenset(STATIC_CATEGORIES)
    ref = results[reference]["predictions"]
    clips = clips_by_id(ref)  # every row answered the same bench records
    subsets = {"dynamic": {"dynamic": True}, **{c: {"category": c} for c in focus}}
    for r in results.values():
        r["diff"] = {s: paired_difference(scores_by_id(r["predictions"], static_categories=static, **kw),
                                          scores_by_id(ref, static_categories=static, **kw), clips=clips)
                     for s, kw in subsets.items()}
