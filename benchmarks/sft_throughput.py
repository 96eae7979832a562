"""SFT throughput per preset: samples/s, tokens/s and peak memory of ``run_sft`` on the tiny models.

    .venv/bin/python benchmarks/sft_throughput.py [--presets smoke small] [--clips 6] [--steps 20] [--repeats 2]

For each preset: render + curate ``--clips`` clips and build the base model (in the parent, scratch
folder), then train ``--steps`` steps at the preset's batch size in a fresh subprocess (so ``ru_maxrss``
is that preset's training alone: imports + model + trainer + batches). Throughput comes from the
trainer's own log entries (``ThroughputCallback``'s samples_per_s / tokens_per_s as the callback leaves
them: they never reach ``trainer_state.json``'s log_history, see ``worker``); "steady" drops the first
logging interval (start-up).
Tokens are TRL's ``num_tokens``: every non-pad input token, image placeholders included. Runs alternate
presets (smoke, small, smoke, small, ...) so the ratio is measured under the same load; medians over
``--repeats``. One torch thread by default (``--threads``), like the other benchmarks' "one core".

Writes benchmarks/results/sft_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, loadavg, machine, peak_rss_mb, prepare, rounded

OUT = RESULTS / "sft_throughput.json"


def worker(args: argparse.Namespace) -> None:
    """Child process: train and write what the trainer logged plus this process's peak RSS."""
    from dataclasses import replace

    from components.config import load_params
    from components.curation.schema import read_records
    from components.training.callbacks import ThroughputCallback
    from components.training.sft import run_sft

    # ThroughputCallback adds samples_per_s / tokens_per_s to the ``logs`` dict that the later callbacks (printer,
    # MLflow) see, but Trainer.log has already copied that dict into state.log_history: trainer_state.json never
    # holds them. Record the entries as the callback leaves them.
    entries: list[dict] = []
    original = ThroughputCallback.on_log

    def recording_on_log(self, args_, state, control, logs=None, **kwargs):
        original(self, args_, state, control, logs=logs, **kwargs)
        if logs is not None and "loss" in logs:
            entries.append({**logs, "step": state.global_step})

    ThroughputCallback.on_log = recording_on_log
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    params = load_params(args.params)
    cfg = replace(params.sft, max_steps=args.steps, logging_steps=args.logging_steps, save_steps=args.steps)
    read_records(Path(args.curated) / "sft.jsonl", split="sft")
    rss_before = peak_rss_mb()  # python + torch + transformers + trl imported, records read
    load_before = loadavg()
    result = run_sft(cfg, params.model, Path(args.curated), Path(args.base), Path(args.out), progress=False)
    state = json.loads((Path(args.out) / "checkpoints" / f"checkpoint-{result.steps}" / "trainer_state.json").read_text())
    Path(args.result).write_text(json.dumps({
        "steps": result.steps, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
        "logging_steps": cfg.logging_steps, "seconds": result.seconds, "train_metrics": result.train_metrics,
        "losses": result.losses, "log_entries": entries,
        "trainer_state_has_throughput": any("samples_per_s" in e for e in state["log_history"]),
        "peak_rss_mb": peak_rss_mb(), "peak_rss_before_training_mb": rss_before,
        "loadavg_before": load_before, "loadavg_after": loadavg(), "machine": machine(),
    }))


def summarise(run: dict) -> dict:
    logs = [e for e in run["log_entries"] if "samples_per_s" in e]
    per_step = run["batch_size"] * run["grad_accum"]
    # Each log entry covers the steps since the previous one; its time = samples / rate.
    steps, prev = [], 0
    for e in logs:
        steps.append(e["step"] - prev)
        prev = e["step"]
    times = [s * per_step / e["samples_per_s"] for s, e in zip(steps, logs)]
    steady = slice(1, None) if len(logs) > 1 else slice(0, None)
    steady_samples = sum(s * per_step for s in steps[steady])
    steady_time = sum(times[steady])
    tokens = [e.get("num_tokens") for e in logs]
    steady_tokens = (tokens[-1] - tokens[0]) if len(logs) > 1 and None not in (tokens[0], tokens[-1]) else None
    total_samples = run["steps"] * per_step
    return {
        "steady_samples_per_s": steady_samples / steady_time,
        "steady_tokens_per_s": steady_tokens / steady_time if steady_tokens is not None else None,
        "overall_samples_per_s": run["train_metrics"].get("train_samples_per_second"),
        "train_runtime_s": run["train_metrics"].get("train_runtime"),
        "per_interval_samples_per_s": [e["samples_per_s"] for e in logs],
        "per_interval_tokens_per_s": [e.get("tokens_per_s") for e in logs],
        "tokens_per_sample": tokens[-1] / total_samples if tokens[-1] is not None else None,
        "seconds_per_step_steady": steady_time / sum(steps[steady]),
        "peak_rss_mb": run["peak_rss_mb"],
        "peak_rss_before_training_mb": run["peak_rss_before_training_mb"],
        "first_loss": run["losses"][0] if run["losses"] else None,
        "last_loss": run["losses"][-1] if run["losses"] else None,
        "trainer_state_json_has_samples_per_s": run["trainer_state_has_throughput"],
        "loadavg_before": run["loadavg_before"],
        "loadavg_after": run["loadavg_after"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["smoke", "small"])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--logging-steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of the training subprocess (1: a shared 2-core machine oversubscribed by 2 "
                         "OpenMP threads per process slows small ops by 10x+ at random; 0 = torch's default)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("params", "curated", "base", "out", "result"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return

    from components.config import load_params

    started, load_start = time.perf_counter(), loadavg()
    presets: dict[str, dict] = {}
    runs: dict[str, list[dict]] = {p: [] for p in args.presets}
    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        # The preset with the clip-count override, as a complete params file the child loads.
        for preset in args.presets:
            src = ROOT / "presets" / f"{preset}.yaml"
            params = load_params(src, [f"scenes.num_clips={args.clips}"])
            print(f"[{preset}] preparing {args.clips} clips ...", flush=True)
            info = prepare(params, Path(tmp) / preset)
            import yaml

            from components.config import to_dict

            params_file = Path(tmp) / f"{preset}.params.yaml"
            params_file.write_text(yaml.safe_dump(to_dict(params)))
            presets[preset] = {"params_file": params_file, "info": info, "params": params}
        for rep in range(args.repeats):
            for preset in args.presets:
                p = presets[preset]
                out, result = Path(tmp) / preset / f"sft-{rep}", Path(tmp) / preset / f"result-{rep}.json"
                cmd = [sys.executable, __file__, "--worker", "--params", str(p["params_file"]),
                       "--curated", str(p["info"]["curated"]), "--base", str(p["info"]["base"]), "--out", str(out),
                       "--result", str(result), "--steps", str(args.steps), "--logging-steps", str(args.logging_steps),
                       "--threads", str(args.threads)]
                start = time.perf_counter()
                env = os.environ | ({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})
                proc = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, env=env)
                if proc.returncode:
                    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
                    raise SystemExit(f"[{preset}] training subprocess failed ({proc.returncode})")
                run = json.loads(result.read_text())
                s = summarise(run) | {"subprocess_wall_s": time.perf_counter() - start}
                runs[preset].append(s)
                print(f"[{preset} #{rep}] {s['steady_samples_per_s']:.1f} samples/s, "
                      f"{s['steady_tokens_per_s'] or float('nan'):.0f} tokens/s, peak RSS {s['peak_rss_mb']:.0f} MB, "
                      f"load {s['loadavg_before']} -> {s['loadavg_after']}", flush=True)

    result = {
        "what": "run_sft (TRL SFTTrainer, CPU) for a fixed number of steps at each preset's batch size; steady = "
                "after the first logging interval; tokens = non-pad input tokens incl. image placeholders; peak RSS = "
                "ru_maxrss of a subprocess per run (imports + model + trainer + batches)",
        "clips": args.clips, "steps": args.steps, "logging_steps": args.logging_steps, "repeats": args.repeats,
        "torch_threads": args.threads or "default",
        "machine": machine(), "loadavg_start": load_start, "loadavg_end": loadavg(),
        "wall_s": time.perf_counter() - started,
        "presets": {},
    }
    for preset in args.presets:
        p, rs = presets[preset], runs[preset]
        params = p["params"]
        result["presets"][preset] = {
            "batch_size": params.sft.batch_size, "grad_accum": params.sft.grad_accum,
            "model": {"hidden_size": params.model.tiny.hidden_size, "num_layers": params.model.tiny.num_layers,
                      "num_frames": params.model.num_frames, "frame_size": params.model.frame_size},
            "parameters": p["info"]["parameters"], "vocab_size": p["info"]["vocab_size"],
            "records": p["info"]["records"], "prepare_timings_s": p["info"]["timings_s"],
            "median": {k: statistics.median(r[k] for r in rs)
                       for k in ("steady_samples_per_s", "steady_tokens_per_s", "overall_samples_per_s",
                                 "seconds_per_step_steady", "peak_rss_mb", "peak_rss_before_training_mb",
                                 "tokens_per_sample") if all(r[k] is not None for r in rs)},
            "runs": rs,
        }
    if len(args.presets) == 2:
        a, b = args.presets
        ma, mb = result["presets"][a]["median"], result["presets"][b]["median"]
        result["ratios"] = {
            f"{b}_over_{a}_samples_per_s": mb["steady_samples_per_s"] / ma["steady_samples_per_s"],
            f"{b}_over_{a}_tokens_per_s": (mb["steady_tokens_per_s"] / ma["steady_tokens_per_s"]
                                           if ma.get("steady_tokens_per_s") and mb.get("steady_tokens_per_s") else None),
            f"{b}_over_{a}_peak_rss": mb["peak_rss_mb"] / ma["peak_rss_mb"],
            f"{b}_over_{a}_parameters": result["presets"][b]["parameters"]["all"] / result["presets"][a]["parameters"]["all"],
        }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(rounded(result), indent=2) + "\n")
    line = "; ".join(
        f"{name}: {r['median']['steady_samples_per_s']:.1f} samples/s, {r['median'].get('steady_tokens_per_s', 0):.0f} "
        f"tokens/s, peak {r['median']['peak_rss_mb']:.0f} MB, {r['parameters']['all']:,} params"
        for name, r in result["presets"].items())
    print(f"sft throughput ({args.steps} steps, load {load_start} -> {result['loadavg_end']}): {line} -> {OUT}")


if __name__ == "__main__":
    main()
