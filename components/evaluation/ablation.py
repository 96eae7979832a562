"""The seeds' ablation tables in miniature: which runs make each row, and how rows are compared.

4D-RGPT Tab. 4 (strategies), Tab. 5 (P4D modalities) and Tab. 6 (time cues) become rows of runs on the
embedded bench; every row is a set of ``section.key=value`` overrides (the same syntax as ``-S``), so a
row is a config and nothing else. A row's difference to its table's reference row is a *paired*
bootstrap over the bench records both answered (same records, so record difficulty cancels), resampling
whole clips (a clip's records are correlated), with its 95% interval: an interval that contains 0 says
the difference is not shown by this bench.

Departures: Tab. 4's "4D-Concat" and "4D-PE" need the teacher at inference and are not built; instead
the table has "SFT, continued", the SFT checkpoint trained for P4D's extra steps with every distillation
weight at 0, so P4D is compared with the same amount of SFT training and only the distillation differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from components.config import MODALITIES
from components.evaluation.metrics import bootstrap_ci

NO_DISTILLATION = ["p4d.latent_weight=0"] + [f"p4d.explicit_weights.{m}=0" for m in MODALITIES]


def explicit(*kept: str) -> list[str]:
    """Overrides keeping only the ``kept`` modalities in L_ED."""
    return [f"p4d.explicit_weights.{m}={1 if m in kept else 0}" for m in MODALITIES]


@dataclass(frozen=True)
class Row:
    name: str
    # "base": the base model, zero-shot; "sft": the shared SFT checkpoint; "p4d": P4D from the shared SFT
    # checkpoint with ``overrides``; "chain": its own base -> SFT -> P4D with ``overrides`` (for params that
    # change what the model sees, such as the time cue).
    kind: str
    overrides: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    rows: list[Row]
    reference: str  # the row the others are compared with
    focus: tuple[str, ...]  # the categories (besides Avg / Static / Dynamic) the table reports


TABLES: dict[str, Table] = {
    "4": Table("4", "4D-RGPT Tab. 4: strategies for 4D VQA", [
        Row("Zero-shot", "base"),
        Row("SFT", "sft"),
        Row("SFT, continued", "p4d", NO_DISTILLATION),
        Row("P4D (LD+ED)", "p4d"),
    ], reference="SFT, continued", focus=()),
    "5": Table("5", "4D-RGPT Tab. 5: modalities of P4D", [
        Row("SFT, continued", "p4d", NO_DISTILLATION),
        Row("LD only", "p4d", ["p4d.latent_weight=1", *explicit()]),
        Row("LD+D", "p4d", ["p4d.latent_weight=1", *explicit("depth")]),
        Row("LD+D+F", "p4d", ["p4d.latent_weight=1", *explicit("depth", "flow")]),
        Row("LD+D+F+M", "p4d", ["p4d.latent_weight=1", *explicit("depth", "flow", "motion")]),
        Row("ED only", "p4d", ["p4d.latent_weight=0", *explicit(*MODALITIES)]),
        Row("LD+ED", "p4d", ["p4d.latent_weight=1", *explicit(*MODALITIES)]),
    ], reference="SFT, continued", focus=()),
    "6": Table("6", "4D-RGPT Tab. 6: time cues (P4D + cue)", [
        Row("no time cue", "chain", ["model.time_cue=none"]),
        Row("marks", "chain", ["model.time_cue=marks"]),
        Row("prompt", "chain", ["model.time_cue=prompt"]),
        Row("TPE", "chain", ["model.time_cue=tpe"]),
    ], reference="no time cue", focus=("speed_acceleration",)),
}


def scores_by_id(predictions: list[dict], *, dynamic: bool | None = None, category: str | None = None,
                 static_categories: frozenset[str] = frozenset()) -> dict[str, float]:
    """Record id -> score for the records of a subset (all / static / dynamic / one category)."""
    out = {}
    for p in predictions:
        if category is not None and p["category"] != category:
            continue
        if dynamic is not None and (p["category"] not in static_categories) != dynamic:
            continue
        out[p["id"]] = float(p["score"])
    return out


def clips_by_id(predictions: list[dict]) -> dict[str, str]:
    """Record id -> clip (predictions written before clip ids were kept: each record its own clip)."""
    return {p["id"]: str(p.get("clip_id") or p["id"]) for p in predictions}


def paired_difference(a: dict[str, float], b: dict[str, float], *, clips: dict[str, str] | None = None,
                      n: int = 2000, seed: int = 0) -> dict | None:
    """Mean of ``a - b`` over the records both scored, with a 95% percentile bootstrap interval that
    resamples ``clips`` (record id -> clip) whole; without them, records one by one."""
    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    diff = np.array([a[i] - b[i] for i in ids])
    lo, hi = bootstrap_ci(diff, n=n, seed=seed, clusters=[clips.get(i, i) for i in ids] if clips else None)
    return {"value": float(diff.mean()), "ci": [lo, hi], "n": len(ids), "shown": bool(lo > 0 or hi < 0)}


def _cell(agg: dict | None) -> str:
    if not agg:
        return "-"
    lo, hi = agg["ci"] if agg.get("ci") else (None, None)
    return f"{100 * agg['value']:.1f}" + (f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else "")


def _diff_cell(d: dict | None) -> str:
    if not d:
        return "-"
    lo, hi = d["ci"]
    return f"{100 * d['value']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]" + (" *" if d["shown"] else "")


def render_table(table: Table, results: dict[str, dict]) -> str:
    """Markdown: per row Avg / Static / Dynamic / focus categories (95% CIs), then the paired difference to
    the reference row on Dynamic and on each focus category (* = the interval excludes 0).

    ``results``: row name -> ``{"metrics": metrics.json's "model" block, "diff": {subset: paired_difference}}``.
    """
    focus = list(table.focus)
    head = ["row", "Avg", "Static", "Dynamic", *focus, f"Δ Dynamic vs {table.reference}",
            *[f"Δ {c} vs {table.reference}" for c in focus]]
    lines = [f"### {table.title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        if row.name not in results:
            continue
        m, diff = results[row.name]["metrics"], results[row.name].get("diff", {})
        cells = [row.name, _cell(m.get("overall")), _cell(m.get("static")), _cell(m.get("dynamic")),
                 *[_cell(m.get("per_category", {}).get(c)) for c in focus],
                 "ref" if row.name == table.reference else _diff_cell(diff.get("dynamic")),
                 *["ref" if row.name == table.reference else _diff_cell(diff.get(c)) for c in focus]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
