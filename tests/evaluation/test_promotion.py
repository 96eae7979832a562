"""The promotion gate's decision rules (components.evaluation.promotion) on prediction rows built here."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import PromoteConfig
from components.evaluation.promotion import decide

CATEGORIES = ("translational", "rotational", "spatial_relation")
CFG = PromoteConfig(require_learning=False, bootstrap_samples=500)


def rows(p_correct: dict[str, float], *, clips: int = 40, per_clip: int = 3, seed: int = 0,
         format_valid: float = 1.0) -> list[dict]:
    """Bench rows for ``clips`` clips, ``per_clip`` mc records per category each, correct with the given
    probability per category (a fixed draw per seed, so two systems differ record by record)."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(clips):
        for category in CATEGORIES:
            for k in range(per_clip):
                correct = bool(rng.random() < p_correct[category])
                out.append({"id": f"clip{c}-{category}-{k}", "clip_id": f"clip{c}", "category": category,
                            "answer_type": "mc", "answer": "A", "score": float(correct), "correct": correct,
                            "extracted": {"format_valid": bool(rng.random() < format_valid)}})
    return out


GOOD = {"translational": 0.9, "rotational": 0.9, "spatial_relation": 0.6}
CHANCE = {"translational": 0.25, "rotational": 0.25, "spatial_relation": 0.6}


def test_first_model_becomes_champion_when_it_answers_in_format() -> None:
    d = decide(rows(CHANCE), None, CFG)
    assert d.promote and d.champion is None and d.improvement is None
    assert "no champion" in d.reasons[0]
    assert d.challenger == pytest.approx(np.mean([0.25, 0.25]), abs=0.1)  # dynamic mc macro: 2 categories


def test_clear_improvement_is_promoted_with_a_paired_interval() -> None:
    d = decide(rows(GOOD, seed=1), rows(CHANCE, seed=2), CFG)
    assert d.promote, d.reasons
    assert d.improvement["ci"][0] > 0.4 and d.improvement["value"] == pytest.approx(0.65, abs=0.1)
    assert set(d.categories) == set(CATEGORIES)
    assert "| translational |" in d.markdown("version 2", "version 1")


def test_no_improvement_is_rejected() -> None:
    d = decide(rows(CHANCE, seed=3), rows(CHANCE, seed=4), CFG)
    assert not d.promote
    assert any("lower bound" in r for r in d.reasons)


def test_a_margin_must_be_cleared() -> None:
    # a real but small gain (+15 points) passes margin 0 and fails a 30-point margin
    better = {"translational": 0.55, "rotational": 0.55, "spatial_relation": 0.6}
    champion = {"translational": 0.4, "rotational": 0.4, "spatial_relation": 0.6}
    assert decide(rows(better, clips=200, seed=5), rows(champion, clips=200, seed=6), CFG).promote
    strict = PromoteConfig(require_learning=False, bootstrap_samples=500, margin=0.3)
    assert not decide(rows(better, clips=200, seed=5), rows(champion, clips=200, seed=6), strict).promote


def test_a_regressing_category_blocks_promotion() -> None:
    # better on the metric (dynamic categories), but the static category collapses
    worse_static = {**GOOD, "spatial_relation": 0.0}
    d = decide(rows(worse_static, seed=7), rows(CHANCE, seed=8), CFG)
    assert not d.promote
    assert any(r.startswith("spatial_relation regresses") for r in d.reasons)
    assert d.categories["spatial_relation"]["delta"] < -0.5


def test_noise_within_tolerance_is_not_a_regression() -> None:
    # the same model twice (different draws): no category differs beyond noise
    d = decide(rows(GOOD, seed=9), rows(GOOD, seed=10), PromoteConfig(require_learning=False, margin=-1.0,
                                                                   bootstrap_samples=500))
    assert d.promote, d.reasons


def test_format_and_learning_checks() -> None:
    d = decide(rows(GOOD, format_valid=0.5, seed=11), None, CFG)
    assert not d.promote and "format valid" in d.reasons[0]
    learning = PromoteConfig(bootstrap_samples=500)  # require_learning on
    assert not decide(rows(GOOD), None, learning).promote  # no headline at all
    weak = {"value": 0.02, "ci": [-0.03, 0.07], "stronger_control": "shuffled"}
    d = decide(rows(GOOD), None, learning, headline=weak)
    assert not d.promote and "does not beat its stronger control (shuffled)" in d.reasons[0]
    assert decide(rows(GOOD), None, learning, headline={**weak, "ci": [0.01, 0.07]}).promote


def test_different_records_are_refused() -> None:
    champion = rows(CHANCE)
    champion[0] = {**champion[0], "answer": "B"}
    with pytest.raises(ValueError, match="different bench records"):
        decide(rows(GOOD), champion, CFG)
    with pytest.raises(ValueError, match="different bench records"):
        decide(rows(GOOD), rows(CHANCE, clips=39), CFG)


def test_overall_metric() -> None:
    cfg = PromoteConfig(require_learning=False, bootstrap_samples=500, metric="overall")
    d = decide(rows(GOOD, seed=12), rows(CHANCE, seed=13), cfg)
    assert d.metric == "overall" and d.promote
    assert d.challenger == pytest.approx(np.mean([0.9, 0.9, 0.6]), abs=0.07)
