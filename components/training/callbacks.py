"""Trainer callbacks shared by the training stages."""

from __future__ import annotations

import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from components.io import write_folder_digest
from components.models.factory import DIGEST


class ThroughputCallback(TrainerCallback):
    """Adds samples/s and tokens/s (since the previous log) to every log entry.

    ``Trainer`` reports throughput only once, at the end; a per-step figure shows stalls and lets the
    benchmark compare presets. Tokens come from TRL's running ``num_tokens`` when it logs it.
    """

    def __init__(self, samples_per_step: int) -> None:
        self.samples_per_step = samples_per_step
        self._t = self._step = self._tokens = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._t, self._step, self._tokens = time.perf_counter(), state.global_step, None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or self._t is None or "loss" not in logs:
            return
        now = time.perf_counter()
        elapsed = max(now - self._t, 1e-9)
        steps = state.global_step - self._step
        logs["samples_per_s"] = steps * self.samples_per_step / elapsed
        tokens = logs.get("num_tokens")
        if tokens is not None and self._tokens is not None:
            logs["tokens_per_s"] = (tokens - self._tokens) / elapsed
        self._t, self._step, self._tokens = now, state.global_step, tokens


class CheckpointDigest(TrainerCallback):
    """Writes ``digest.json`` into each checkpoint once the Trainer has saved all of it (weights, optimizer,
    scheduler, RNG, trainer state), so resuming knows a checkpoint cut short by a kill, or corrupted since, and
    skips it for the last whole one (``components.training.sft.last_whole_checkpoint``)."""

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if folder.is_dir():
            write_folder_digest(folder, DIGEST)
