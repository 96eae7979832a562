"""Answer extraction and correctness on literal completions."""

from __future__ import annotations

import pytest

from components.evaluation.answers import extract_answer, is_correct

MC = {
    "id": "q1",
    "answer_type": "mc",
    "options": ["left", "turning left", "right", "not moving"],
    "answer": "C",
    "answer_text": "right",
}
NUM = {"id": "q2", "answer_type": "numeric", "options": [], "answer": 3.0, "answer_text": "3.0"}


@pytest.mark.parametrize(
    ("text", "letter", "valid", "method"),
    [
        ("<thinking>maybe (A)?</thinking><answer>B</answer>", "B", True, "tag:letter"),
        ("<answer>A</answer> on second thought <answer>C</answer>", "C", True, "tag:letter"),
        ("<answer>(D) not moving</answer>", "D", True, "tag:letter"),
        ("<answer>Turning left.</answer>", "B", True, "tag:option_text"),
        ("<answer>it is turning left</answer>", "B", True, "tag:option_text"),  # covers "left"
        ("<answer>hmm</answer>\nFinal answer: C", "C", False, "phrase:letter"),
        ("Answer: B", "B", False, "phrase:letter"),
        ("The answer is (C) right.", "C", False, "phrase:letter"),
        ("the answer is right", "C", False, "phrase:option_text"),
        ("B", "B", False, "letter"),
        ("(D)", "D", False, "letter"),
        ("B.", "B", False, "letter"),
        ("A. left, clearly", "A", False, "letter"),
        ("Right.", "C", False, "option_text"),
        ("A car moves to the right", "C", False, "option_text"),  # "A" is an article, not a letter
        ("E", None, False, "none"),  # beyond the four options
        ("left or right, hard to say", None, False, "none"),  # ambiguous
        ("I don't know", None, False, "none"),
        ("", None, False, "none"),
        ("<answer></answer>", None, False, "none"),
    ],
)
def test_mc_extraction_precedence(text: str, letter: str | None, valid: bool, method: str) -> None:
    got = extract_answer(text, MC)
    assert (got.letter, got.format_valid, got.method) == (letter, valid, method)
    assert got.value is None


@pytest.mark.parametrize(
    ("text", "value", "valid", "method"),
    [
        ("<answer>3.2</answer>", 3.2, True, "tag:number"),
        ("about 3.2 m", 3.2, False, "number"),
        ("Camera Center: [1, 2, 3] <answer>-1.5e1 m</answer>", -15.0, True, "tag:number"),
        ("The answer is 4 metres, not 7", 4.0, False, "phrase:number"),
        ("<answer>far</answer> roughly .5", 0.5, False, "number"),
        ("no idea", None, False, "none"),
    ],
)
def test_numeric_extraction(text: str, value: float | None, valid: bool, method: str) -> None:
    got = extract_answer(text, NUM)
    assert (got.value, got.format_valid, got.method, got.letter) == (value, valid, method, None)


def test_is_correct_mc() -> None:
    assert is_correct(extract_answer("<answer>C</answer>", MC), MC)
    assert is_correct(extract_answer("right", MC), MC)
    assert not is_correct(extract_answer("<answer>A</answer>", MC), MC)
    assert not is_correct(extract_answer("garbage", MC), MC)
    # The answer given as option text maps back to its letter.
    as_text = MC | {"answer": "right"}
    assert is_correct(extract_answer("C", as_text), as_text)
    # A duplicated option (VLM4D validation_633): either letter carries the right text.
    dup = MC | {"options": ["not sure", "not moving", "away", "away"], "answer": "C", "answer_text": "away"}
    assert is_correct(extract_answer("D", dup), dup) and is_correct(extract_answer("C", dup), dup)
    assert not is_correct(extract_answer("B", dup), dup)


def test_is_correct_numeric_uses_mra() -> None:
    # 3.2 vs 3.0: 6.7% off -> passes 9 of 10 thresholds (MRA 0.9); 2.0 vs 3.0: 33% off -> MRA 0.4.
    assert is_correct(extract_answer("<answer>3.2</answer>", NUM), NUM)
    assert not is_correct(extract_answer("<answer>2.0</answer>", NUM), NUM)
    assert not is_correct(extract_answer("none", NUM), NUM)
