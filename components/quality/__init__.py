"""The data gate: Great Expectations checks on the curated QA records (see ``gate.py``)."""

from components.quality.gate import ExpectationResult, GateFailed, GateReport, run_data_gate
from components.quality.table import load_curated_table

__all__ = ["ExpectationResult", "GateFailed", "GateReport", "load_curated_table", "run_data_gate"]
