"""ST-R1 reverse-thinking agreement on literal answer pairs and completions."""

from __future__ import annotations

import pytest

from components.rewards import consistency_reward, reverse_agreement


@pytest.mark.parametrize(
    ("category", "kind", "forward", "reverse", "expected"),
    [
        ("translational", "direction", "to the left", "to the right", 1.0),
        ("translational", "direction", "to the left", "to the left", 0.0),
        ("translational", "direction", "toward the camera", "away from the camera", 1.0),
        ("translational", "direction", "it does not move", "it does not move", 1.0),
        ("translational", "direction", "To the left.", "TO THE RIGHT", 1.0),  # as a model may echo them
        ("rotational", "yaw", "counter-clockwise (turning left)", "clockwise (turning right)", 1.0),
        ("rotational", "yaw", "it tumbles forward", "it tumbles forward", 0.0),  # no defined reversal
        ("speed_acceleration", "change", "it speeds up", "it slows down", 1.0),
        ("speed_acceleration", "change", "it speeds up", "it speeds up", 0.0),
        ("object_camera_distance", "change", "it gets closer", "it gets farther away", 1.0),
        ("object_camera_distance", "change", "it leaves the field of view", "it gets closer", 0.0),
        ("ego_motion", "direction", "forward", "backward", 1.0),
        ("ego_motion", "direction", "turning left", "turning right", 1.0),
        ("ego_motion", "direction", "turning left", "to the right", 0.0),
        ("dimension", "height", "1.25 m", "1.25 m", 1.0),  # unchanged by reversal
        ("dimension", "height", "1.25 m", "0.94 m", 0.0),
        ("spatial_relation", "first", "left of it and closer to the camera", "left of it and closer to the camera", 1.0),
        ("counting", "moving", "2", "3", 0.0),
        ("displacement_path_length", "path", 3.0, 3.0, 1.0),
        ("displacement_path_length", "path", 3.0, 4.0, 0.4),  # MRA of 4 against 3
        ("displacement_path_length", "path", 3.0, "3.0", 0.0),  # a number against a text
        ("translational", "direction", 1.0, 1.0, 0.0),  # numbers for a question whose answer flips
        ("translational", "direction", None, "to the right", 0.0),
        ("translational", "direction", "to the left", None, 0.0),
        ("translational", "nonsense", "to the left", "to the right", None),
        ("vlm4d", "direction", "to the left", "to the right", None),
    ],
)
def test_reverse_agreement(category, kind, forward, reverse, expected) -> None:
    got = reverse_agreement(forward, reverse, category=category, kind=kind)
    assert got == (expected if expected is None else pytest.approx(expected))


RECORD = {
    "id": "c-translational-direction-1-name", "qid": "c:translational:direction:1", "clip_id": "c",
    "category": "translational", "answer_type": "mc",
    "options": ["it does not move", "to the right", "to the left", "away from the camera"],
}
NUMERIC = {**RECORD, "qid": "c:displacement_path_length:path:1", "category": "displacement_path_length",
           "answer_type": "numeric", "options": []}


@pytest.mark.parametrize(
    ("forward", "reverse", "record", "expected"),
    [
        ("<answer>C</answer>", "<answer>B</answer>", RECORD, 1.0),  # left forwards, right backwards
        ("<answer>C</answer>", "<answer>to the right</answer>", RECORD, 1.0),  # letter and option text mix
        ("<answer>C</answer>", "<answer>C</answer>", RECORD, 0.0),
        ("<answer>A</answer>", "<answer>A</answer>", RECORD, 1.0),
        ("<answer>D</answer>", "<answer>B</answer>", RECORD, 0.0),  # "toward" is not an option here
        ("", "<answer>B</answer>", RECORD, 0.0),
        (None, None, RECORD, 0.0),
        ([{"role": "assistant", "content": "<answer>C</answer>"}], "B", RECORD, 1.0),
        ("<answer>2.0</answer>", "<answer>2.0</answer>", NUMERIC, 1.0),
        ("<answer>2.0</answer>", "no idea", NUMERIC, 0.0),
        ("<answer>C</answer>", "<answer>B</answer>", {**RECORD, "qid": "other:translational:direction:1"}, None),
        ("<answer>C</answer>", "<answer>B</answer>", {**RECORD, "category": "rotational"}, None),
    ],
)
def test_consistency_reward(forward, reverse, record, expected) -> None:
    assert consistency_reward([forward], [reverse], [record]) == [expected]


def test_consistency_reward_rejects_unpaired_lists() -> None:
    with pytest.raises(ValueError, match="1 forward, 2 reverse"):
        consistency_reward(["A"], ["B", "C"], [RECORD])
