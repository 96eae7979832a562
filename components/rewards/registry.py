"""One explicit registry of reward terms, name lookup, and the weighted ST-reward of a batch.

``RewardsConfig.terms`` names terms of ``REGISTRY`` with weights; ``score`` evaluates them on completions
and their records and returns every term's values and the weighted total.

Unscorable terms (None) count as 0 in the total, which is what TRL's ``GRPOTrainer`` does with the same
functions passed as ``reward_funcs`` + ``reward_weights`` (``nansum``), so the total logged here is the
reward GRPO trains on. Why 0 and not renormalising the weights over the scorable terms: a term is None
only for a property of the *record* (camera-only questions have no object centers), never of the
completion, so within a GRPO group every completion loses the same term; a constant 0 leaves the
group-relative advantage unchanged, whereas renormalising would rescale the group's rewards by
1 / (1 - w), which std-scaled losses undo anyway and unscaled ones (``dr_grpo``) would turn into larger
updates for camera-only prompts, for no reason. A completion whose terms are *all* None has total None
(TRL marks it NaN and gives it no advantage). ``RewardBatch.n_none`` counts the Nones per term, so an
unscorable share is visible rather than silently averaged away.

``BoundReward`` is the one binder: GRPO hands TRL these objects (wrapped to record what they saw), and
``score`` evaluates a batch offline through the same objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from components.config import RewardsConfig
from components.rewards.spatiotemporal import (
    accuracy_reward,
    camera_reward,
    format_reward,
    format_valid_reward,
    object_reward,
)


class RewardFn(Protocol):
    def __call__(self, completions: list, *, cfg: RewardsConfig, **columns: Any) -> list[float | None]: ...


REGISTRY: dict[str, RewardFn] = {
    "format": format_reward,
    "accuracy": accuracy_reward,
    "camera": camera_reward,
    "object": object_reward,
    "format_valid": format_valid_reward,
}


def get_reward(name: str) -> RewardFn:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown reward {name!r}; valid rewards: {', '.join(sorted(REGISTRY))}") from None


def check_terms(cfg: RewardsConfig) -> None:
    """Every ``cfg.terms`` name is registered and appears once (fail before any rollout is generated)."""
    names = [t.name for t in cfg.terms]
    for name in names:
        get_reward(name)
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"rewards.terms names {duplicates} more than once; give each term one weight")


@dataclass(frozen=True)
class BoundReward:
    """``REGISTRY[name]`` with ``cfg`` bound: the one way a term becomes a TRL reward function.

    TRL calls it with every dataset column as a list; GRPO's dataset holds each record as one JSON string
    (``record``), decoded here into the record fields the terms read (``solution``, ``options`` ...); record
    fields passed as columns directly work too. A module-level class rather than a closure so that it pickles
    (TRL may ship rewards to workers), with ``__name__`` set so that TRL logs it as ``rewards/<name>``.
    """

    name: str
    cfg: RewardsConfig

    def __post_init__(self) -> None:
        get_reward(self.name)
        object.__setattr__(self, "__name__", self.name)

    def __call__(self, completions: list, record: list[str] | None = None, **columns: Any) -> list[float | None]:
        if record is not None:
            columns = record_columns([json.loads(r) for r in record])
        return get_reward(self.name)(completions, cfg=self.cfg, **columns)


def record_columns(records: list[dict]) -> dict[str, list]:
    """Records as TRL passes columns: one list per field, None where a record lacks the field."""
    keys = {k for r in records for k in r} - {"completions", "cfg"}  # no term reads a field named like its parameters
    return {k: [r.get(k) for r in records] for k in keys}


def weighted_total(terms: dict[str, list[float | None]], weights: dict[str, float]) -> list[float | None]:
    """Per completion, the sum of weight x value over its scorable terms; None when none is scorable."""
    n = len(next(iter(terms.values()), []))
    total: list[float | None] = []
    for i in range(n):
        scorable = [weights[name] * values[i] for name, values in terms.items() if values[i] is not None]
        total.append(sum(scorable) if scorable else None)
    return total


@dataclass(frozen=True)
class RewardBatch:
    terms: dict[str, list[float | None]]  # term name -> unweighted value per completion (None: unscorable)
    weights: dict[str, float]
    total: list[float | None]  # sum of weight x value over the scorable terms; None when none is scorable
    n_none: dict[str, int]  # term name -> completions for which the term was unscorable

    def summary(self) -> dict[str, float | int | None]:
        """Means over the scorable values (None when there are none), and the None counts, for logging."""
        out: dict[str, float | int | None] = {"reward": _mean(self.total)}
        for name, values in self.terms.items():
            out[f"rewards/{name}/mean"] = _mean(values)
            out[f"rewards/{name}/n_none"] = self.n_none[name]
        return out


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def score(completions: list, records: list[dict], cfg: RewardsConfig) -> RewardBatch:
    """Every ``cfg.terms`` term on ``completions[i]`` against ``records[i]`` through the functions GRPO trains
    with (``BoundReward``), and their weighted total: the reward of a batch, offline.

    Never raises on a completion (any string, None, TRL messages); a record missing a column a term needs,
    or a length mismatch, is a wiring error and raises ``ValueError``.
    """
    check_terms(cfg)
    if len(completions) != len(records):
        raise ValueError(f"{len(completions)} completions for {len(records)} records")
    columns = record_columns(records)
    terms = {t.name: (BoundReward(t.name, cfg)(completions, **columns) if records else []) for t in cfg.terms}
    weights = {t.name: t.weight for t in cfg.terms}
    n_none = {n: sum(v is None for v in values) for n, values in terms.items()}
    return RewardBatch(terms, weights, weighted_total(terms, weights), n_none)
