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
The "grpo" table is not 4D-RGPT's: MLLM-4D's stage 3 (GRPO from the P4D checkpoint) and its variants
(Video-R1's temporal contrast, ST-R1's reverse thinking) against their start.

Seeds: a table run with ``SEED_KEYS`` set to N is one seed; ``pool_seeds`` pools several seeds' rows into
one paired difference per row, the records of every seed together, resampling a clip's records of all
seeds as one cluster (a clip hard for one seed is likely hard for the others).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components.config import MODALITIES
from components.curation.schema import STATIC_CATEGORIES
from components.evaluation.metrics import bootstrap_ci, is_dynamic_mc
from components.io import read_jsonl, write_json, write_text

NO_DISTILLATION = ["p4d.latent_weight=0"] + [f"p4d.explicit_weights.{m}=0" for m in MODALITIES]


def explicit(*kept: str) -> list[str]:
    """Overrides keeping only the ``kept`` modalities in L_ED."""
    return [f"p4d.explicit_weights.{m}={1 if m in kept else 0}" for m in MODALITIES]


@dataclass(frozen=True)
class Row:
    name: str
    # "base": the base model, zero-shot; "sft": the shared SFT checkpoint; "p4d": P4D from the shared SFT
    # checkpoint with ``overrides``; "chain": its own base -> SFT -> P4D with ``overrides`` (for params that
    # change what the model sees, such as the time cue); "grpo": GRPO with ``overrides`` from the P4D row
    # without overrides.
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
    "grpo": Table("grpo", "MLLM-4D stage 3: GRPO from its start (P4D)", [
        Row("start (P4D)", "p4d"),
        Row("GRPO, ST-reward", "grpo"),
        Row("+ temporal contrast (Video-R1)", "grpo", ["rewards.temporal_contrast=true"]),
        Row("+ reverse thinking (ST-R1)", "grpo", ["grpo.reverse_thinking=true", "rewards.consistency_weight=0.1"]),
    ], reference="start (P4D)", focus=()),
}

# What one seed of a table changes: the model's initialisation and every training stage's data order and
# sampling. The scenes, the curation and the frozen teacher are shared by all seeds (the paper's teacher is
# one pretrained model).
SEED_KEYS = ("model.seed", "sft.seed", "p4d.train.seed", "grpo.seed")


def seed_overrides(seed: int) -> list[str]:
    return [f"{key}={seed}" for key in SEED_KEYS]


def scores_by_id(predictions: list[dict], *, dynamic: bool | None = None, category: str | None = None,
                 static_categories: frozenset[str] = frozenset(), mc: bool | None = None) -> dict[str, float]:
    """Record id -> score for the records of a subset (all / static / dynamic / one category; ``mc``:
    only the multiple-choice records, or only the numeric ones)."""
    out = {}
    for p in predictions:
        if category is not None and p["category"] != category:
            continue
        if dynamic is not None and (p["category"] not in static_categories) != dynamic:
            continue
        if mc is not None and (p.get("answer_type", "mc") == "mc") != mc:
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
        failed = results[row.name].get("gate_passed") is False
        cells = [row.name + (" (training gate failed)" if failed else ""), _cell(m.get("overall")), _cell(m.get("static")), _cell(m.get("dynamic")),
                 *[_cell(m.get("per_category", {}).get(c)) for c in focus],
                 "ref" if row.name == table.reference else _diff_cell(diff.get("dynamic")),
                 *["ref" if row.name == table.reference else _diff_cell(diff.get(c)) for c in focus]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dynamic_mc_macro(predictions: list[dict]) -> float | None:
    """The headline metric from predictions: the mean over dynamic categories of their mc accuracy (the
    records ``metrics.is_dynamic_mc`` picks, as the evaluation's own ``dynamic_mc_macro``, without its interval)."""
    by_category: dict[str, list[float]] = {}
    for p in predictions:
        if is_dynamic_mc(p):
            by_category.setdefault(p["category"], []).append(float(p["score"]))
    return float(np.mean([np.mean(v) for v in by_category.values()])) if by_category else None


def pool_seeds(table: Table, seeds: dict[int, dict[str, list[dict]]], *,
               static_categories: frozenset[str] = frozenset(), n: int = 2000) -> dict[str, dict]:
    """Each row over several seeds: ``seeds`` is seed -> row name -> that row's predictions. Per row, the
    dynamic mc macro per seed and the paired difference to the reference row on the dynamic mc records
    (micro: every record weighs the same) and on each focus category, pooled over seeds (a record of seed s
    is ``s/id``; a clip's records of every seed are one cluster), with how many seeds' own differences point
    the pooled difference's way."""
    subsets = {"dynamic_mc": {"dynamic": True, "mc": True}, **{c: {"category": c} for c in table.focus}}
    out: dict[str, dict] = {}
    for row in table.rows:
        if any(row.name not in rows for rows in seeds.values()):
            continue
        result: dict = {"per_seed": {}, "diff": {}, "agreeing_seeds": {}, "tied_seeds": {}}
        for seed, rows in seeds.items():
            result["per_seed"][seed] = dynamic_mc_macro(rows[row.name])
        if row.name != table.reference:
            for subset, kw in subsets.items():
                a, b, clips, signs = {}, {}, {}, []
                for seed, rows in seeds.items():
                    mine = scores_by_id(rows[row.name], static_categories=static_categories, **kw)
                    ref = scores_by_id(rows[table.reference], static_categories=static_categories, **kw)
                    shared = sorted(set(mine) & set(ref))
                    signs.append(float(np.sign(np.mean([mine[i] - ref[i] for i in shared]))) if shared else 0.0)
                    clip_of = clips_by_id(rows[row.name])
                    for i in shared:
                        a[f"{seed}/{i}"], b[f"{seed}/{i}"], clips[f"{seed}/{i}"] = mine[i], ref[i], clip_of[i]
                diff = paired_difference(a, b, clips=clips, n=n)
                result["diff"][subset] = diff
                if diff is not None:
                    # A seed whose own difference is exactly zero neither agrees nor disagrees: counted apart,
                    # so a pooled +0.0 does not read "0 of 3" against seeds that changed nothing.
                    way = float(np.sign(diff["value"]))
                    result["agreeing_seeds"][subset] = int(sum(s == way for s in signs)) if way else 0
                    result["tied_seeds"][subset] = int(sum(s == 0 for s in signs))
        out[row.name] = result
    return out


def render_pooled(table: Table, pooled: dict[str, dict], seeds: list[int]) -> str:
    """Markdown of ``pool_seeds``: the dynamic mc macro per seed and their mean, then the pooled paired
    difference to the reference (* = its interval excludes 0) and in how many seeds it points that way."""
    focus = list(table.focus)
    head = ["row", *[f"dynamic mc macro, seed {s}" for s in seeds], "mean",
            f"Δ dynamic mc records vs {table.reference} (pooled)", "seeds that way", *[f"Δ {c} (pooled)" for c in focus]]
    lines = [f"### {table.title}: {len(seeds)} seeds", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        if row.name not in pooled:
            continue
        r = pooled[row.name]
        values = [r["per_seed"].get(s) for s in seeds]
        known = [v for v in values if v is not None]
        cells = [row.name, *[("-" if v is None else f"{100 * v:.1f}") for v in values],
                 f"{100 * np.mean(known):.1f}" if known else "-"]
        if row.name == table.reference:
            cells += ["ref", "", *["ref" for _ in focus]]
        else:
            d = r["diff"].get("dynamic_mc")
            cells += [_diff_cell(d), _seeds_cell(r, "dynamic_mc", len(seeds)) if d else "-",
                      *[_diff_cell(r["diff"].get(c)) for c in focus]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _seeds_cell(pooled_row: dict, subset: str, n: int) -> str:
    tied = pooled_row["tied_seeds"].get(subset, 0)
    return f"{pooled_row['agreeing_seeds'].get(subset, 0)} of {n}" + (f" ({tied} no change)" if tied else "")


def pool_reports(reports: Path | str, tables: list[str], seeds: list[int]) -> str:
    """Pool the per-seed tables the experiments flow wrote under ``reports/seed-N/`` (``tableK.json`` and
    each row's ``runs/<slug>/predictions.jsonl``) into ``reports/tables_pooled.{md,json}``."""
    reports = Path(reports)
    markdown, summary = [], {}
    for key in tables:
        per_seed = {}
        for seed in seeds:
            path = reports / f"seed-{seed}" / f"table{key}.json"
            if not path.exists():
                raise FileNotFoundError(f"{path}: seed {seed} has no table {key}; run `mllm4d experiments --seeds "
                                        f"{seed} --tables {key}` with the same --reports first")
            rows = json.loads(path.read_text())
            per_seed[seed] = {name: read_jsonl(reports / f"seed-{seed}" / "runs" / r["slug"] / "predictions.jsonl")
                              for name, r in rows.items()}
        pooled = pool_seeds(TABLES[key], per_seed, static_categories=frozenset(STATIC_CATEGORIES))
        markdown.append(render_pooled(TABLES[key], pooled, seeds))
        summary[key] = pooled
    text = "\n\n".join(markdown) + "\n"
    write_text(reports / "tables_pooled.md", text)
    write_json(reports / "tables_pooled.json", {"seeds": seeds, "tables": summary})
    return text
