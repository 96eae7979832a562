"""MRA, the random baseline, bootstrap intervals and score() aggregates on literal values."""

from __future__ import annotations

import numpy as np
import pytest

from components.evaluation.metrics import (
    bootstrap_ci,
    check_records,
    mean_relative_accuracy,
    random_baseline,
    random_metrics,
    score,
)


@pytest.mark.parametrize(
    ("pred", "truth", "expected"),
    [
        (1.0, 1.0, 1.0),  # exact
        (1.04, 1.0, 1.0),  # 4% < 5%: passes every threshold
        (1.05, 1.0, 0.9),  # 5% is not < 1 - 0.95
        (1.4, 1.0, 0.2),  # 40%: passes 0.50 (< 50%) and 0.55 (< 45%), not 0.60 (< 40%)
        (0.7, 1.0, 0.4),  # 30%: passes 0.50 .. 0.65, four of ten
        (2.0, 1.0, 0.0),  # 100% off
        (-2.2, -2.0, 0.8),  # 10% off a negative truth: 0.50 .. 0.85
        (None, 1.0, 0.0),
        (float("nan"), 1.0, 0.0),
        (0.0, 0.0, 1.0),  # a true 0 only accepts an exact 0
        (0.1, 0.0, 0.0),
    ],
)
def test_mean_relative_accuracy(pred: float | None, truth: float, expected: float) -> None:
    assert mean_relative_accuracy(pred, truth) == pytest.approx(expected)


def test_random_baseline() -> None:
    records = [
        {"answer_type": "mc", "options": ["a", "b", "c", "d"]},
        {"answer_type": "mc", "options": ["a", "b", "c", "d", "e"]},
        {"answer_type": "mc", "options": ["a", "b"]},
        {"answer_type": "numeric", "options": []},
    ]
    assert random_baseline(records) == pytest.approx((0.25 + 0.2 + 0.5 + 0.0) / 4)
    with pytest.raises(ValueError):
        random_baseline([])


def test_bootstrap_ci_contains_mean_and_narrows() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.random(40) < 0.6, rng.random(4000) < 0.6
    widths = []
    for values in (small, large):
        lo, hi = bootstrap_ci(values.astype(float))
        assert lo <= values.mean() <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 3  # width ~ 1/sqrt(n): 100x the data, ~10x narrower
    assert bootstrap_ci(small.astype(float)) == bootstrap_ci(small.astype(float))  # seeded
    assert bootstrap_ci(np.full(7, 0.5)) == (0.5, 0.5)
    with pytest.raises(ValueError):
        bootstrap_ci(np.array([]))


def _rec(
    rid: str, category: str, answer: str | float, variant: str = "name", options: list | None = None
) -> dict:
    numeric = not isinstance(answer, str)
    return {
        "id": rid,
        "category": category,
        "answer_type": "numeric" if numeric else "mc",
        "options": [] if numeric else (options or ["left", "right", "up", "down"]),
        "answer": answer,
        "prompt_variant": variant,
    }


RECORDS = [
    _rec("s1", "dimension", "A"),
    _rec("s2", "spatial_relation", "B", "region"),
    _rec("d1", "translational", "C"),
    _rec("d2", "translational", "D", "region"),
    _rec("d3", "object_camera_distance", 2.0),
    _rec("x1", "egocentric", "A"),  # an external benchmark's category: dynamic
]
OUTPUTS = [
    "<answer>A</answer>",  # right, valid
    "B",  # right, no tag
    "<answer>up</answer>",  # right (option text), valid
    "<answer>A</answer>",  # wrong, valid
    "<answer>2.8</answer>",  # 40% off: MRA 0.2, valid
    "no idea",  # wrong
]


def test_score_aggregates() -> None:
    got = score(RECORDS, OUTPUTS)
    scores = [p["score"] for p in got["per_record"]]
    assert scores == pytest.approx([1, 1, 1, 0, 0.2, 0])
    assert [p["correct"] for p in got["per_record"]] == [True, True, True, False, False, False]
    assert got["overall"]["value"] == pytest.approx(3.2 / 6) and got["overall"]["n"] == 6
    assert got["static"] == {"value": 1.0, "n": 2, "ci": [1.0, 1.0]}
    assert got["dynamic"]["value"] == pytest.approx(1.2 / 4)
    assert got["mc_accuracy"]["value"] == pytest.approx(3 / 5) and got["mc_accuracy"]["n"] == 5
    assert got["numeric_mra"]["value"] == pytest.approx(0.2) and got["numeric_mra"]["n"] == 1
    assert got["format_valid"]["value"] == pytest.approx(4 / 6)
    cats = got["per_category"]
    assert list(cats) == [
        "dimension",
        "spatial_relation",
        "translational",
        "object_camera_distance",
        "egocentric",
    ]  # static first, schema order, then others
    assert cats["translational"]["value"] == 0.5 and cats["translational"]["n"] == 2
    variants = got["per_prompt_variant"]
    assert variants["name"]["value"] == pytest.approx(2.2 / 4) and variants["region"]["value"] == 0.5
    lo, hi = got["overall"]["ci"]
    assert lo <= got["overall"]["value"] <= hi


def test_random_metrics_shape() -> None:
    rand = random_metrics(RECORDS)
    assert rand["overall"]["value"] == pytest.approx(5 * 0.25 / 6) and rand["overall"]["ci"] is None
    assert rand["numeric_mra"]["value"] == 0.0 and rand["format_valid"] is None
    assert rand["per_category"]["dimension"]["value"] == 0.25


def test_score_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="6 records but 5 outputs"):
        score(RECORDS, OUTPUTS[:5])
    bad = [{"id": "x", "category": "dimension", "answer_type": "mc", "options": []}]
    with pytest.raises(ValueError, match="x: missing answer, prompt_variant"):
        check_records(bad)
