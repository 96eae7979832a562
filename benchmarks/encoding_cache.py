"""Batch encoding in training: ``encode_batch`` every batch vs ``EncodingCache`` (each record encoded once).

    .venv/bin/python benchmarks/encoding_cache.py [--params params.yaml] [--clips 48] [--epochs 4]

Renders and curates ``--clips`` clips of the preset and builds its base model (``_common.prepare``), then
walks ``--epochs`` shuffled epochs of the sft split at the preset's SFT batch size twice in one process,
alternating batch by batch (same load for both): once through ``encode_batch`` (what the collator did), once
through ``EncodingCache`` (what it does). Every batch's tensors are compared (they must be equal: the run
fails otherwise); the comparison is not timed. SFT on the default walks ~6 epochs of its data.

Writes benchmarks/results/encoding_cache.json.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from _common import RESULTS, ROOT, loadavg, machine, prepare, rounded

OUT = RESULTS / "encoding_cache.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()

    import torch

    from components.config import load_params
    from components.curation.schema import read_records
    from components.models import load_model
    from components.models.inputs import EncodingCache, encode_batch

    torch.set_num_threads(1)
    params = load_params(args.params, [f"scenes.num_clips={args.clips}", "quality.min_records_per_split=1"])
    start_load = loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        prepared = prepare(params, Path(tmp))
        records = read_records(prepared["curated"] / "sft.jsonl", split="sft")
        _, processor = load_model(prepared["base"], params.model, for_training=True)
        cache = EncodingCache(processor, params.model, with_target=True)
        keys = [json.dumps(r, sort_keys=True) for r in records]
        size, rng = params.sft.batch_size, random.Random(0)
        seconds = {"encode_batch": [], "cache": []}
        for _ in range(args.epochs):
            order = list(range(len(records)))
            rng.shuffle(order)
            spent = {"encode_batch": 0.0, "cache": 0.0}
            for i in range(0, len(order) - size + 1, size):
                batch = order[i:i + size]
                start = time.perf_counter()
                want = encode_batch([records[j] for j in batch], processor, params.model, with_target=True)
                spent["encode_batch"] += time.perf_counter() - start
                start = time.perf_counter()
                got = cache([(keys[j], records[j]) for j in batch])
                spent["cache"] += time.perf_counter() - start
                if got.keys() != want.keys() or not all(torch.equal(got[k], want[k]) for k in want):
                    raise SystemExit("EncodingCache's batch differs from encode_batch's")
            for key, value in spent.items():
                seconds[key].append(value)
    total = {key: sum(values) for key, values in seconds.items()}
    result = {
        "what": "collating --epochs shuffled epochs of the sft split at the SFT batch size: encode_batch per batch vs "
                "EncodingCache (records encoded once, collated); one process, alternating batch by batch; tensors equal",
        "params": str(Path(args.params).resolve().relative_to(ROOT)), "clips": args.clips, "records": len(records),
        "batch_size": size, "epochs": args.epochs, "machine": machine(), "loadavg_start": start_load,
        "loadavg_end": loadavg(), "seconds_per_epoch": seconds, "seconds": total,
        "speedup": total["encode_batch"] / total["cache"],
        "speedup_after_first_epoch": sum(seconds["encode_batch"][1:]) / max(sum(seconds["cache"][1:]), 1e-9),
        "cache": cache.cache_info(),
    }
    OUT.write_text(json.dumps(rounded(result), indent=2) + "\n")
    print(json.dumps(rounded({k: result[k] for k in ("records", "seconds", "speedup", "speedup_after_first_epoch",
                                                      "cache")}), indent=2))


if __name__ == "__main__":
    main()
