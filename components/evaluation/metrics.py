"""Scores and their uncertainty: per-record correctness / MRA, then aggregates with bootstrap CIs.

A record's *score* is its correctness (0/1) for multiple choice and its mean relative accuracy for
numeric answers; Avg, Static, Dynamic and each category average the per-record scores over the
records they hold (micro averages: R4D-Bench's Avg is the question-weighted mean of Sta and Dyn).
Static means ``schema.STATIC_CATEGORIES`` plus the external benchmarks' static tasks that our own
data has no counterpart for (R4D-Bench / STI-Bench 3D video grounding, VSI-Bench's questions about a still
room); every other category is dynamic.

MRA follows VSI-Bench: the share of thresholds 0.50, 0.55, ..., 0.95 at which the relative error is
below ``1 - threshold``. Departures: relative errors are rounded to 9 decimals before the comparison so
that a prediction exactly on a boundary (40% off at 0.60) is not moved across it by float noise, and
a true value of 0, which has no relative scale, scores 1 only for an exact 0.

Every aggregate is ``{"value", "n", "ci": [lo, hi]}``: a 95% percentile bootstrap of the mean
(fixed seed, so a report is reproducible) that resamples *clips*, not records: the questions about one
clip share its frames and its objects, so they are correlated, and resampling them one by one would
pretend the bench holds more independent evidence than it does (a clip asked 20 questions would count
as 20 draws). A record's clip is its ``clip_id`` (external benchmarks: its ``video``; else its own id).
The random baseline is exact (an expectation), so its ``ci`` is ``None``.

``dynamic_mc_macro`` is the mean over the dynamic categories of the multiple-choice accuracy in each: the
number the learning headline (``controls.py``) is about, because a micro average lets the largest
categories and the numeric records decide it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from components.curation.schema import CATEGORIES, LETTERS, STATIC_CATEGORIES
from components.evaluation.answers import extract_answer, is_correct, mean_relative_accuracy

# External benchmarks' static tasks with no counterpart in schema.CATEGORIES.
# VSI-Bench's configurational and measurement types ask about a still room (VSI-Bench's own grouping); its
# spatiotemporal ones (route planning, appearance order) stay dynamic, as do all of VSTI-Bench's (camera motion).
EXTRA_STATIC_CATEGORIES = ("video_grounding", "object_rel_direction", "object_rel_distance", "object_abs_distance",
                           "object_counting", "object_size_estimation", "room_size_estimation")
STATIC = frozenset(STATIC_CATEGORIES) | frozenset(EXTRA_STATIC_CATEGORIES)
REQUIRED_FIELDS = ("id", "category", "answer_type", "options", "answer", "prompt_variant")
_BOOTSTRAP_CHUNK = 2_000_000  # resampled values held in memory at once


def _chance(record: dict) -> float:
    return 1.0 / len(record["options"]) if record["answer_type"] == "mc" else 0.0


def random_baseline(records: list[dict]) -> float:
    """Expected score of uniform guessing: mean of 1/len(options) (numeric records count 0)."""
    if not records:
        raise ValueError("random_baseline needs at least one record")
    return float(np.mean([_chance(r) for r in records]))


def clip_of(record: dict) -> str:
    """The unit the bootstrap resamples: the record's clip (or video); a record without either is its own."""
    return str(record.get("clip_id") or record.get("video") or record["id"])


def resampled_counts(n_clusters: int, n: int, seed: int) -> np.ndarray:
    """(n, n_clusters): how often each cluster is drawn in each of ``n`` bootstrap replicates (each draws
    ``n_clusters`` clusters with replacement). Sharing one such array between systems pairs them."""
    if n_clusters < 1 or n < 1:
        raise ValueError(f"need at least one cluster and one replicate (got {n_clusters}, {n})")
    rng = np.random.default_rng(seed)
    chunks, per_chunk = [], max(1, _BOOTSTRAP_CHUNK // n_clusters)
    for start in range(0, n, per_chunk):
        m = min(per_chunk, n - start)
        draws = rng.integers(0, n_clusters, size=(m, n_clusters)) + n_clusters * np.arange(m)[:, None]
        chunks.append(np.bincount(draws.ravel(), minlength=m * n_clusters).reshape(m, n_clusters))
    return np.concatenate(chunks).astype(float)


def cluster_table(values: np.ndarray, clusters: Sequence, columns: Sequence | None = None
                  ) -> tuple[np.ndarray, np.ndarray, list, list]:
    """Per (cluster, column) sums and record counts of ``values``: all a clip bootstrap of (per-column)
    means needs. ``columns`` (e.g. categories) default to one column. Returns (sums, sizes, cluster
    names, column names), sums and sizes shaped (clusters, columns)."""
    values = np.asarray(values, dtype=float)
    if len(clusters) != values.size or (columns is not None and len(columns) != values.size):
        raise ValueError("values, clusters and columns must have one entry per record")
    cluster_names, groups = np.unique(np.asarray([str(c) for c in clusters]), return_inverse=True)
    column_names, cols = (np.unique(np.asarray([str(c) for c in columns]), return_inverse=True)
                          if columns is not None else (np.array([""]), np.zeros(values.size, dtype=int)))
    shape = (len(cluster_names), len(column_names))
    sums, sizes = np.zeros(shape), np.zeros(shape)
    np.add.at(sums, (groups, cols), values)
    np.add.at(sizes, (groups, cols), 1.0)
    return sums, sizes, list(cluster_names), list(column_names)


def column_means(counts: np.ndarray, sums: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(replicates, columns) means under resampled cluster ``counts``; NaN where a replicate drew no
    record of a column."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ sums) / (counts @ sizes)


def macro(means: np.ndarray) -> np.ndarray:
    """Mean over the columns (last axis) that have records; a replicate without any column's records
    cannot happen (every replicate draws at least one cluster, every cluster holds a record)."""
    with np.errstate(invalid="ignore"):
        return np.nanmean(means, axis=-1)


def percentile_ci(replicates: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    lo, hi = np.quantile(np.asarray(replicates, dtype=float), [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def bootstrap_ci(
    values: np.ndarray, n: int = 1000, seed: int = 0, alpha: float = 0.05, clusters: Sequence | None = None
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``, resampling ``clusters`` (one label per
    value, e.g. the clip) whole; without clusters, every value is its own."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not 0.0 < alpha < 1.0 or n < 1:
        raise ValueError(f"need 0 < alpha < 1 and n >= 1 (got alpha={alpha}, n={n})")
    clusters = list(range(values.size)) if clusters is None else clusters
    sums, sizes, names, _ = cluster_table(values, clusters)
    means = column_means(resampled_counts(len(names), n, seed), sums, sizes)[:, 0]
    return percentile_ci(means, alpha)


def aggregate(values: Iterable[float], clusters: Sequence | None = None, *, n: int = 1000) -> dict | None:
    """``{"value", "n", "ci"}`` of the mean (interval resampling ``clusters``), or None for an empty group."""
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return None
    lo, hi = bootstrap_ci(arr, n=n, clusters=clusters)
    return {"value": float(arr.mean()), "n": int(arr.size), "ci": [lo, hi]}


def macro_aggregate(values: Sequence[float], clusters: Sequence, columns: Sequence, *, n: int = 1000,
                    seed: int = 0) -> dict | None:
    """The mean over ``columns`` (e.g. categories) of each column's mean, with a clip-level interval."""
    if not len(values):
        return None
    sums, sizes, names, _ = cluster_table(np.asarray(values, dtype=float), clusters, columns)
    value = float(macro(column_means(np.ones((1, len(names))), sums, sizes))[0])
    lo, hi = percentile_ci(macro(column_means(resampled_counts(len(names), n, seed), sums, sizes)))
    return {"value": value, "n": len(values), "ci": [lo, hi]}


def is_dynamic_mc(row: dict) -> bool:
    return row["answer_type"] == "mc" and row["category"] not in STATIC


def paired_clip_bootstrap(scores: dict[str, Sequence[float]], clusters: Sequence, columns: Sequence,
                          statistic: Callable[[dict[str, np.ndarray]], np.ndarray], *, n: int = 1000,
                          seed: int = 0) -> dict:
    """A statistic of several systems' column macros on the same records, with a *paired* clip-level
    interval: every replicate resamples the same clips for every system, so what the clips have in common
    (their difficulty) cancels in a difference. ``statistic`` maps {system: macro array} to an array."""
    tables = {name: cluster_table(np.asarray(v, dtype=float), clusters, columns) for name, v in scores.items()}
    n_clusters = len(next(iter(tables.values()))[2])
    counts = resampled_counts(n_clusters, n, seed)
    point = {k: macro(column_means(np.ones((1, n_clusters)), t[0], t[1])) for k, t in tables.items()}
    boot = {k: macro(column_means(counts, t[0], t[1])) for k, t in tables.items()}
    lo, hi = percentile_ci(statistic(boot))
    return {"value": float(statistic(point)[0]), "ci": [lo, hi],
            "point": {k: float(v[0]) for k, v in point.items()}}


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


def summarise(per: list[dict], *, n_boot: int = 1000) -> dict:
    """The aggregates of per-record rows (``score``'s ``per_record``, or a predictions.jsonl), with
    clip-level intervals (rows without ``clip_id`` are their own clip)."""
    def agg(rows: Iterable[dict], key: str = "score") -> dict | None:
        rows = list(rows)
        return aggregate((float(p[key]) for p in rows), [clip_of(p) for p in rows], n=n_boot)

    def format_valid(rows: list[dict]) -> dict | None:
        return aggregate((float(p["extracted"]["format_valid"]) for p in rows), [clip_of(p) for p in rows], n=n_boot)

    static, dynamic = category_order(p["category"] for p in per)
    variants = sorted({p["prompt_variant"] for p in per})
    dyn_mc = [p for p in per if is_dynamic_mc(p)]
    return {
        "n": len(per),
        "overall": agg(per),
        "static": agg(p for p in per if p["category"] in STATIC),
        "dynamic": agg(p for p in per if p["category"] not in STATIC),
        "dynamic_mc_macro": macro_aggregate([float(p["score"]) for p in dyn_mc], [clip_of(p) for p in dyn_mc],
                                            [p["category"] for p in dyn_mc], n=n_boot),
        "mc_accuracy": agg(p for p in per if p["answer_type"] == "mc"),
        "numeric_mra": agg(p for p in per if p["answer_type"] == "numeric"),
        "format_valid": format_valid(per),
        "per_category": {c: agg(p for p in per if p["category"] == c) for c in static + dynamic},
        "per_prompt_variant": {v: agg(p for p in per if p["prompt_variant"] == v) for v in variants},
    }


def score(records: list[dict], outputs: list[str], *, n_boot: int = 1000) -> dict:
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
                "clip_id": clip_of(record),
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
    return {**summarise(per, n_boot=n_boot), "per_record": per}


def _exact_macro(records: list[dict]) -> dict | None:
    if not records:
        return None
    by_category: dict[str, list[float]] = {}
    for r in records:
        by_category.setdefault(r["category"], []).append(_chance(r))
    return {"value": float(np.mean([np.mean(v) for v in by_category.values()])), "n": len(records), "ci": None}


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
        "dynamic_mc_macro": _exact_macro([r for r in records if is_dynamic_mc(r)]),
        "mc_accuracy": exact(mc),
        "numeric_mra": exact(numeric),
        "format_valid": None,
        "per_category": {c: exact([r for r in records if r["category"] == c]) for c in static + dynamic},
        "per_prompt_variant": {
            v: exact([r for r in records if r["prompt_variant"] == v])
            for v in sorted({r["prompt_variant"] for r in records})
        },
    }
