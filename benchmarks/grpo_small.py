"""GRPO on the small preset: does it beat its starting checkpoint, and does the mean reward rise?

    .venv/bin/python benchmarks/grpo_small.py [--experiments reports/experiments] [-S section.key=value ...]

Starts from the P4D (LD+ED) checkpoint that `mllm4d --params presets/small.yaml experiments` trained
(Tab. 4's P4D row: `reports/experiments/table4.json` names it), runs `run_grpo` with the small preset's
grpo / rewards config on the experiment's curated rft split, evaluates the result exactly as the
experiment evaluated its rows (same bench records, same evaluate settings, from `table4.json`), and
reports the bench accuracy of both with the paired bootstrap difference, plus the reward curve.

Writes benchmarks/results/grpo_small.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, loadavg, machine, rounded

OUT = RESULTS / "grpo_small.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--experiments", type=Path, default=ROOT / "reports" / "experiments")
    ap.add_argument("--work", type=Path, default=ROOT / "experiments")
    ap.add_argument("--params", default=str(ROOT / "presets" / "small.yaml"))
    ap.add_argument("-S", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    from components.config import load_params
    from components.curation.schema import STATIC_CATEGORIES
    from components.evaluation.ablation import paired_difference, scores_by_id
    from components.evaluation.checkpoint import evaluate_checkpoint
    from components.io import read_jsonl
    from components.training.grpo import run_grpo

    row = json.loads((args.experiments / "table4.json").read_text())["P4D (LD+ED)"]
    # the experiment's own settings (its -S overrides were recorded per row only): evaluate as it did
    params = load_params(args.params, [*args.overrides, "evaluate.blind_baseline=false", "evaluate.max_records=400"])
    curated, start_dir = args.work / "data" / "curated", Path(row["model_dir"])
    start = time.perf_counter()
    result = run_grpo(params.grpo, params.rewards, params.model, curated, start_dir, args.work / "models" / "grpo_small",
                      progress=False)
    seconds = time.perf_counter() - start
    evaluation = evaluate_checkpoint(params.evaluate, params.model, curated, result.model_dir,
                                     args.work / "reports" / "grpo_small", name="grpo_small", progress=False)
    before = read_jsonl(args.experiments / "runs" / row["slug"] / "predictions.jsonl")
    after = evaluation.predictions
    static = frozenset(STATIC_CATEGORIES)
    diff = {subset: paired_difference(scores_by_id(after, static_categories=static, **kw),
                                      scores_by_id(before, static_categories=static, **kw))
            for subset, kw in (("overall", {}), ("dynamic", {"dynamic": True}))}
    out = {
        "what": "GRPO from the small-preset P4D checkpoint of the experiments; bench accuracy before/after and the "
                "paired bootstrap difference (95%); mean reward per logging step",
        "start": str(start_dir), "grpo": asdict(params.grpo), "steps": result.steps, "seconds": seconds,
        "reward_curve": result.reward_curve, "unscorable": result.unscorable,
        "before": {k: row["metrics"][k] for k in ("overall", "static", "dynamic")},
        "after": {k: evaluation.metrics["model"][k] for k in ("overall", "static", "dynamic")},
        "difference_after_minus_before": diff, "machine": machine(), "loadavg": loadavg(),
    }
    OUT.write_text(json.dumps(rounded(out), indent=2, default=str) + "\n")
    print(json.dumps(rounded({k: out[k] for k in ("before", "after", "difference_after_minus_before", "reward_curve")}),
                     indent=2, default=str))


if __name__ == "__main__":
    main()
