"""The language-prior gate on constructed curated sets: balanced records pass; a seeded shortcut (one answer
text always right, the right number always the one closest to the options' mean, the right option always
phrased unlike the others) fails, naming the category; a crashed gate leaves no passing report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.config import PriorConfig
from components.curation.schema import LETTERS
from components.io import write_jsonl
from components.quality.prior import (
    PriorGateFailed,
    cross_fitted_accuracy,
    evaluate_prior,
    fit_guessers,
    option_numbers,
    prepare,
    run_prior_gate,
)

LABELS = {
    "translational": ["it moves left", "it moves right", "it moves closer", "it moves away", "it does not move"],
    "rotational": ["it rotates clockwise", "it rotates counterclockwise", "it does not rotate"],
    "speed_acceleration": ["it speeds up", "it slows down", "it keeps a constant speed", "it stays still"],
    "ego_motion": ["the camera moves forward", "the camera moves backward", "the camera turns left",
                   "the camera turns right"],
    "spatial_relation": ["left of", "right of", "in front of", "behind"],
}
NUMERIC = {"displacement_path_length": "m", "object_camera_distance": "m", "dimension": "m"}
OBJECTS = ["red cube", "blue sphere", "green cylinder", "yellow cube", "white sphere", "black cylinder"]
CFG = PriorConfig()


def _record(rid: str, clip: str, category: str, question: str, options: list[str], truth: int) -> dict:
    return {"id": rid, "clip_id": clip, "category": category, "answer_type": "mc", "question": question,
            "options": options, "answer": LETTERS[truth], "answer_text": options[truth]}


def _labelled(rng: np.random.Generator, category: str, shortcut: str | None) -> tuple[list[str], int]:
    labels = LABELS[category]
    truth_text = shortcut if shortcut is not None else labels[rng.integers(len(labels))]
    others = [t for t in labels if t != truth_text]
    options = [truth_text, *rng.choice(others, size=min(3, len(others)), replace=False)]
    rng.shuffle(options)
    return list(options), options.index(truth_text)


def _ladder(rng: np.random.Generator, unit: str, truth_closest_to_mean: bool) -> tuple[list[str], int]:
    """Four values on a geometric ladder at a random ratio; the truth at a uniformly random rung (or, as a
    shortcut, at the rung closest to the options' mean)."""
    values = rng.uniform(0.5, 3.0) * rng.uniform(1.2, 1.8) ** np.arange(4)
    truth = int(rng.integers(4))
    if truth_closest_to_mean:
        truth = int(np.argmin(np.abs(values - values.mean())))
    return [f"{v:.2f} {unit}" for v in values], truth


def _false_positive(rng: np.random.Generator, phrasing_leak: bool) -> tuple[str, list[str], int]:
    """"Which object moves?": either "there is no ..." is right only when the asked object is absent (balanced),
    or, as a shortcut, the odd phrasing is always present and always right."""
    # object names that never repeat, so no answer text can be learned as such: only the phrasing can leak
    names = [f"object {n}" for n in rng.choice(10**6, size=4, replace=False)]
    asked = names[0]
    question = f"Which object moves together with the {asked}?"
    if phrasing_leak:
        options = [f"there is no {asked} in the video", *names[1:]]
        truth_text = options[0]
    else:
        options = names[:3] + [f"there is no {names[3]} in the video"]
        truth_text = options[int(rng.integers(4))]
    rng.shuffle(options)
    return question, options, options.index(truth_text)


def make_split(name: str, per_category: int, seed: int, shortcut: dict[str, str] | None = None) -> list[dict]:
    """``per_category`` mc records per category, 6 per clip; ``shortcut`` seeds one leak into one category."""
    rng, shortcut, records = np.random.default_rng(seed), shortcut or {}, []
    categories = [*LABELS, *NUMERIC, "false_positive"]
    for category in categories:
        for k in range(per_category):
            clip = f"{name}-{category}-{k // 6}"
            obj = OBJECTS[int(rng.integers(len(OBJECTS)))]
            if category in LABELS:
                options, truth = _labelled(rng, category, shortcut.get(category))
                question = f"How does the {obj} move during the video?"
            elif category in NUMERIC:
                options, truth = _ladder(rng, NUMERIC[category], shortcut.get(category) == "closest_mean")
                question = f"How far does the {obj} travel?"
            else:
                question, options, truth = _false_positive(rng, shortcut.get(category) == "phrasing")
            records.append(_record(f"{clip}-{k}", clip, category, question, options, truth))
    return records


def write_curated(root: Path, sft: list[dict], bench: list[dict]) -> Path:
    write_jsonl(root / "sft.jsonl", sft)
    write_jsonl(root / "bench.jsonl", bench)
    return root


def test_numbers_are_read_from_option_texts():
    assert option_numbers(["1.25 m", "-2 m", "3 objects"]) == [1.25, -2.0, 3.0]
    assert option_numbers(["1.25 m", "left"]) is None


def test_balanced_records_pass(tmp_path):
    report = run_prior_gate(write_curated(tmp_path, make_split("sft", 200, 0), make_split("bench", 160, 1)),
                            CFG, tmp_path / "reports")
    assert report.success, report.summary()
    assert abs(report.macro_gap) < CFG.max_macro_gap
    assert all(c.passed and c.allowed < 0.2 for c in report.categories if c.dynamic)
    saved = json.loads((tmp_path / "reports/prior_report.json").read_text())
    assert saved["success"] is True and "translational" in {c["category"] for c in saved["categories"]}
    assert "passed" in (tmp_path / "reports/prior_report.md").read_text()


@pytest.mark.parametrize(("shortcut", "guesser"), [
    ({"translational": "it does not move"}, "majority"),  # one answer text always right
    ({"displacement_path_length": "closest_mean"}, "closest_mean"),  # the number closest to the options' mean
    ({"false_positive": "phrasing"}, "logreg"),  # the odd phrasing always right (only the regression reads it)
], ids=["same-text", "closest-to-mean", "odd-phrasing"])
def test_a_seeded_shortcut_fails_the_gate_and_names_the_category(tmp_path, shortcut, guesser):
    sft, bench = make_split("sft", 200, 0, shortcut), make_split("bench", 160, 1, shortcut)
    with pytest.raises(PriorGateFailed) as failed:
        run_prior_gate(write_curated(tmp_path, sft, bench), CFG, tmp_path / "reports")
    category = next(iter(shortcut))
    report = failed.value.report
    result = next(c for c in report.categories if c.category == category)
    assert not result.passed and result.chosen == guesser and result.gap > 0.5, result
    assert category in str(failed.value)
    saved = json.loads((tmp_path / "reports/prior_report.json").read_text())  # the failing report is written
    assert saved["success"] is False and any(category in f for f in saved["failures"])


def test_small_categories_get_a_noise_allowance_and_still_catch_a_leak(tmp_path):
    """On 12 records a category (of four options) may beat random by 10 points + 2 x 12.5 by chance alone;
    a real shortcut (+75) is far beyond that, and so is the macro it moves."""
    leak = {"translational": "it does not move", "speed_acceleration": "it stays still"}
    sft, bench = make_split("sft", 200, 0, leak), make_split("bench", 12, 1, leak)
    report = evaluate_prior([prepare(r) for r in sft], [prepare(r) for r in bench], CFG, tmp_path)
    by_name = {c.category: c for c in report.categories}
    assert by_name["rotational"].allowed == pytest.approx(0.10 + 2 * (2 / 9) ** 0.5 / 12 ** 0.5)
    assert [c.category for c in report.categories if not c.passed] == ["speed_acceleration", "translational"]
    assert report.macro_gap > report.macro_allowed and any(f.startswith("dynamic macro") for f in report.failures)
    strict = evaluate_prior([prepare(r) for r in sft], [prepare(r) for r in bench], PriorConfig(noise_z=0), tmp_path)
    assert all(c.allowed == pytest.approx(0.10) for c in strict.categories)


def test_static_categories_are_reported_not_judged(tmp_path):
    leak = {"spatial_relation": "left of"}
    report = evaluate_prior([prepare(r) for r in make_split("sft", 200, 0, leak)],
                            [prepare(r) for r in make_split("bench", 160, 1, leak)], CFG, tmp_path)
    relation = next(c for c in report.categories if c.category == "spatial_relation")
    assert relation.gap > 0.5 and not relation.dynamic and relation.passed and report.success


def test_the_guesser_is_chosen_on_sft_not_on_the_bench():
    sft = make_split("sft", 120, 0, {"translational": "it does not move"})
    chosen = cross_fitted_accuracy([prepare(r) for r in sft], CFG)
    assert max(chosen["translational"], key=chosen["translational"].get) == "majority"
    assert chosen["translational"]["majority"] == pytest.approx(1.0)
    # numeric rules abstain on text options: they score chance there
    assert chosen["translational"]["closest_mean"] == pytest.approx(0.25, abs=1e-9)


def test_guessers_break_ties_uniformly():
    record = _record("r", "c", "rotational", "How does it turn?",
                     ["it rotates clockwise", "it rotates counterclockwise", "it does not rotate", "it wobbles"], 0)
    guess = fit_guessers([prepare(record), prepare({**record, "answer": "B"})], CFG)["majority"]
    assert sorted(guess(prepare(record))) == [0, 1]  # each was right once in "sft": a tie, scored as 1/2


def test_a_crashed_gate_leaves_no_passing_report(tmp_path):
    curated = write_curated(tmp_path / "curated", make_split("sft", 60, 0), make_split("bench", 60, 1))
    reports = tmp_path / "reports"
    run_prior_gate(curated, PriorConfig(max_macro_gap=1.0, max_category_gap=1.0), reports)
    assert json.loads((reports / "prior_report.json").read_text())["success"] is True
    (curated / "bench.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="bench.jsonl"):
        run_prior_gate(curated, PriorConfig(max_macro_gap=1.0, max_category_gap=1.0), reports)
    saved = json.loads((reports / "prior_report.json").read_text())
    assert saved["success"] is False and "bench.jsonl" in saved["error"]
    assert "FAILED" in (reports / "prior_report.md").read_text()
