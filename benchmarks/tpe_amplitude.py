"""TPE's p(t) against the patch features it is added to: their norms at the merger's input.

    .venv/bin/python benchmarks/tpe_amplitude.py [--models models/base models/sft/model] [--records 16]

Runs `make run`'s checkpoints (time cue none) on the first ``--records`` bench records and measures the per-patch
norm of the vision tower's output (the merger's input, where eq. 5 adds p(t)) and the norm of p(t) at those frames'
timestamps (``model.tpe_max_timescale``, times ``model.tpe_scale`` 1). Writes benchmarks/results/tpe_amplitude.json;
docs: benchmarks/results/tpe_timescale_default.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, rounded

from components.config import load_params
from components.io import read_jsonl
from components.models import encode_batch, load_model
from components.models.inputs import frames_for
from components.models.tpe import TIME_KEY
from components.time_encoding import timestamp_encoding


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--curated", type=Path, default=Path("data/curated"))
    parser.add_argument("--models", nargs="+", default=["models/base", "models/sft/model"])
    parser.add_argument("--records", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS / "tpe_amplitude.json")
    args = parser.parse_args()

    cfg = dataclasses.replace(load_params(args.params).model, time_cue="none")
    records = read_jsonl(args.curated / "bench.jsonl")[: args.records]
    times = torch.tensor([f.info[TIME_KEY] for r in records for f in frames_for(r, dataclasses.replace(
        cfg, time_cue="tpe"))])
    results = {}
    for name in args.models:
        model, processor = load_model(name, cfg)
        seen: list[torch.Tensor] = []
        model.model.visual.merger.register_forward_pre_hook(lambda m, a, seen=seen: seen.append(a[0].detach()))
        with torch.no_grad():
            model(**encode_batch(records, processor, cfg, with_target=False))
        norms = seen[0].norm(dim=-1)
        results[name] = {"patch_feature_norm_mean": norms.mean().item(), "median": norms.median().item(),
                         "dim": seen[0].shape[-1]}
    dim = next(iter(results.values()))["dim"]
    p = timestamp_encoding(times, dim, cfg.tpe_max_timescale).norm(dim=-1)
    report = {"what": __doc__.split("\n")[0], "records": len(records), "features": results,
              "p_t_norm": {"mean": p.mean().item(), "sqrt_dim_half": (dim / 2) ** 0.5}, "machine": machine()}
    args.out.write_text(json.dumps(rounded(report), indent=2) + "\n")
    for name, r in results.items():
        print(f"{name}: patch features |x| mean {r['patch_feature_norm_mean']:.2f}; p(t) |p| {p.mean():.2f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
