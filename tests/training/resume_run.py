"""One training stage on the smoke preset in a process of its own, for the resume tests to SIGKILL.

    python tests/training/resume_run.py SPEC.json

``SPEC.json``: ``stage`` (sft | p4d | grpo), ``curated``, ``init`` (the model the stage starts from),
``out``, ``teacher`` / ``targets`` (P4D), ``grpo`` (GRPO config changes), ``max_steps``, ``save_steps`` and ``hold_at``: when set, the run
blocks as step ``hold_at + 1`` begins (so checkpoint ``hold_at`` is whole) and writes ``out/held``; the
test then kills it. The configs are the same for every run of a test, so only the kill differs.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from components.env import apply_quiet_defaults

apply_quiet_defaults()

from transformers import TrainerCallback

from components.config import RewardsConfig, RewardTerm, load_params
from components.rewards import REGISTRY, completion_text

ROOT = Path(__file__).resolve().parents[2]
BATCH = 4


class Hold(TrainerCallback):
    """Blocks the run when step ``step + 1`` begins, after checkpoint ``step`` and its digest are written."""

    def __init__(self, step: int, marker: Path) -> None:
        self.step, self.marker = step, marker

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.marker.touch()
            while True:  # until SIGKILL
                time.sleep(0.5)


def brevity(completions: list, *, cfg: RewardsConfig, **columns) -> list[float]:
    """Varies within every group (sampled lengths differ), so each GRPO step moves the weights."""
    return [1.0 - min(len(completion_text(c)), 40) / 40 for c in completions]


def with_hold(fit, hold: Hold | None):
    @functools.wraps(fit)
    def wrapped(trainer, out, inputs):
        if hold is not None:
            trainer.add_callback(hold)
        return fit(trainer, out, inputs)

    return wrapped


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    params = load_params(ROOT / "presets" / "smoke.yaml")
    stage, out = spec["stage"], Path(spec["out"])
    hold = Hold(spec["hold_at"], out / "held") if spec.get("hold_at") else None
    steps = {"max_steps": spec["max_steps"], "save_steps": spec["save_steps"], "logging_steps": 1}
    if stage == "sft":
        from components.training import sft

        sft.fit = with_hold(sft.fit, hold)
        cfg = replace(params.sft, batch_size=BATCH, **steps)
        sft.run_sft(cfg, params.model, spec["curated"], spec["init"], out, progress=False)
    elif stage == "p4d":
        from components.training import p4d

        p4d.fit = with_hold(p4d.fit, hold)
        cfg = replace(params.p4d, train=replace(params.p4d.train, batch_size=BATCH, **steps), depth_log_steps=0)
        teacher_cfg = replace(params.teacher, **spec["teacher_cfg"])
        p4d.run_p4d(cfg, teacher_cfg, params.model, spec["curated"], spec["init"], spec["teacher"], spec["targets"],
                    out, progress=False)
    else:
        from components.training import grpo

        grpo.fit = with_hold(grpo.fit, hold)
        REGISTRY["brevity"] = brevity
        rewards = replace(params.rewards, terms=[*params.rewards.terms, RewardTerm("brevity", 0.5)])
        cfg = replace(params.grpo, batch_size=BATCH, num_generations=4, sample_completions=0, **steps,
                      **spec.get("grpo", {}))
        grpo.run_grpo(cfg, rewards, params.model, spec["curated"], spec["init"], out, progress=False)


if __name__ == "__main__":
    main(sys.argv[1])
