"""The data gate: a Great Expectations suite over the curated QA records, run after curation.

Three tables are validated, each with its own suite in one ephemeral GX context: the records (one row per
record, with the derived columns of ``table.py``), the per-split summary (records per split) and the
letter balance (one row per split and option letter). The expectations themselves are declared in
``suite.py``, each under a stable ``gate`` name that the report, the failure message and the tests use.

The verdict comes from the data; Data Docs only explain it. A failure to render them is logged and the
report says ``data_docs: null``, but never turns a failed gate into a passed one or vice versa.

GX is imported on first use (~4 s, once per process); a fresh ephemeral context per run then costs
milliseconds and keeps runs independent (no shared GX state between gates or tests).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from components.config import QualityConfig
from components.curation.schema import CATEGORIES
from components.io import write_json
from components.quality.suite import checks, import_gx, to_expectation
from components.quality.table import (
    answer_balance_table,
    gx_records_table,
    letter_balance_table,
    load_curated_table,
    split_summary_table,
)

logger = logging.getLogger(__name__)

_SITE = "data_gate_site"


@dataclass
class ExpectationResult:
    """One expectation's outcome. ``name`` is its stable gate name (``suite.py``); ``examples`` are up to
    ``max_examples`` record ids (``file:line`` where a record has no usable id), ``"split (n records)"``
    for ``min_records_per_split``, ``"split/letter (share ...)"`` for ``letter_balance`` and the missing
    categories for ``required_categories``."""

    name: str
    column: str | None
    success: bool
    unexpected_count: int
    examples: list
    description: str


@dataclass
class GateReport:
    """The gate's verdict and every expectation's outcome, as saved in ``report_json``."""

    success: bool
    results: list[ExpectationResult]
    n_records: int
    report_json: Path
    data_docs: Path | None

    @property
    def failed(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success]

    def result(self, name: str) -> ExpectationResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"no expectation named {name!r}; known: {', '.join(r.name for r in self.results)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "n_records": self.n_records,
            "n_expectations": len(self.results),
            "failed": [r.name for r in self.failed],
            "error": None,  # set only in the report of a gate that did not finish (``_unfinished_report``)
            "report_json": str(self.report_json),
            "data_docs": str(self.data_docs) if self.data_docs else None,
            "results": [dataclasses.asdict(r) for r in self.results],
        }

    def summary(self) -> str:
        head = (
            f"data gate {'passed' if self.success else 'FAILED'}: {len(self.failed)} of {len(self.results)} "
            f"expectations failed on {self.n_records} records (report: {self.report_json})"
        )
        lines = [head] + [
            f"  - {r.name}{f' [{r.column}]' if r.column else ''}: {r.unexpected_count} unexpected, "
            f"e.g. {r.examples} ({r.description})"
            for r in self.failed
        ]
        return "\n".join(lines)


class GateFailed(RuntimeError):
    """The curated data broke at least one expectation; ``.report`` holds the full :class:`GateReport`."""

    def __init__(self, report: GateReport) -> None:
        super().__init__(report.summary())
        self.report = report


def _to_result(r: Any, max_examples: int) -> ExpectationResult:
    config, result = r.expectation_config, dict(r.result or {})
    column = (
        config.kwargs.get("column")
        or ",".join(str(config.kwargs[k]) for k in ("column_A", "column_B") if k in config.kwargs)
        or None
    )
    if r.exception_info and r.exception_info.get("raised_exception"):
        count, examples = 0, [str(r.exception_info.get("exception_message"))]
    elif "partial_missing_list" in result:  # a set expectation: what is missing from the set
        count, examples = (
            int(result.get("missing_count") or 0),
            sorted(map(str, result["partial_missing_list"])),
        )
    else:
        count = int(result.get("unexpected_count") or 0)
        examples = [row.get("example") for row in result.get("partial_unexpected_index_list") or []]
    return ExpectationResult(
        name=config.meta["gate"],
        column=column,
        success=bool(r.success),
        unexpected_count=count,
        examples=examples[:max_examples],
        description=config.description or "",
    )


def _build_docs(context: Any, report_dir: Path) -> Path | None:
    """Render Data Docs into a temp folder beside the final one, then swap it in whole."""
    final = report_dir / "data_docs"
    tmp = Path(tempfile.mkdtemp(prefix=".data_docs.", dir=report_dir))
    try:
        context.add_data_docs_site(
            _SITE,
            {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(tmp.resolve())},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        context.build_data_docs(site_names=[_SITE])
        tmp.chmod(0o755)  # mkdtemp makes it owner-only; the docs are meant to be read
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        return final / "index.html"
    except Exception:  # docs explain the verdict; they must not decide it
        logger.warning("building Data Docs failed; the gate report stands without them", exc_info=True)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _validate(
    tables: dict[str, pd.DataFrame], cfg: QualityConfig, report_dir: Path
) -> tuple[list, Path | None]:
    gx = import_gx()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("curated")
    run_id = RunIdentifier(run_name="data_gate", run_time=datetime.datetime.now(datetime.UTC))
    result_format = {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": ["example"],
        "partial_unexpected_count": cfg.max_examples,
    }
    results = []
    for name, table_checks in checks(cfg).items():
        expectations = [to_expectation(c) for c in table_checks]
        suite = context.suites.add(gx.ExpectationSuite(name=f"data_gate_{name}", expectations=expectations))
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all")
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=f"data_gate_{name}", data=batch, suite=suite)
        )
        validation = definition.run(
            batch_parameters={"dataframe": tables[name]}, result_format=result_format, run_id=run_id
        )
        order = {c.gate: i for i, c in enumerate(table_checks)}  # GX returns them in its own order
        results += sorted(validation.results, key=lambda r: order[r.expectation_config.meta["gate"]])
    return results, _build_docs(context, report_dir)


def _unfinished_report(report_json: Path, error: str) -> dict[str, Any]:
    """The report of a gate that did not reach a verdict: failing, with why, and no results."""
    return {
        "success": False,
        "n_records": 0,
        "n_expectations": 0,
        "failed": [],
        "error": error,
        "report_json": str(report_json),
        "data_docs": None,
        "results": [],
    }


def run_data_gate(
    curated_dir: Path, cfg: QualityConfig, report_dir: Path, *, raise_on_failure: bool = True
) -> GateReport:
    """Validate ``curated_dir``; write ``report_dir/gate_report.json`` and ``report_dir/data_docs/``.

    Raises :class:`GateFailed` (after writing the report) when any expectation fails, unless
    ``raise_on_failure`` is False; ``ValueError`` for an unreadable curated directory or a bad config.
    A gate that stops before its verdict (that error, a crash, a kill) leaves a failing report with
    ``error`` set: the previous run's passing report must not vouch for data this run never checked.
    """
    report_dir = Path(report_dir)
    report_json = report_dir / "gate_report.json"
    # Replaced atomically first, before anything can fail: a kill at any later point leaves this.
    write_json(report_json, _unfinished_report(report_json, "the data gate did not finish (killed or crashed)"))
    shutil.rmtree(report_dir / "data_docs", ignore_errors=True)  # they explained the previous verdict
    try:
        return _run(Path(curated_dir), cfg, report_dir, report_json, raise_on_failure)
    except GateFailed:
        raise
    except Exception as exc:
        write_json(report_json, _unfinished_report(report_json, f"{type(exc).__name__}: {exc}"))
        raise


def _run(
    curated_dir: Path, cfg: QualityConfig, report_dir: Path, report_json: Path, raise_on_failure: bool
) -> GateReport:
    unknown = sorted(set(cfg.required_categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"quality.required_categories has unknown {unknown}; valid: {', '.join(CATEGORIES)}")
    table = load_curated_table(curated_dir)
    tables = {
        "records": gx_records_table(table),
        "split_summary": split_summary_table(table),
        "letter_balance": letter_balance_table(table),
        "answer_balance": answer_balance_table(table),
    }
    gx_results, docs = _validate(tables, cfg, report_dir)
    results = [_to_result(r, cfg.max_examples) for r in gx_results]
    report = GateReport(
        success=all(r.success for r in results),
        results=results,
        n_records=len(table),
        report_json=report_json,
        data_docs=docs,
    )
    write_json(report.report_json, report.to_dict())
    (logger.info if report.success else logger.warning)("%s", report.summary())
    if not report.success and raise_on_failure:
        raise GateFailed(report)
    return report
