"""P4D adds nothing at inference: the exported P4D model has the SFT model's parameters, and answers as fast.

    .venv/bin/python benchmarks/p4d_inference_cost.py [--sft models/sft/model] [--p4d models/p4d/model]
                                                      [--params params.yaml] [--records 64] [--repeats 5]

Reads the two checkpoints the pipeline wrote (`make run` or `dvc repro` first), compares their parameter
names, shapes and counts (from the safetensors headers and the loaded models), then times batched greedy
generation (``make_generate_fn``, the evaluation's path) on the same bench records, alternating the two
models ``--repeats`` times; the ratio of the medians is the inference-cost ratio (1.0 = equal). The
training-only modules (``D_4DP``, the teacher's decoders) must be absent from the P4D folder.

Writes benchmarks/results/p4d_inference_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, loadavg, machine, rounded

OUT = RESULTS / "p4d_inference_cost.json"


def tensor_shapes(folder: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    shapes = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            shapes.update({k: list(f.get_slice(k).get_shape()) for k in f.keys()})  # noqa: SIM118 (not a dict)
    return shapes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", type=Path, default=Path("models/sft/model"))
    ap.add_argument("--p4d", type=Path, default=Path("models/p4d/model"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--curated", type=Path, default=Path("data/curated"))
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from components.config import load_params
    from components.io import read_jsonl
    from components.models import load_model
    from components.models.generation import make_generate_fn

    params = load_params(args.params)
    sft_shapes, p4d_shapes = tensor_shapes(args.sft), tensor_shapes(args.p4d)
    models = {name: load_model(path, params.model) for name, path in (("sft", args.sft), ("p4d", args.p4d))}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, (m, _) in models.items()}
    records = read_jsonl(args.curated / "bench.jsonl")[: args.records]
    generate = {name: make_generate_fn(m, proc, params.model, max_new_tokens=params.evaluate.max_new_tokens)
                for name, (m, proc) in models.items()}
    for fn in generate.values():  # warm-up: first calls pay allocation and frame decoding
        fn(records[: params.evaluate.batch_size], False)
    seconds = {"sft": [], "p4d": []}
    for i in range(args.repeats):
        for name in ("sft", "p4d") if i % 2 == 0 else ("p4d", "sft"):
            start = time.perf_counter()
            for b in range(0, len(records), params.evaluate.batch_size):
                generate[name](records[b : b + params.evaluate.batch_size], False)
            seconds[name].append(time.perf_counter() - start)
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    result = {
        "what": "P4D vs SFT checkpoints: parameter set and count, batched greedy generation time on the same bench records",
        "sft": str(args.sft), "p4d": str(args.p4d), "records": len(records), "repeats": args.repeats,
        "same_tensor_names_and_shapes": sft_shapes == p4d_shapes,
        "training_only_tensors_in_p4d": sorted(k for k in p4d_shapes if "p4d" in k or "teacher" in k),
        "parameters": counts, "parameters_equal": counts["sft"] == counts["p4d"],
        "seconds": {k: rounded(v) for k, v in seconds.items()}, "median_s": rounded(medians),
        "latency_ratio_p4d_over_sft": round(medians["p4d"] / medians["sft"], 3),
        "spread": {k: round((max(v) - min(v)) / statistics.median(v), 3) for k, v in seconds.items()},
        "machine": machine(), "loadavg": loadavg(),
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("parameters", "parameters_equal", "same_tensor_names_and_shapes",
                                             "median_s", "latency_ratio_p4d_over_sft", "spread")}, indent=2))


if __name__ == "__main__":
    main()
