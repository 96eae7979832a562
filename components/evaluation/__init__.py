"""Benchmark readers, deterministic answer extraction, metrics with bootstrap CIs, the harness, reports.

Model-agnostic: generation is a callable the caller injects (``harness.GenerateFn``); nothing here
imports a model, a trainer or MLflow. ``checkpoint`` and ``benchmarks`` (external benchmarks end to end),
which load one, are imported by their module path only: exporting them here would put the model code in
the import closure of every stage that reads a metric (``tests/test_dvc_deps.py``).
"""

from components.evaluation.answers import ExtractedAnswer, extract_answer, is_correct, mean_relative_accuracy
from components.evaluation.harness import GenerateFn, evaluate
from components.evaluation.metrics import bootstrap_ci, random_baseline, score
from components.evaluation.readers import (
    read_ego_st,
    read_r4d_bench,
    read_sti_bench,
    read_vlm4d,
    read_vsi_bench,
    read_vsti_bench,
)
from components.evaluation.report import EvalResult, comparison_table, write_report

__all__ = [
    "EvalResult",
    "ExtractedAnswer",
    "GenerateFn",
    "bootstrap_ci",
    "comparison_table",
    "evaluate",
    "extract_answer",
    "is_correct",
    "mean_relative_accuracy",
    "random_baseline",
    "read_ego_st",
    "read_r4d_bench",
    "read_sti_bench",
    "read_vlm4d",
    "read_vsi_bench",
    "read_vsti_bench",
    "score",
    "write_report",
]
