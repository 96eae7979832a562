"""Curation without text shortcuts: options from the label set, balanced answer classes, honest false
positives, numeric options that do not give the truth away (issue: data without text shortcuts)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from components.curation.assemble import QUOTA_SLACK, Labelled, balance_answers
from components.curation.questions import ABSENT, LABEL_SETS, QuestionSpec, answer_class
from components.curation.schema import SPLITS
from components.io import read_jsonl


@pytest.fixture(scope="module")
def records(smoke_curated) -> dict[str, list[dict]]:
    out, _ = smoke_curated
    return {s: read_jsonl(out / f"{s}.jsonl") for s in SPLITS}


def _questions(rows: list[dict]) -> list[dict]:
    return list({r["qid"]: r for r in rows if r["answer_type"] == "mc"}.values())


def test_categorical_options_are_answers_that_can_be_true(records):
    for rows in records.values():
        for r in _questions(rows):
            classes = [answer_class(r["category"], o) for o in r["options"]]
            if answer_class(r["category"], r["answer_text"]) in LABEL_SETS.get(r["category"], ()):
                assert set(classes) <= set(LABEL_SETS[r["category"]]), (r["id"], r["options"])


def test_answer_classes_are_balanced_per_split_and_category(records):
    for split, rows in records.items():
        counts: dict[str, Counter] = defaultdict(Counter)
        for r in _questions(rows):
            cls = answer_class(r["category"], r["answer_text"])
            if cls in LABEL_SETS.get(r["category"], ()):
                counts[r["category"]][cls] += 1
        for category, c in counts.items():
            low = min(c.values())
            assert max(c.values()) <= int(low * (1 + QUOTA_SLACK)), (split, category, c)


def test_false_positive_absent_answer_only_when_the_object_is_absent(records, smoke_scenes):
    labels = {}
    for meta in smoke_scenes.glob("*/meta.json"):
        m = json.loads(meta.read_text())
        labels[m["clip_id"]] = {o["label"] for o in m["objects"]}
    fp = [r for rows in records.values() for r in _questions(rows) if r["category"] == "false_positive"]
    assert fp
    kinds = Counter()
    for r in fp:
        name = r["question"].split("does the ", 1)[1].split(" move", 1)[0]
        absent = answer_class("false_positive", r["answer_text"]) == ABSENT
        assert absent == (name not in labels[r["clip_id"]]), r["id"]
        kinds[absent] += 1
    assert kinds[True] and kinds[False], kinds  # asked about objects that are and are not there


def _labelled(split: str, correct: str, i: int) -> Labelled:
    spec = QuestionSpec(f"rotational:yaw:{i}", "rotational", "yaw", (i,), "q", None, "choice", correct,
                        LABEL_SETS["rotational"])

    class Clip:
        clip_id = f"c{i}"

    return Labelled(Clip(), split, spec, None, "estimated", False)


def test_balance_fills_equal_quotas_and_keeps_the_rest():
    texts = LABEL_SETS["rotational"]
    items = [_labelled("sft", texts[2], i) for i in range(30)]  # "it does not rotate": 30
    items += [_labelled("sft", texts[0], 100 + i) for i in range(10)]
    items += [_labelled("sft", texts[1], 200 + i) for i in range(12)]
    kept = balance_answers(items, seed=0)
    counts = Counter(it.label.correct for it in kept)
    assert counts == {texts[0]: 10, texts[1]: 10, texts[2]: 10}
    assert balance_answers(items, seed=0) == kept  # deterministic


def test_absent_labels_come_from_the_same_vocabulary_as_present_ones():
    from components.curation.questions import COLORS, absent_label
    from components.scenes.spec import PALETTE, SHAPES

    rng = np.random.default_rng(0)
    drawn = Counter(absent_label({"red cube"}, rng).split()[0] for _ in range(2000))
    assert set(drawn) == set(COLORS) == set(PALETTE) and all(absent_label({"red cube"}, rng) != "red cube"
                                                             for _ in range(50))
    assert {absent_label(set(), rng).split()[1] for _ in range(200)} == set(SHAPES)


def test_a_kind_missing_an_answer_class_is_not_asked():
    texts = LABEL_SETS["rotational"]
    items = [_labelled("sft", texts[0], i) for i in range(5)] + [_labelled("sft", texts[1], 10 + i) for i in range(5)]
    # never "it does not rotate": a guesser that ruled it out would beat random without the video
    assert balance_answers(items, seed=0) == []
