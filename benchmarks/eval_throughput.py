"""Evaluation throughput: ``harness.evaluate`` with the real generate fn at batch size 1 vs 16 vs 32.

    .venv/bin/python benchmarks/eval_throughput.py [--preset small] [--clips 12] [--steps 120] [--records 64]
                                                   [--batch-sizes 1 16 32] [--repeats 2] [--threads 1]

Renders + curates ``--clips`` clips of the preset, builds the base model and trains it ``--steps`` SFT
steps (so it emits ``<answer>..</answer>`` and stops, like a real checkpoint), then times
``components.evaluation.harness.evaluate`` on the same ``--records`` bench records (evenly spaced, as
``evaluate.max_records`` picks them) with ``make_generate_fn`` (greedy, the preset's max_new_tokens),
blind off, at each batch size; repeats alternate the order of the batch sizes, medians are reported.
Goal: batch 16 >= 3x the records/s of batch 1. Batched greedy outputs are compared with the
one-at-a-time outputs (exact text, extracted answer, score). The untrained base model (which never
stops early: every row runs to max_new_tokens) is checked the same way at batch 1 vs the largest.
The wall time per record is split into ``frames_for`` (reading + resizing the frames: per record, it
does not batch; the decoded-frame cache is cleared before every timed pass, as at the start of an
evaluation), ``model.generate`` and the rest, to show what bounds the speedup.

Writes benchmarks/results/eval_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, Clock, loadavg, machine, prepare, rounded

OUT = RESULTS / "eval_throughput.json"


SPLIT = Clock("frames_for", "generate")  # frames_for: PNG decode + resize, per record


def timed_eval(records: list[dict], generate, batch_size: int) -> tuple[float, list[dict], dict, dict]:
    import components.models.inputs as model_inputs
    from components.evaluation.harness import evaluate

    # Every timed pass starts with a cold frame cache (as an evaluation does): otherwise whichever batch size
    # runs first pays all the PNG decoding and the others none.
    cache = getattr(model_inputs, "_load_frame", None)
    if cache is not None and hasattr(cache, "cache_clear"):
        cache.cache_clear()
    SPLIT.take()
    start = time.perf_counter()
    result = evaluate(records, generate, batch_size=batch_size, blind_baseline=False, progress=False)
    seconds = time.perf_counter() - start
    return seconds, result.predictions, result.metrics["model"], SPLIT.take()


def agreement(ref: list[dict], other: list[dict]) -> dict:
    n = len(ref)
    same_text = [a["output"] == b["output"] for a, b in zip(ref, other)]
    same_answer = [a["extracted"]["letter"] == b["extracted"]["letter"] and a["extracted"]["value"] == b["extracted"]["value"]
                   for a, b in zip(ref, other)]
    same_score = [a["score"] == b["score"] for a, b in zip(ref, other)]
    diffs = [{"id": a["id"], "one_at_a_time": a["output"], "batched": b["output"]}
             for a, b, s in zip(ref, other, same_text) if not s]
    return {"n": n, "identical_text": sum(same_text) / n, "same_extracted_answer": sum(same_answer) / n,
            "same_score": sum(same_score) / n, "examples_of_differences": diffs[:5]}


def output_tokens(tokenizer, predictions: list[dict]) -> float:
    return statistics.mean(len(tokenizer(p["output"], add_special_tokens=False)["input_ids"]) for p in predictions)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--records", type=int, default=64)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16, 32])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=0, help="0: the preset's evaluate.max_new_tokens")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    ap.add_argument("--no-base-check", action="store_true")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import components.models.inputs as model_inputs
    from components.config import load_params
    from components.evaluation.checkpoint import bench_records
    from components.models import load_model
    from components.models.generation import make_generate_fn
    from components.training.sft import run_sft

    model_inputs.frames_for = SPLIT.wrap("frames_for", model_inputs.frames_for)  # encode_batch looks it up here

    root = Path(__file__).resolve().parents[1]
    params = load_params(root / "presets" / f"{args.preset}.yaml", [f"scenes.num_clips={args.clips}"])
    max_new = args.max_new_tokens or params.evaluate.max_new_tokens
    started, load_start = time.perf_counter(), loadavg()
    sizes = sorted(set(args.batch_sizes))
    if sizes[0] != 1:
        sizes = [1, *sizes]
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        print(f"[{args.preset}] preparing {args.clips} clips ...", flush=True)
        info = prepare(params, Path(tmp))
        cfg = replace(params.sft, max_steps=args.steps, save_steps=args.steps, logging_steps=max(1, args.steps // 4))
        start = time.perf_counter()
        trained = run_sft(cfg, params.model, info["curated"], info["base"], Path(tmp) / "sft", progress=False)
        train_s = time.perf_counter() - start
        print(f"  trained {trained.steps} steps in {train_s:.0f} s, loss {trained.losses[0]:.2f} -> {trained.losses[-1]:.2f}",
              flush=True)
        records = bench_records(info["curated"], replace(params.evaluate, max_records=args.records))

        def measure(model_dir: Path, batch_sizes: list[int], repeats: int) -> dict:
            model, processor = load_model(model_dir, params.model)
            model.generate = SPLIT.wrap("generate", model.generate)
            generate = make_generate_fn(model, processor, params.model, max_new_tokens=max_new)
            generate(records[:2], False)  # warm-up: first-call allocations, lazy inits
            times: dict[int, list[float]] = {bs: [] for bs in batch_sizes}
            preds: dict[int, list[list[dict]]] = {bs: [] for bs in batch_sizes}
            metrics: dict[int, dict] = {}
            splits: dict[int, list[dict]] = {bs: [] for bs in batch_sizes}
            for rep in range(repeats):
                order = batch_sizes if rep % 2 == 0 else list(reversed(batch_sizes))
                for bs in order:
                    seconds, predictions, m, split = timed_eval(records, generate, bs)
                    times[bs].append(seconds)
                    splits[bs].append(split | {"total": seconds})
                    preds[bs].append(predictions)
                    metrics[bs] = m
                    print(f"  {model_dir.name} batch {bs:>2} rep {rep}: {len(records) / seconds:6.2f} records/s "
                          f"(load {loadavg()})", flush=True)
            ref = preds[1][0]
            rps = {bs: len(records) / statistics.median(t) for bs, t in times.items()}
            ms = {bs: {k: 1000 * statistics.median(x[k] for x in splits[bs]) / len(records)
                       for k in ("frames_for", "generate", "total")} for bs in batch_sizes}
            for v in ms.values():
                v["other"] = v["total"] - v["frames_for"] - v["generate"]  # tokenising, processor, harness, scoring
            return {
                "ms_per_record": ms,
                "generate_only_speedup_vs_batch_1": {bs: ms[1]["generate"] / ms[bs]["generate"] for bs in batch_sizes},
                "example_outputs": [p["output"] for p in ref[:3]],
                "records_per_s": rps,
                "seconds": times,
                "speedup_vs_batch_1": {bs: rps[bs] / rps[1] for bs in batch_sizes},
                "mean_output_tokens": {bs: output_tokens(processor.tokenizer, preds[bs][0]) for bs in batch_sizes},
                "score_overall": {bs: metrics[bs]["overall"]["value"] for bs in batch_sizes},
                "format_valid": {bs: metrics[bs]["format_valid"]["value"] for bs in batch_sizes},
                "agreement_with_batch_1": {bs: agreement(ref, preds[bs][0]) for bs in batch_sizes if bs != 1},
                "batch_1_repeat_identical": (agreement(ref, preds[1][1])["identical_text"] if repeats > 1 else None),
            }

        trained_row = measure(trained.model_dir, sizes, args.repeats)
        base_row = None
        if not args.no_base_check:
            base_row = measure(info["base"], [1, sizes[-1]], 1)

    largest = sizes[-1]
    headline_bs = 16 if 16 in sizes else largest
    result = {
        "what": "components.evaluation.harness.evaluate + models.generation.make_generate_fn (greedy, left padding), "
                "blind off, same records and max_new_tokens at each batch size; records/s = records / median wall time",
        "preset": args.preset, "clips": args.clips, "sft_steps": args.steps, "train_s": train_s,
        "records": len(records), "max_new_tokens": max_new, "batch_sizes": sizes, "repeats": args.repeats,
        "torch_threads": args.threads or "default", "machine": machine(),
        "loadavg_start": load_start, "loadavg_end": loadavg(), "wall_s": time.perf_counter() - started,
        "parameters": info["parameters"],
        "frame_cache": "components.models.inputs._load_frame cleared before each timed pass (cold, like one evaluation)",
        "goal_speedup_batch_16": 3.0,
        "speedup_batch_16": trained_row["speedup_vs_batch_1"].get(headline_bs),
        "trained": trained_row,
        "base_untrained": base_row,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(rounded(result), indent=2) + "\n")
    rps = trained_row["records_per_s"]
    agree = trained_row["agreement_with_batch_1"]
    print(f"eval throughput ({len(records)} records, max_new_tokens {max_new}, load {load_start} -> {result['loadavg_end']}): "
          + ", ".join(f"batch {bs} {rps[bs]:.2f} rec/s" for bs in sizes)
          + f"; speedup batch {headline_bs} {trained_row['speedup_vs_batch_1'][headline_bs]:.2f}x (goal >= 3x; "
          + f"generate alone {trained_row['generate_only_speedup_vs_batch_1'][headline_bs]:.2f}x; frames "
          + f"{trained_row['ms_per_record'][headline_bs]['frames_for']:.1f} of "
          + f"{trained_row['ms_per_record'][headline_bs]['total']:.1f} ms/record); "
          + "identical to one-at-a-time: " + ", ".join(f"b{bs} {a['identical_text']:.1%}" for bs, a in agree.items())
          + (f"; base model b{largest} {base_row['agreement_with_batch_1'][largest]['identical_text']:.1%}" if base_row else "")
          + f" -> {OUT}")


if __name__ == "__main__":
    main()
