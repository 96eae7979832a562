"""GRPO rewards: pure functions ``fn(completions, *, cfg, **columns) -> list[float | None]`` in one registry.

``REGISTRY`` holds MLLM-4D's ST-reward terms (``spatiotemporal``) and ``format_valid`` for logging;
``BoundReward`` hands a term to TRL; ``score`` evaluates ``RewardsConfig.terms`` on a batch through it. Two
pairwise signals live beside the registry because they compare completions, not a completion with its
record: Video-R1's temporal contrast (``temporal``) and ST-R1's reverse-thinking consistency
(``consistency``).
"""

from components.rewards.consistency import consistency_reward, reverse_agreement
from components.rewards.registry import (
    REGISTRY,
    BoundReward,
    RewardBatch,
    RewardFn,
    check_terms,
    get_reward,
    record_columns,
    score,
    weighted_total,
)
from components.rewards.spatiotemporal import completion_text
from components.rewards.temporal import temporal_applies, temporal_bonus

__all__ = [
    "REGISTRY",
    "BoundReward",
    "RewardBatch",
    "RewardFn",
    "check_terms",
    "completion_text",
    "consistency_reward",
    "get_reward",
    "record_columns",
    "reverse_agreement",
    "score",
    "temporal_applies",
    "temporal_bonus",
    "weighted_total",
]
