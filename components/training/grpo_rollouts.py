"""Reward terms that need rollouts of their own: Video-R1's temporal contrast and ST-R1's reverse consistency.

TRL's ``GRPOTrainer`` scores a batch by calling each reward function with the batch's completions and dataset
columns; a reward function may do anything, including sampling from the current policy. These two do, after
the trainer is built (``attach``), from the same weights that produced the batch (on-policy):

- ``TemporalContrastReward`` (Video-R1 T-GRPO): for each prompt of the batch, ``num_generations`` more
  completions with the record's frames in a shuffled order (timestamps left in order, so the time cue does
  not give the order back), scored with the accuracy term; ``rewards.temporal.temporal_bonus`` of the two
  groups. TRL weights it like the accuracy term, as Video-R1 adds it to the accuracy column.
- ``ConsistencyReward`` (ST-R1 reverse thinking, made a reward): for each prompt with a reverse question
  (``curation.reverse.reverse_record``: the clip played backwards), one greedy answer to the reverse
  question; each forward completion is scored by ``rewards.consistency.consistency_reward`` against it.
  Records without a reverse get None (left out of the term's mean). Weight ``rewards.consistency_weight``.

Departures: Video-R1 shuffles the frames of the whole group in one generate call with vLLM; here a
transformers ``generate`` per batch, so the extra rollouts double a CPU step's generation time. ST-R1 has no
consistency reward (its reverse questions are data); this term rewards agreement, which needs no label.
"""

from __future__ import annotations

import json

import numpy as np

from components.config import ModelConfig, RewardsConfig
from components.curation.reverse import reverse_record
from components.models.generation import generate_texts
from components.models.inputs import frame_indices
from components.rewards import BoundReward, record_columns
from components.rewards.consistency import consistency_reward
from components.rewards.temporal import temporal_bonus


def shuffled_frames(record: dict, cfg: ModelConfig, rng: np.random.Generator) -> dict:
    """A copy of ``record`` whose frames the model sees (``frame_indices``) come in another order; timestamps,
    question and answer unchanged. With one distinct sampled frame there is no order to shuffle: the record itself."""
    picked = frame_indices(len(record["frame_paths"]), cfg.num_frames)
    if len(set(picked)) < 2:
        return record
    order = list(picked)
    while order == list(picked):
        order = [int(i) for i in rng.permutation(picked)]
    paths = list(record["frame_paths"])
    for dst, src in zip(picked, order, strict=True):
        paths[dst] = record["frame_paths"][src]
    return {**record, "frame_paths": paths}


class _PolicyRollouts:
    """What both terms share: the trainer's current policy and processor (``attach``) and a sampler over records."""

    def __init__(self, model_cfg: ModelConfig, max_new_tokens: int, temperature: float) -> None:
        self.model_cfg, self.max_new_tokens, self.temperature = model_cfg, max_new_tokens, temperature
        self.trainer = None

    def attach(self, trainer) -> None:
        self.trainer = trainer

    def generate(self, records: list[dict], *, sample: bool) -> list[str]:
        if self.trainer is None:
            raise RuntimeError(f"{type(self).__name__} was not attached to its trainer (call attach(trainer))")
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        was_training = model.training
        model.eval()
        try:  # the processor pads on the left already (grpo_trainer sets it for TRL)
            return generate_texts(model, self.trainer.processing_class, self.model_cfg, records,
                                  max_new_tokens=self.max_new_tokens, temperature=self.temperature if sample else None)
        finally:
            model.train(was_training)


def _groups(record: list[str]) -> dict[str, list[int]]:
    """Batch positions of each distinct record (TRL repeats a prompt ``num_generations`` times)."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(record):
        groups.setdefault(r, []).append(i)
    return groups


class TemporalContrastReward(_PolicyRollouts):
    __name__ = "temporal_bonus"

    def __init__(self, rewards_cfg: RewardsConfig, model_cfg: ModelConfig, *, num_generations: int,
                 max_new_tokens: int, temperature: float, seed: int) -> None:
        super().__init__(model_cfg, max_new_tokens, temperature)
        self.cfg, self.num_generations = rewards_cfg, num_generations
        self.accuracy = BoundReward("accuracy", rewards_cfg)
        self.rng = np.random.default_rng(seed)

    def _accuracy(self, completions: list, records: list[dict]) -> list[float | None]:
        return self.accuracy(completions, **record_columns(records))

    def __call__(self, completions: list, record: list[str], **_trl_kwargs) -> list[float]:
        out = [0.0] * len(completions)
        for text, positions in _groups(record).items():
            rec = json.loads(text)
            shuffled = [shuffled_frames(rec, self.model_cfg, self.rng) for _ in range(self.num_generations)]
            shuffled_correct = self._accuracy(self.generate(shuffled, sample=True), shuffled)
            ordered_correct = self._accuracy([completions[i] for i in positions], [rec] * len(positions))
            for i, bonus in zip(positions, temporal_bonus(ordered_correct, shuffled_correct, self.cfg), strict=True):
                out[i] = bonus
        return out


class ConsistencyReward(_PolicyRollouts):
    __name__ = "consistency"

    def __call__(self, completions: list, record: list[str], **_trl_kwargs) -> list[float | None]:
        out: list[float | None] = [None] * len(completions)
        pairs = [(rec, reverse_record(rec), positions)
                 for rec, positions in ((json.loads(text), positions) for text, positions in _groups(record).items())]
        pairs = [p for p in pairs if p[1] is not None]
        if not pairs:
            return out
        reverse_answers = self.generate([rev for _, rev, _ in pairs], sample=False)
        for (rec, _, positions), answer in zip(pairs, reverse_answers, strict=True):
            values = consistency_reward([completions[i] for i in positions], [answer] * len(positions),
                                        [rec] * len(positions))
            for i, v in zip(positions, values, strict=True):
                out[i] = v
        return out


def rollout_rewards(rewards_cfg: RewardsConfig, model_cfg: ModelConfig, *, num_generations: int,
                    max_new_tokens: int, temperature: float, seed: int) -> dict[str, tuple[object, float]]:
    """The rollout terms the config turns on: ``{name: (reward function, weight)}``."""
    terms: dict[str, tuple[object, float]] = {}
    if rewards_cfg.temporal_contrast:
        weight = next((t.weight for t in rewards_cfg.terms if t.name == "accuracy"), 1.0)
        terms["temporal_bonus"] = (TemporalContrastReward(rewards_cfg, model_cfg, num_generations=num_generations,
                                                          max_new_tokens=max_new_tokens, temperature=temperature,
                                                          seed=seed), weight)
    if rewards_cfg.consistency_weight > 0:
        terms["consistency"] = (ConsistencyReward(model_cfg, max_new_tokens, temperature),
                                rewards_cfg.consistency_weight)
    return terms
