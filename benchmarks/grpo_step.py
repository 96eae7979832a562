"""GRPO step time on the CPU and where it goes: generating the rollouts vs everything else.

    .venv/bin/python benchmarks/grpo_step.py [--preset smoke] [--clips 10] [--sft-steps 100] [--steps 20]
                                             [--threads 1]

Renders + curates ``--clips`` clips of the preset, builds the base model and fine-tunes it ``--sft-steps``
SFT steps at the preset's SFT settings (so completions look like answers and stop, as GRPO's starting
point does), then runs ``--steps`` GRPO steps at the preset's ``grpo`` / ``rewards`` settings through
``components.training.grpo.grpo_trainer`` (TRL's GRPOTrainer, plain generation). Each step's wall time
(``on_step_begin`` to ``on_step_end``: rollouts, scoring, loss, backward, optimiser) is split by timers
installed around the real callables, the trainer code unchanged:

* ``generate``: the policy's ``model.generate`` (TRL's rollouts: batch_size completions per step);
* ``reference``: the reference model's forward (TRL's KL term, no grad; absent when beta = 0 or LoRA);
* ``rewards``: the reward functions (``trainer.reward_funcs``);
* ``loss_forward``: ``trainer.compute_loss`` (the policy forward with the frames + GRPO loss);
* ``backward``: ``accelerator.backward``;
* ``other``: the rest (chat template and image processing for generation and again for the loss
  forward, padding, optimiser step, logging).

The first step (warm-up) is left out of the statistics. One torch thread by default, as the other
benchmarks' "one core". Writes benchmarks/results/grpo_step.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, Clock, loadavg, machine, prepare, rounded

OUT = RESULTS / "grpo_step.json"
PARTS = ("generate", "reference", "rewards", "loss_forward", "backward")


def step_times(clock: Clock):
    from transformers import TrainerCallback

    class StepTimes(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[dict[str, float]] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self._start, self._before = time.perf_counter(), dict(clock.seconds)

        def on_step_end(self, args, state, control, **kwargs):
            row = {k: clock.seconds[k] - self._before.get(k, 0.0) for k in PARTS}
            row["step"] = time.perf_counter() - self._start
            row["other"] = row["step"] - sum(row[k] for k in PARTS)
            self.steps.append(row)

    return StepTimes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--clips", type=int, default=10)
    ap.add_argument("--sft-steps", type=int, default=100)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    args = ap.parse_args()

    import torch

    from components.config import load_params
    from components.training.grpo import grpo_records, grpo_trainer
    from components.training.sft import run_sft

    logging.basicConfig(level=logging.WARNING)
    params = load_params(ROOT / "presets" / f"{args.preset}.yaml", [f"scenes.num_clips={args.clips}"])
    # load_model applies model.cpu_threads; --threads wins for this benchmark
    params = replace(params, model=replace(params.model, cpu_threads=args.threads))
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_start = time.perf_counter(), loadavg()
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        work = Path(tmp)
        print(f"[{args.preset}] preparing {args.clips} clips ...", flush=True)
        info = prepare(params, work)
        sft_cfg = replace(params.sft, max_steps=args.sft_steps, save_steps=args.sft_steps + 1)
        sft = run_sft(sft_cfg, params.model, info["curated"], info["base"], work / "sft", progress=False)
        print(f"[{args.preset}] SFT {sft.steps} steps, loss {sft.losses[0]:.2f} -> {sft.losses[-1]:.2f}", flush=True)

        cfg = replace(params.grpo, max_steps=args.steps, save_steps=args.steps + 1,
                      logging_steps=min(params.grpo.logging_steps, args.steps))
        records = grpo_records(info["curated"], cfg)
        trainer, _ = grpo_trainer(cfg, params.rewards, params.model, records, sft.model_dir, work / "grpo",
                                  progress=False)
        clock = Clock(*PARTS)
        trainer.model.generate = clock.wrap("generate", trainer.model.generate)
        if trainer.ref_model is not None:
            trainer.ref_model.forward = clock.wrap("reference", trainer.ref_model.forward)
        trainer.reward_funcs = [clock.wrap("rewards", f) for f in trainer.reward_funcs]
        trainer.compute_loss = clock.wrap("loss_forward", trainer.compute_loss)
        trainer.accelerator.backward = clock.wrap("backward", trainer.accelerator.backward)
        timer = step_times(clock)
        trainer.add_callback(timer)
        load_before = loadavg()
        trainer.train()
        logged = [e for e in trainer.state.log_history if "completions/mean_length" in e]

    steady = timer.steps[1:] if len(timer.steps) > 1 else timer.steps
    total = sum(r["step"] for r in steady)
    share = {k: sum(r[k] for r in steady) / total for k in (*PARTS, "other")}
    result = {
        "what": "GRPO steps (TRL GRPOTrainer via components.training.grpo, CPU, plain transformers generation) from "
                "a briefly fine-tuned tiny model; per-step wall time split by timers around generate, the reference "
                "forward, the reward functions, compute_loss and backward; first step excluded",
        "preset": args.preset, "clips": args.clips, "sft_steps": args.sft_steps, "steps": args.steps,
        "torch_threads": args.threads or "default", "machine": machine(),
        "loadavg_start": load_start, "loadavg_before_grpo": load_before, "loadavg_end": loadavg(),
        "wall_s": time.perf_counter() - started,
        "grpo": {"batch_size": cfg.batch_size, "num_generations": cfg.num_generations,
                 "prompts_per_step": cfg.batch_size // cfg.num_generations,
                 "max_completion_length": cfg.max_completion_length, "beta": cfg.beta, "loss_type": cfg.loss_type,
                 "use_lora": cfg.use_lora, "reward_terms": [t.name for t in params.rewards.terms]},
        "model": {"parameters": info["parameters"], "num_frames": params.model.num_frames,
                  "frame_size": params.model.frame_size, "time_cue": params.model.time_cue},
        "records": len(records),
        "seconds_per_step": {"median": statistics.median(r["step"] for r in steady),
                             "mean": total / len(steady), "first_step": timer.steps[0]["step"]},
        "share": share,
        "median_seconds": {k: statistics.median(r[k] for r in steady) for k in (*PARTS, "other")},
        "completion_mean_length": statistics.mean(e["completions/mean_length"] for e in logged) if logged else None,
        "clipped_ratio": statistics.mean(e["completions/clipped_ratio"] for e in logged) if logged else None,
        "per_step": timer.steps,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(rounded(result), indent=2) + "\n")
    print(f"grpo step ({args.preset}, {len(steady)} steady steps, load {load_before} -> {result['loadavg_end']}): "
          f"{result['seconds_per_step']['median']:.3f} s/step; "
          + ", ".join(f"{k} {v:.0%}" for k, v in share.items()) + f" -> {OUT}")


if __name__ == "__main__":
    main()
