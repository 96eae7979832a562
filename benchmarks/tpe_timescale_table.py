"""The tables of benchmarks/results/tpe_timescale_default.md from the runs of benchmarks/tpe_timescale.sh under
/tmp/tpe (run from the repo root): each run against its seed's SFT without a time cue (seed 0: `make run`'s), then
each setting run on several seeds pooled by record (``pool_seeds``: a clip's records of every seed one cluster)."""

import re
from collections import defaultdict
from pathlib import Path

from components.curation.schema import STATIC_CATEGORIES
from components.evaluation.ablation import (
    Row,
    Table,
    clips_by_id,
    dynamic_mc_macro,
    paired_difference,
    pool_seeds,
    scores_by_id,
)
from components.io import read_jsonl

ST = frozenset(STATIC_CATEGORIES)
CATS = ["ego_motion", "false_positive", "object_camera_distance", "rotational", "speed_acceleration", "translational"]
SUBSETS = {"dynamic mc records": {"dynamic": True, "mc": True}, "speed_acceleration (all)": {"category": "speed_acceleration"}}


def _setting(name: str) -> tuple[str, int]:
    """none_seed1 -> ("none", 1); T100 -> ("TPE, T=100", 0); T100_s0.3_seed2 -> ("TPE, T=100, x0.3", 2)."""
    m = re.fullmatch(r"(none|T(\d+)(?:_s([\d.]+))?)(?:_seed(\d+))?", name)
    if not m:
        raise ValueError(f"/tmp/tpe/{name}: not a run of benchmarks/tpe_timescale.sh")
    label = "none" if m[1] == "none" else f"TPE, T={m[2]}" + (f", x{m[3]}" if m[3] else "")
    return label, int(m[4] or 0)


runs = {("none", 0): read_jsonl(Path("reports/eval/sft/predictions.jsonl"))}  # make run's SFT
for path in sorted(Path("/tmp/tpe").glob("*/eval/predictions.jsonl")):
    runs[_setting(path.parents[1].name)] = read_jsonl(path)
clips = clips_by_id(runs[("none", 0)])


def mc_per_category(rows: list[dict]) -> list[str]:
    acc = defaultdict(list)
    for p in rows:
        if p["answer_type"] == "mc" and p["category"] not in ST:
            acc[p["category"]].append(p["score"])
    return [f"{100 * sum(acc[c]) / len(acc[c]):.1f}" for c in CATS]


def cell(d: dict) -> str:
    return f"{100 * d['value']:+.1f} [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"


print("| SFT, time cue | seed | dynamic mc macro | " + " | ".join(CATS) + " (mc) | "
      + " | ".join(f"Δ {s} vs none" for s in SUBSETS) + " |")
print("|" + "---|" * (len(CATS) + 5))
for (label, seed), rows in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0] != "none", kv[0][0])):
    ref = runs.get(("none", seed))
    cells = [f"{100 * dynamic_mc_macro(rows):.1f}", *mc_per_category(rows)]
    for kw in SUBSETS.values():
        if label == "none" or ref is None:
            cells.append("ref" if label == "none" else "-")
        else:
            cells.append(cell(paired_difference(scores_by_id(rows, static_categories=ST, **kw),
                                                scores_by_id(ref, static_categories=ST, **kw), clips=clips)))
    print(f"| {label} | {seed} | " + " | ".join(cells) + " |")

pooled = sorted({label for label, seed in runs if label != "none" and seed and ("none", seed) in runs})
if pooled:
    print("\n| pooled over seeds | seeds | dynamic mc macro (mean) vs none | "
          + " | ".join(f"Δ {s} vs none" for s in SUBSETS) + " |")
    print("|" + "---|" * (len(SUBSETS) + 3))
for label in pooled:
    seeds = sorted(s for lab, s in runs if lab == label and ("none", s) in runs)
    table = Table("tpe", label, [Row("none", "sft"), Row(label, "sft")], "none", ("speed_acceleration",))
    result = pool_seeds(table, {s: {"none": runs[("none", s)], label: runs[(label, s)]} for s in seeds},
                        static_categories=ST)
    mine, base = (100 * sum(result[r]["per_seed"].values()) / len(seeds) for r in (label, "none"))
    cells = [cell(result[label]["diff"][k]) for k in ("dynamic_mc", "speed_acceleration")]
    print(f"| {label} | {', '.join(map(str, seeds))} | {mine:.1f} vs {base:.1f} | " + " | ".join(cells) + " |")
