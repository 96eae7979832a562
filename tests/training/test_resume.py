"""Resuming restores exactly what was saved: a run SIGKILLed after a checkpoint and re-run ends with the same
weights (tensor-equal on the CPU) as a run that was never interrupted, for SFT, P4D and GRPO; a broken last
checkpoint is skipped, named, for the last whole one."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from components.training.sft import run_sft

DRIVER = Path(__file__).with_name("resume_run.py")
MAX_STEPS, SAVE_STEPS, KILL_AFTER = 6, 2, 4
TIMEOUT_S = 600
# case -> (stage, GRPO config changes); LoRA checkpoints hold adapters only, which the Trainer (PEFT) restores
STAGES = {"sft": ("sft", {}), "p4d": ("p4d", {}), "grpo": ("grpo", {}),
          "grpo_lora": ("grpo", {"use_lora": True, "learning_rate": 1e-2})}


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def _start(spec: dict, tmp: Path, name: str) -> subprocess.Popen:
    spec_file = tmp / f"{name}.json"
    spec_file.write_text(json.dumps(spec))
    # one thread: the reference and the resumed run must do the same floating-point sums
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    log = (tmp / f"{name}.log").open("w")
    return subprocess.Popen([sys.executable, str(DRIVER), str(spec_file)], stdout=log, stderr=subprocess.STDOUT,
                            env=env, cwd=tmp)


def _log_tail(tmp: Path, name: str) -> str:
    return (tmp / f"{name}.log").read_text()[-4000:]


def _finish(proc: subprocess.Popen, tmp: Path, name: str) -> None:
    assert proc.wait(timeout=TIMEOUT_S) == 0, f"{name} failed:\n{_log_tail(tmp, name)}"


def _kill_when_held(proc: subprocess.Popen, marker: Path, tmp: Path, name: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not marker.exists():
        assert proc.poll() is None, f"{name} ended before it was killed:\n{_log_tail(tmp, name)}"
        assert time.monotonic() < deadline, f"{name} never reached step {KILL_AFTER}"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("case", ["sft", "p4d", "grpo", pytest.param("grpo_lora", marks=pytest.mark.slow)])
def test_resume_keeps_trained_weights_after_sigkill(case, tmp_path, smoke_curated, base, teacher_and_targets):
    curated, _ = smoke_curated
    teacher_cfg, teacher_dir, targets = teacher_and_targets
    stage, grpo_changes = STAGES[case]
    spec = {"stage": stage, "curated": str(curated), "init": str(base), "max_steps": MAX_STEPS,
            "save_steps": SAVE_STEPS, "teacher": str(teacher_dir), "targets": str(targets),
            "teacher_cfg": {"max_steps": teacher_cfg.max_steps}, "grpo": grpo_changes}
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    ref = _start({**spec, "out": str(reference)}, tmp_path, "reference")
    killed = _start({**spec, "out": str(resumed), "hold_at": KILL_AFTER}, tmp_path, "killed")
    _kill_when_held(killed, resumed / "held", tmp_path, "killed")
    assert (resumed / "checkpoints" / f"checkpoint-{KILL_AFTER}").is_dir() and not (resumed / "model").exists()
    _finish(_start({**spec, "out": str(resumed)}, tmp_path, "rerun"), tmp_path, "rerun")
    _finish(ref, tmp_path, "reference")

    meta = json.loads((resumed / "meta.json").read_text())
    assert meta["resumed_from"].endswith(f"checkpoint-{KILL_AFTER}") and meta["steps"] == MAX_STEPS
    want, got, init = _weights(reference / "model"), _weights(resumed / "model"), _weights(base)
    assert want.keys() == got.keys()
    differ = [k for k in want if not torch.equal(want[k], got[k])]
    assert not differ, f"resumed weights differ from the uninterrupted run's: {differ[:5]}"
    assert any(not torch.equal(want[k], init[k]) for k in want), "training moved no weight: the test proves nothing"
    ref_meta = json.loads((reference / "meta.json").read_text())
    assert meta["losses"] == ref_meta["losses"]  # the data order and RNG carried on too
    assert "missing keys" not in (tmp_path / "rerun.log").read_text()


def _break_half_written(checkpoint: Path) -> None:
    """Killed while saving: the weights are there, what the trainer writes after them is not."""
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"):
        (checkpoint / name).unlink(missing_ok=True)


def _break_corrupt(checkpoint: Path) -> None:
    """A whole-looking checkpoint whose weights file lost its tail."""
    weights = checkpoint / "model.safetensors"
    os.truncate(weights, weights.stat().st_size // 2)


@pytest.mark.parametrize("damage", [_break_half_written, _break_corrupt], ids=["half_written", "corrupt"])
def test_resume_skips_a_broken_last_checkpoint(damage, tmp_path, smoke_params, smoke_curated, base, caplog):
    curated, _ = smoke_curated
    cfg = replace(smoke_params.sft, max_steps=4, batch_size=4, logging_steps=1, save_steps=2)
    out = tmp_path / "sft"
    whole = _weights(run_sft(cfg, smoke_params.model, curated, base, out, progress=False).model_dir)
    last = out / "checkpoints" / "checkpoint-4"
    damage(last)
    with caplog.at_level(logging.WARNING, logger="components.training"):
        result = run_sft(cfg, smoke_params.model, curated, base, out, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["resumed_from"].endswith("checkpoint-2") and result.steps == 4
    assert str(last) in caplog.text, "the skipped checkpoint is not named"
    again = _weights(result.model_dir)
    assert all(torch.equal(whole[k], again[k]) for k in whole), "resuming from checkpoint-2 did not end where the run did"
