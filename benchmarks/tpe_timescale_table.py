"""The table of benchmarks/results/tpe_timescale_default.md from the runs of benchmarks/tpe_timescale.sh under
/tmp/tpe (run from the repo root)."""
from collections import defaultdict
from pathlib import Path

from components.curation.schema import STATIC_CATEGORIES
from components.evaluation.ablation import clips_by_id, dynamic_mc_macro, paired_difference, scores_by_id
from components.io import read_jsonl

st = frozenset(STATIC_CATEGORIES)
def _name(run: Path) -> str:  # T100 -> "TPE, T=100"; T100_s0.1 -> "TPE, T=100, x0.1"
    t, _, scale = run.name[1:].partition("_s")
    return f"TPE, T={t}" + (f", x{scale}" if scale else "")


runs = {"none (make run's SFT)": "reports/eval/sft/predictions.jsonl",
        **{_name(p.parents[1]): str(p) for p in sorted(Path("/tmp/tpe").glob("T*/eval/predictions.jsonl"))}}
P = {k: read_jsonl(v) for k, v in runs.items()}
ref = P["none (make run's SFT)"]; clips = clips_by_id(ref)
cats = ["ego_motion", "false_positive", "object_camera_distance", "rotational", "speed_acceleration", "translational"]
print("| SFT, time cue | dynamic mc macro | " + " | ".join(cats) + " (mc) | Δ dynamic mc records vs none | Δ speed_acceleration (all) vs none |")
print("|" + "---|" * (len(cats) + 4))
for name, rows in P.items():
    acc = defaultdict(list)
    for p in rows:
        if p["answer_type"] == "mc" and p["category"] not in st:
            acc[p["category"]].append(p["score"])
    cells = [f"{100*dynamic_mc_macro(rows):.1f}", *[f"{100*sum(acc[c])/len(acc[c]):.1f}" for c in cats]]
    for kw in ({"dynamic": True, "mc": True}, {"category": "speed_acceleration"}):
        if rows is ref:
            cells.append("ref"); continue
        d = paired_difference(scores_by_id(rows, static_categories=st, **kw), scores_by_id(ref, static_categories=st, **kw), clips=clips)
        cells.append(f"{100*d['value']:+.1f} [{100*d['ci'][0]:+.1f}, {100*d['ci'][1]:+.1f}]")
    print(f"| {name} | " + " | ".join(cells) + " |")
