"""The ``experiments`` flow: the seeds' ablation tables (4D-RGPT Tab. 4, 5, 6) as runs, one MLflow run each.

Shared work happens once (curation, base model, SFT, teacher, teacher targets); each row then trains
what it changes (``components.evaluation.ablation.TABLES``) and is evaluated on the same bench records,
so rows differ only by their overrides. Identical rows across tables run once. The tables, with 95%
intervals and paired differences to each table's reference row, go to ``reports/experiments/tables.md``
and to MLflow. With ``seeds``, each seed's tables go to ``seed-N/`` and, pooled over the seeds (paired by
record, a clip's records of all seeds one cluster), to ``tables_pooled.md``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from components import stages
from components.config import Params, to_dict
from components.curation.schema import STATIC_CATEGORIES
from components.evaluation.ablation import (
    TABLES,
    Row,
    Table,
    clips_by_id,
    paired_difference,
    pool_reports,
    render_table,
    scores_by_id,
    seed_overrides,
)
from components.io import read_jsonl, write_json, write_text
from components.tracking import pipeline_run
from components.training.gate import TrainingGateFailed
from flows.common import params_from
from flows.curation import curation


def _slug(row: Row, params: Params, shared: Params) -> str:
    """Rows that would train the same thing share a slug (and so one run). A "chain" row whose model
    config equals the shared chain's is a plain P4D row (Tab. 6's TPE row is Tab. 4's P4D)."""
    if row.kind in ("base", "sft"):
        return row.kind
    if row.kind == "grpo":
        config = {k: to_dict(getattr(params, k)) for k in ("model", "p4d", "grpo", "rewards")}
        return f"grpo-{hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]}"
    kind = "p4d" if row.kind == "p4d" or params.model == shared.model else "chain"
    config = {"model": to_dict(params.model), "p4d": to_dict(params.p4d)}
    return f"{kind}-{hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]}"


@flow(name="experiments", log_prints=True)
def experiments(tables: list[str] | None = None, params_path: str = "params.yaml", overrides: list[str] | None = None,
                work_root: str = "experiments", reports_root: str = "reports/experiments",
                seeds: list[int] | None = None, rows: list[str] | None = None) -> str:
    """The tables once with the params as they are (``seeds`` None), or once per seed (``SEED_KEYS`` set to
    it; models and reports under ``seed-N/``) and, for several seeds, pooled (``tables_pooled.md``).
    ``rows``: only these rows of the tables (each table's reference row always runs: the differences need it)."""
    tables = tables or list(TABLES)
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ValueError(f"unknown tables {unknown}; valid: {sorted(TABLES)}")
    names = {row.name for key in tables for row in TABLES[key].rows}
    unknown = sorted(set(rows or ()) - names)
    if unknown:
        raise ValueError(f"unknown rows {unknown} of tables {tables}; valid: {sorted(names)}")
    overrides = list(overrides or [])
    params, root = params_from(params_path, overrides)
    work, reports = Path(work_root), Path(reports_root)
    data = work / "data"
    curated = data / "curated"
    with pipeline_run("experiments", params.tracking, root, params=to_dict(params)) as parent:
        # Shared by every seed: the data and the frozen teacher (SEED_KEYS leave them alone).
        curation(params_path, overrides, str(data), str(work / "reports"))
        teacher = stages.teacher(params, curated, work / "models" / "teacher", root=root,
                                 metrics_file=reports / "teacher.json")
        targets = data / "teacher_targets"
        stages.teacher_targets(params, curated, teacher, targets, root=root)
        shared = _Shared(params_path, curated, teacher, targets, root)
        if seeds is None:
            text = _one_seed(shared, tables, overrides, work / "models", reports, rows=rows)
            parent.log_artifact(reports / "tables.md", "experiments")
        else:
            texts = [_one_seed(shared, tables, overrides + seed_overrides(s), work / f"seed-{s}" / "models",
                               reports / f"seed-{s}", title=f"seed {s}", rows=rows) for s in seeds]
            for s in seeds:
                parent.log_artifact(reports / f"seed-{s}" / "tables.md", f"experiments/seed-{s}")
            text = "\n\n".join(texts)
            if len(seeds) > 1:  # one seed at a time (processes side by side): `mllm4d experiments-pool` pools them
                text = pool_reports(reports, tables, seeds) + "\n\n" + text
                parent.log_artifact(reports / "tables_pooled.md", "experiments")
        create_markdown_artifact(key="experiments-tables", markdown=text, description="4D-RGPT ablations in miniature")
    return text


@dataclass(frozen=True)
class _Shared:
    params_path: str
    curated: Path
    teacher: Path
    targets: Path
    root: Path


def _one_seed(shared: _Shared, tables: list[str], overrides: list[str], models: Path, reports: Path,
              title: str = "", rows: list[str] | None = None) -> str:
    """Every row of ``tables`` (or of ``rows`` and the references) under ``overrides``: shared work once (base,
    SFT), then each row's training (rows that would train the same thing run once) and its evaluation."""
    params, root, curated = params_from(shared.params_path, overrides)[0], shared.root, shared.curated
    base = stages.base_model(params, curated, models / "base", root=root)
    sft = stages.sft(params, curated, base, models / "sft", root=root).model_dir
    trained: dict[str, tuple[Path, bool]] = {"base": (base, True), "sft": (sft, True)}
    done: dict[str, dict] = {}

    def model_of(row: Row, row_params: Params, slug: str) -> tuple[Path, bool]:
        """The row's checkpoint, trained if not yet; and whether its training gate passed."""
        if slug in trained:
            return trained[slug]
        out, passed = models / slug, True
        if row.kind == "grpo":
            start_row = Row("start", "p4d")  # P4D with this seed's params as they are
            start, _ = model_of(start_row, params, _slug(start_row, params, params))
            try:
                model_dir = stages.grpo(row_params, curated, start, out / "grpo", root=root).model_dir
            except TrainingGateFailed as exc:  # a collapsed GRPO run is a result of the table, not an abort
                print(f"{slug}: {exc}")
                model_dir, passed = out / "grpo" / "model", False
        else:
            start = sft
            if slug.startswith("chain"):
                row_base = stages.base_model(row_params, curated, out / "base", root=root)
                start = stages.sft(row_params, curated, row_base, out / "sft", root=root).model_dir
            model_dir = stages.p4d(row_params, curated, start, shared.teacher, shared.targets, out / "p4d",
                                   root=root).model_dir
        trained[slug] = (model_dir, passed)
        return trained[slug]

    markdown = []
    for key in tables:
        table = TABLES[key]
        results = {}
        for row in selected_rows(table, rows):
            row_params, _ = params_from(shared.params_path, overrides + row.overrides)
            slug = _slug(row, row_params, params)
            if slug not in done:
                model_dir, passed = model_of(row, row_params, slug)
                out = reports / "runs" / slug
                metrics = stages.evaluate(row_params, curated, model_dir, out, name=f"exp-{slug}", root=root)
                done[slug] = {"metrics": metrics["model"], "predictions": read_jsonl(out / "predictions.jsonl"),
                              "model_dir": str(model_dir), "overrides": row.overrides, "gate_passed": passed}
            results[row.name] = {**done[slug], "slug": slug}
        _add_differences(table.reference, table.focus, results)
        markdown.append(render_table(table, results))
        write_json(reports / f"table{key}.json",
                   {name: {k: v for k, v in r.items() if k != "predictions"} for name, r in results.items()})
    text = (f"## {title}\n\n" if title else "") + "\n\n".join(markdown) + "\n"
    write_text(reports / "tables.md", text)
    return text


def selected_rows(table: Table, rows: list[str] | None) -> list[Row]:
    """The table's rows named in ``rows`` (all without), and always its reference row."""
    return [row for row in table.rows if not rows or row.name in rows or row.name == table.reference]


def _add_differences(reference: str, focus: tuple[str, ...], results: dict[str, dict]) -> None:
    static = frozenset(STATIC_CATEGORIES)
    ref = results[reference]["predictions"]
    clips = clips_by_id(ref)  # every row answered the same bench records
    subsets = {"dynamic": {"dynamic": True}, **{c: {"category": c} for c in focus}}
    for r in results.values():
        r["diff"] = {s: paired_difference(scores_by_id(r["predictions"], static_categories=static, **kw),
                                          scores_by_id(ref, static_categories=static, **kw), clips=clips)
                     for s, kw in subsets.items()}
