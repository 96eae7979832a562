"""Scores and their uncertainty: per-record correctness / MRA, then aggregates with bootstrap CIs.

A record's *score* is its correctness (0/1) for multiple choice and its mean relative accuracy for
numeric answers; Avg, Static, Dynamic and each category average the per-record scores over the
records they hold (micro averages: R4D-Bench's Avg is the question-weighted mean of Sta and Dyn).
Static means ``schema.STATIC_CATEGORIES`` plus the external benchmarks' static tasks that our own
data has no counterpart for (R4D-Bench / STI-Bench 3D video grounding); every other category is dynamic.

MRA follows VSI-Bench: the share of thresholds 0.50, 0.55, ..., 0.95 at which the relative error is
below ``1 - threshold``. Departures: relative errors are rounded to 9 decimals before the comparison so
that a prediction exactly on a boundary (40% off at 0.60) is not moved across it by float noise, and
a true value of 0, which has no relative scale, scores 1 only for an exact 0.

Every aggregate is ``{"value", "n", "ci": [lo, hi]}``: a 95% percentile bootstrap of the mean
(fixed seed, so a report is reproducible). The random baseline is exact (an expectation), so its
``ci`` is ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from components.curation.schema import CATEGORIES, LETTERS, STATIC_CATEGORIES
from components.evaluation.answers import extract_answer, is_correct

MRA_THRESHOLDS = tuple(round(0.50 + 0.05 * i, 2) for i in range(10))
# External benchmarks' static tasks with no counterpart in schema.CATEGORIES.
EXTRA_STATIC_CATEGORIES = ("video_grounding",)
STATIC = frozenset(STATIC_CATEGORIES) | frozenset(EXTRA_STATIC_CATEGORIES)
REQUIRED_FIELDS = ("id", "category", "answer_type", "options", "answer", "prompt_variant")
_BOOTSTRAP_CHUNK = 2_000_000  # resampled values held in memory at once


def mean_relative_accuracy(pred: float | None, truth: float) -> float:
    if pred is None or not math.isfinite(pred):
        return 0.0
    if truth == 0:
        return 1.0 if pred == 0 else 0.0
    rel = round(abs(pred - truth) / abs(truth), 9)
    return sum(rel < round(1.0 - t, 9) for t in MRA_THRESHOLDS) / len(MRA_THRESHOLDS)


def _chance(record: dict) -> float:
    return 1.0 / len(record["options"]) if record["answer_type"] == "mc" else 0.0


def random_baseline(records: list[dict]) -> float:
    """Expected score of uniform guessing: mean of 1/len(options) (numeric records count 0)."""
    if not records:
        raise ValueError("random_baseline needs at least one record")
    return float(np.mean([_chance(r) for r in records]))


def bootstrap_ci(
    values: np.ndarray, n: int = 1000, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0.0 < alpha < 1.0 or n < 1:
        raise ValueError(f"need 0 < alpha < 1 and n >= 1 (got alpha={alpha}, n={n})")
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _BOOTSTRAP_CHUNK // values.size)
    means = np.concatenate(
        [
            values[rng.integers(0, values.size, size=(min(per_chunk, n - start), values.size))].mean(axis=1)
            for start in range(0, n, per_chunk)
        ]
    )
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def aggregate(values: Iterable[float]) -> dict | None:
    """``{"value", "n", "ci"}`` of the mean, or None for an empty group."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return None
    lo, hi = bootstrap_ci(arr)
    return {"value": float(arr.mean()), "n": int(arr.size), "ci": [lo, hi]}


def category_order(categories: Iterable[str]) -> tuple[list[str], list[str]]:
    """(static, dynamic) categories: the schema's order first, then the others alphabetically."""
    known = {c: i for i, c in enumerate(CATEGORIES + EXTRA_STATIC_CATEGORIES)}
    ordered = sorted(set(categories), key=lambda c: (c not in known, known.get(c, 0), c))
    return [c for c in ordered if c in STATIC], [c for c in ordered if c not in STATIC]


def check_records(records: list[dict]) -> None:
    """Fail before any generation when a record cannot be scored; the error names the records."""
    problems = []
    for r in records:
        missing = [k for k in REQUIRED_FIELDS if k not in r]
        if missing:
            problems.append(f"{r.get('id', '?')}: missing {', '.join(missing)}")
        elif r["answer_type"] not in ("mc", "numeric"):
            problems.append(f"{r['id']}: answer_type {r['answer_type']!r} is not 'mc' or 'numeric'")
        elif r["answer_type"] == "mc" and not 1 <= len(r["options"]) <= len(LETTERS):
            problems.append(f"{r['id']}: {len(r['options'])} options (need 1-{len(LETTERS)})")
    if problems:
        raise ValueError(f"{len(problems)} record(s) cannot be scored, e.g. " + "; ".join(problems[:5]))


def _summarise(per: list[dict]) -> dict:
    def agg(rows: Iterable[dict], key: str = "score") -> dict | None:
        return aggregate(float(p[key]) for p in rows)

    static, dynamic = category_order(p["category"] for p in per)
    variants = sorted({p["prompt_variant"] for p in per})
    return {
        "n": len(per),
        "overall": agg(per),
        "static": agg(p for p in per if p["category"] in STATIC),
        "dynamic": agg(p for p in per if p["category"] not in STATIC),
        "mc_accuracy": agg(p for p in per if p["answer_type"] == "mc"),
        "numeric_mra": agg(p for p in per if p["answer_type"] == "numeric"),
        "format_valid": agg((p["extracted"] for p in per), "format_valid"),
        "per_category": {c: agg(p for p in per if p["category"] == c) for c in static + dynamic},
        "per_prompt_variant": {v: agg(p for p in per if p["prompt_variant"] == v) for v in variants},
    }


def score(records: list[dict], outputs: list[str]) -> dict:
    """Score completions against records: the aggregates plus ``per_record`` (one dict per record)."""
    if len(records) != len(outputs):
        raise ValueError(f"{len(records)} records but {len(outputs)} outputs")
    check_records(records)
    per = []
    for record, output in zip(records, outputs):
        extracted = extract_answer(output, record)
        numeric = record["answer_type"] == "numeric"
        mra = mean_relative_accuracy(extracted.value, float(record["answer"])) if numeric else None
        correct = is_correct(extracted, record)
        per.append(
            {
                "id": record["id"],
                "category": record["category"],
                "prompt_variant": record["prompt_variant"],
                "answer_type": record["answer_type"],
                "answer": record["answer"],
                "output": output,
                "extracted": extracted.as_dict(),
                "correct": correct,
                "mra": mra,
                "score": mra if numeric else float(correct),
            }
        )
    return {**_summarise(per), "per_record": per}


def random_metrics(records: list[dict]) -> dict:
    """The random-guessing row, in the same shape as ``score``'s aggregates (exact, so no CIs)."""
    check_records(records)

    def exact(rows: list[dict]) -> dict | None:
        return {"value": random_baseline(rows), "n": len(rows), "ci": None} if rows else None

    static, dynamic = category_order(r["category"] for r in records)
    mc = [r for r in records if r["answer_type"] == "mc"]
    numeric = [r for r in records if r["answer_type"] == "numeric"]
    return {
        "n": len(records),
        "overall": exact(records),
        "static": exact([r for r in records if r["category"] in STATIC]),
        "dynamic": exact([r for r in records if r["category"] not in STATIC]),
        "mc_accuracy": exact(mc),
        "numeric_mra": exact(numeric),
        "format_valid": None,
        "per_category": {c: exact([r for r in records if r["category"] == c]) for c in static + dynamic},
        "per_prompt_variant": {
            v: exact([r for r in records if r["prompt_variant"] == v])
            for v in sorted({r["prompt_variant"] for r in records})
        },
    }
