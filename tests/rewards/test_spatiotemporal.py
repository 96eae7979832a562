"""The ST-reward terms on literal completions: every branch of bad input gives a defined value."""

from __future__ import annotations

import math

import pytest

from components.config import FormatRewardConfig, RewardsConfig
from components.rewards.spatiotemporal import (
    accuracy_reward,
    camera_reward,
    completion_text,
    format_reward,
    format_valid_reward,
    has_cot_tags,
    object_reward,
)

CFG = RewardsConfig()
OPTIONS = ["to the left", "to the right", "toward the camera", "away from the camera"]
SOLUTION = {"answer": "B", "answer_text": "to the right", "camera_center": [[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
            "object_center": [[1.0, 0.0, 5.0], [2.0, 0.0, 5.0]]}
CAMERA_ONLY = {**SOLUTION, "object_center": None}
MC = {"answer_type": ["mc"], "options": [OPTIONS], "answer": ["B"], "solution": [SOLUTION]}
NUMERIC = {"answer_type": ["numeric"], "options": [[]], "answer": [4.0], "solution": [SOLUTION]}


def cot(camera: str = "Camera Center: [0.00, 0.00, 0.00]", camera_final: str = "Camera Center: [0.00, 0.00, 1.00]",
        obj: str = "; Object Center: [1.00, 0.00, 5.00]", obj_final: str = "; Object Center: [2.00, 0.00, 5.00]",
        answer: str = "<answer>B</answer>") -> str:
    return (f"<thinking>\nInitial frame: {camera}{obj}\nFinal frame: {camera_final}{obj_final}\n"
            f"Computation: dx = +1.00 m, so it moves to the right.\n</thinking>\n{answer}")


GOOD = cot()
LONG_THINKING = "the object slides to the right of the camera"


def one(fn, completion, columns=MC, cfg=CFG):
    return fn([completion], cfg=cfg, **columns)[0]


# --------------------------------------------------------------------------------------------- format


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (GOOD, 1.0),
        ("", 0.0),
        (None, 0.0),
        ("B", 0.0),  # no tags at all
        (f"<thinking>{LONG_THINKING}</thinking>", 0.1),  # thinking only: length, no tags, no centers
        (f"<thinking>{LONG_THINKING}</thinking><answer>B</answer>", 0.6),  # no Spatial State
        (GOOD.replace("</thinking>", ""), 0.4),  # <thinking> never closed: centers only
        (GOOD + "<answer>A</answer>", 0.5),  # two <answer>s: no tag credit
        (GOOD.replace("<answer>B</answer>", ""), 0.5),  # no answer block
        (f"<answer>B</answer><thinking>{LONG_THINKING}</thinking>", 0.1),  # answer before thinking
        (f"<thinking>x</thinking><thinking>{LONG_THINKING}</thinking><answer>B</answer>", 0.0),  # 2 thinkings
        ("<thinking></thinking><answer>B</answer>", 0.5),  # empty thinking earns no length credit
        ("<thinking>" + "x" * 20 + "</thinking><answer>B</answer>", 0.5),  # 20 chars: not > 20
        ("<thinking>" + "x" * 21 + "</thinking><answer>B</answer>", 0.6),
        ("preamble " + GOOD, 0.5),  # text outside the ST-CoT: not the format
        (cot(camera="Camera Center: [a, 1, 2]", camera_final="Camera Center: [b, 1, 2]"), 0.6),  # not numbers
        (cot(camera="Camera Center: [1, 2]", camera_final="Camera Center: [1, 2]"), 0.6),  # two numbers
        (cot(obj="", obj_final=""), 0.6),  # no Object Center where the solution has one
        (cot(camera="Camera Center: [a, 1, 2]"), 1.0),  # one well-formed Camera Center is stated
    ],
)
def test_format(completion, expected: float) -> None:
    assert one(format_reward, completion) == pytest.approx(expected)


def test_format_camera_only_question_needs_no_object_center() -> None:
    camera_only = cot(obj="", obj_final="")
    assert one(format_reward, camera_only, {"solution": [CAMERA_ONLY]}) == pytest.approx(1.0)
    # Without a solution column both centers are needed (the release's rule).
    assert format_reward([camera_only], cfg=CFG)[0] == pytest.approx(0.6)
    assert format_reward([GOOD], cfg=CFG)[0] == pytest.approx(1.0)


def test_format_weights_come_from_the_config() -> None:
    cfg = RewardsConfig(format=FormatRewardConfig(tags=1.0, centers=0.0, length=0.0, min_thinking_chars=5))
    assert one(format_reward, "<thinking>ab</thinking><answer>B</answer>", cfg=cfg) == 1.0
    assert one(format_reward, GOOD + "<answer>B</answer>", cfg=cfg) == 0.0


@pytest.mark.parametrize(
    ("text", "ok"),
    [(GOOD, True), ("\n " + GOOD + " \n", True), (GOOD + "x", False), ("<thinking>a</thinking>", False),
     ("<thinking>a<thinking>b</thinking><answer>B</answer>", False), ("", False)],
)
def test_has_cot_tags(text: str, ok: bool) -> None:
    assert has_cot_tags(text) is ok


# ------------------------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (GOOD, 1.0),
        ("<answer>to the right</answer>", 1.0),  # the option text, as model.answer_format="text" answers
        ("<answer>A</answer>", 0.0),
        ("<answer>E</answer>", 0.0),  # beyond the options
        ("B", 1.0),  # a lone letter, as the evaluation reads it
        ("", 0.0),
        (None, 0.0),
        ("<answer></answer>", 0.0),
        ("<answer>left or right</answer>", 0.0),  # ambiguous
    ],
)
def test_accuracy_mc(completion, expected: float) -> None:
    assert one(accuracy_reward, completion) == expected


@pytest.mark.parametrize(
    ("completion", "mra", "exact"),
    [
        ("<answer>4.0</answer>", 1.0, 1.0),
        ("<answer>4</answer>", 1.0, 1.0),
        ("<answer>3.0</answer>", 0.5, 0.0),  # 25% off: MRA 5/10
        ("<answer>4.01</answer>", 1.0, 0.0),
        ("<answer>forty</answer>", 0.0, 0.0),
        ("", 0.0, 0.0),
        (None, 0.0, 0.0),
    ],
)
def test_accuracy_numeric(completion, mra: float, exact: float) -> None:
    assert one(accuracy_reward, completion, NUMERIC) == pytest.approx(mra)
    assert one(accuracy_reward, completion, NUMERIC, RewardsConfig(numeric_accuracy="exact")) == exact


def test_accuracy_reads_a_numeric_answer_given_as_text() -> None:
    assert one(accuracy_reward, "<answer>4.0</answer>", {**NUMERIC, "answer": ["4.00"]}) == 1.0


def test_accuracy_needs_its_columns() -> None:
    with pytest.raises(ValueError, match="'answer_type'"):
        accuracy_reward([GOOD], cfg=CFG, options=[OPTIONS], answer=["B"])
    with pytest.raises(ValueError, match="2 values for 1 completions"):
        accuracy_reward([GOOD], cfg=CFG, **{**MC, "answer": ["B", "C"]})
    with pytest.raises(ValueError, match="answer_type"):
        accuracy_reward([GOOD], cfg=CFG, **{**MC, "answer_type": ["open"]})


@pytest.mark.parametrize(
    ("completion", "expected"),
    [(GOOD, 1.0), ("<answer>to the right</answer>", 1.0), ("<answer>hmm</answer>", 0.0), ("B", 0.0), (None, 0.0)],
)
def test_format_valid(completion, expected: float) -> None:
    assert one(format_valid_reward, completion) == expected


# ------------------------------------------------------------------------------------ camera and object


@pytest.mark.parametrize(
    ("completion", "camera", "obj"),
    [
        (GOOD, 1.0, 1.0),
        (cot(camera_final="Camera Center: [0.00, 0.00, 2.00]"), math.exp(-0.5), 1.0),  # 0 and 1 m off
        (cot(obj_final="; Object Center: [2.00, 3.00, 9.00]"), 1.0, math.exp(-2.5)),
        ("", 0.0, 0.0),
        (None, 0.0, 0.0),
        ("<answer>B</answer>", 0.0, 0.0),  # states no centers
        (cot(camera_final="", obj_final=""), 0.0, 0.0),  # one center each for two in the solution
        (GOOD + " Camera Center: [0, 0, 1] Object Center: [2, 0, 5]", 0.0, 0.0),  # three of each
        (cot(camera="Camera Center: [a, 1, 2]", obj="; Object Center: [x, y, z]"), 0.0, 0.0),  # not numbers
        (cot(camera="Camera Center: [0, 0]", obj="; Object Center: [1, 0, 5, 7]"), 0.0, 0.0),  # wrong length
        (cot(camera="Camera Center: [nan, 0, 0]", obj="; Object Center: [inf, 0, 5]"), 0.0, 0.0),
        (cot(camera="Camera Center: []", obj="; Object Center: [1,, 5]"), 0.0, 0.0),
        (cot(camera="Camera Center: [[0, 0, 0]]"), 0.0, 1.0),  # nested brackets are malformed
        (cot(camera="Camera Center: [+0.0, 0e0, .0]"), 1.0, 1.0),  # numbers as float reads them
        (cot(camera="Camera Center: [null]"), 0.0, 1.0),  # a null prediction is dropped: one left for two
        (cot().replace("<thinking>", "<thinking>Camera Center: 0, 0, 0 "), 1.0, 1.0),  # no brackets: not a center
    ],
)
def test_centers(completion, camera: float, obj: float) -> None:
    assert one(camera_reward, completion) == pytest.approx(camera)
    assert one(object_reward, completion) == pytest.approx(obj)


@pytest.mark.parametrize(
    ("solution", "camera", "obj"),
    [
        (CAMERA_ONLY, 1.0, None),  # a camera-only question: the object term is unscorable
        ({"answer": "B"}, None, None),  # no centers at all
        (None, None, None),
        ("not a dict", None, None),
        ({**SOLUTION, "camera_center": [None, None], "object_center": []}, None, None),  # nothing left
        ({**SOLUTION, "camera_center": [[0, 0], [0, 0, 1]], "object_center": [["a", 0, 5], [2, 0, 5]]}, None, None),
        ({**SOLUTION, "camera_center": [[0, 0, float("nan")], [0, 0, 1]]}, None, 1.0),
        ({**SOLUTION, "camera_center": "[[0, 0, 0]]"}, None, 1.0),
        ({**SOLUTION, "camera_center": [None, [0.0, 0.0, 1.0]]}, 0.0, 1.0),  # two stated for one known
    ],
)
def test_centers_unscorable_or_null_solutions(solution, camera, obj) -> None:
    assert one(camera_reward, GOOD, {"solution": [solution]}) == (camera if camera is None else pytest.approx(camera))
    assert one(object_reward, GOOD, {"solution": [solution]}) == (obj if obj is None else pytest.approx(obj))


def test_null_entries_drop_on_both_sides() -> None:
    solution = {**SOLUTION, "camera_center": [None, [0.0, 0.0, 1.0]]}
    text = cot(camera="Camera Center: [null]")
    assert one(camera_reward, text, {"solution": [solution]}) == pytest.approx(1.0)
    assert one(camera_reward, cot(camera="Camera Center: [None]"), {"solution": [solution]}) == pytest.approx(1.0)


def test_centers_need_the_solution_column() -> None:
    for fn in (camera_reward, object_reward):
        with pytest.raises(ValueError, match="solution"):
            fn([GOOD], cfg=CFG)


# ------------------------------------------------------------------------------------------ completions


@pytest.mark.parametrize(
    ("completion", "text"),
    [
        ("abc", "abc"),
        (None, ""),
        (42, ""),
        (b"<answer>B</answer>", ""),
        ([{"role": "assistant", "content": "<answer>B</answer>"}], "<answer>B</answer>"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "image"}, {"text": "b"}]}], "ab"),
        ([{"role": "assistant"}, "junk", {"content": 3}], ""),
        ([], ""),
    ],
)
def test_completion_text(completion, text: str) -> None:
    assert completion_text(completion) == text


def test_conversational_completion_scores_like_its_text() -> None:
    messages = [{"role": "assistant", "content": GOOD}]
    for fn in (format_reward, accuracy_reward, camera_reward, object_reward, format_valid_reward):
        assert one(fn, messages) == one(fn, GOOD)


def test_unknown_columns_are_ignored() -> None:
    extra = {**MC, "prompts": ["p"], "completion_ids": [[1, 2]], "trainer_state": None, "id": ["q"]}
    for fn in (format_reward, accuracy_reward, camera_reward, object_reward, format_valid_reward):
        assert one(fn, GOOD, extra) == one(fn, GOOD)
