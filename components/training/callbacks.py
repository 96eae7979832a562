"""Trainer callbacks shared by the training stages."""

from __future__ import annotations

import time

from transformers import TrainerCallback


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
