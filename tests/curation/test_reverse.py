"""Reverse-thinking records: flipped labels on literal records, None wherever the label is not exact, and
the invariants on real curated records."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from components.curation import questions as q
from components.curation.cot import parse_cot, render_cot
from components.curation.reverse import (
    CAMERA_FLIP,
    DIRECTION_FLIP,
    DISTANCE_FLIP,
    REVERSE_PREFIX,
    ROTATION_FLIP,
    RULES,
    SPEED_FLIP,
    question_kind,
    reverse_reason,
    reverse_record,
    reverse_records,
    reversed_answer,
)
from components.curation.schema import LETTERS, RECORD_FIELDS
from components.io import read_jsonl

FRAMES = [0, 2, 4, 6, 9, 11, 13, 15]  # 16 clip frames: an even span
STAMPS = [0.0, 0.25, 0.5, 0.75, 1.125, 1.375, 1.625, 1.875]
CAMERA = [[0.0, 0.0, 0.0], [0.5, 0.0, 1.5]]
OBJECT = [[1.0, 1.2, 6.0], [-0.5, 1.2, 6.5]]


def make(category: str, kind: str, question: str, options: list[str], letter: str, computation: str, *,
         answer_type: str = "mc", frames: list[int] = FRAMES, objects: list | None = OBJECT,
         reference: tuple[str, list[float]] | None = None) -> dict:
    """A record as ``assemble._records`` writes one (name variant)."""
    answer = letter if answer_type == "mc" else float(letter)
    text = options[LETTERS.index(letter)] if answer_type == "mc" else f"{answer:.2f}"
    stamps = [f / 8 for f in frames]
    return {
        "id": f"c-{category}-{kind}-1-name", "qid": f"c:{category}:{kind}:1", "clip_id": "c", "split": "rft",
        "category": category, "answer_type": answer_type, "prompt_variant": "name", "question": question,
        "options": options, "answer": answer, "answer_text": text, "answer_value": None, "unit": None,
        "frames": frames, "timestamps": stamps, "frame_paths": [f"data/scenes/c/left/{f:06d}.png" for f in frames],
        "regions": [], "som_image": None,
        "cot": render_cot(frames=frames, timestamps=stamps, camera_centers=CAMERA, object_centers=objects,
                          computation=computation, conclusion=text, answer=str(answer), reference=reference),
        "solution": {"answer": answer, "answer_text": text, "camera_center": copy.deepcopy(CAMERA),
                     "object_center": copy.deepcopy(objects)},
        "provenance": {"label_source": "estimated", "gt_answer": letter, "estimated_answer": letter,
                       "agrees_with_gt": True, "static": False},
    }


DIRECTION_Q = "In which direction does the red cube move, as seen from the camera's initial position?"
DIRECTION_OPTS = ["to the left", "it does not move", "to the right", "away from the camera"]
DIRECTION = make("translational", "direction", DIRECTION_Q, DIRECTION_OPTS, "A",
                 "ground-plane displacement dx = -1.50 m (right +), dz = +0.50 m (away +)")
FP_Q = "In which direction does the pink cube move, as seen from the camera's initial position?"
CAMERA_Q = "How does the camera move during the video?"
CAMERA_OPTS = ["forward", "backward", "turning left", "turning right"]


def ego(letter: str, dx: float, dz: float, heading: float) -> dict:
    return make("ego_motion", "direction", CAMERA_Q, CAMERA_OPTS, letter,
                f"camera displacement in the initial camera frame R_0^T (c_N - c_0) = [{dx:+.2f}, +0.00, {dz:+.2f}] m, "
                f"heading change {heading:+.1f} deg", objects=None)


def check_invariants(original: dict, rev: dict) -> None:
    """What every reversed record satisfies, whatever its category."""
    assert set(rev) == set(original) <= set(RECORD_FIELDS)
    for name, value in rev.items():
        types, nullable = RECORD_FIELDS[name]
        assert isinstance(value, types) or (value is None and nullable), name
    assert rev["id"] == original["id"] + "-rev" and rev["qid"] == original["qid"] + ":rev"
    assert rev["provenance"]["reverse_of"] == original["id"]
    assert rev["question"].startswith(REVERSE_PREFIX)
    assert rev["frames"] == original["frames"][::-1]
    assert rev["frame_paths"] == original["frame_paths"][::-1]
    last = original["timestamps"][-1]
    assert rev["timestamps"] == pytest.approx([last - t for t in original["timestamps"][::-1]])
    assert rev["timestamps"][0] == 0.0 and all(b > a for a, b in zip(rev["timestamps"], rev["timestamps"][1:]))
    assert rev["options"] == original["options"]
    if rev["answer_type"] == "mc":
        assert rev["options"][LETTERS.index(rev["answer"])] == rev["answer_text"]
    sol, orig_sol = rev["solution"], original["solution"]
    assert (sol["answer"], sol["answer_text"]) == (rev["answer"], rev["answer_text"])
    assert sol["camera_center"] == orig_sol["camera_center"][::-1]
    assert sol["object_center"] == (None if orig_sol["object_center"] is None else orig_sol["object_center"][::-1])
    parsed = parse_cot(rev["cot"])
    assert parsed is not None and parsed.answer == str(rev["answer"])
    assert np.allclose(parsed.camera_centers, sol["camera_center"], atol=0.006)  # the CoT prints 0.01 m
    if sol["object_center"] is not None:
        assert np.allclose(parsed.object_centers, sol["object_center"], atol=0.006)
    assert f"So the answer is: {rev['answer_text']}." in rev["cot"]
    assert "world = the camera at the last frame shown" in rev["cot"]
    assert f"Initial frame (frame {rev['frames'][0]}, t=0.00 s)" in rev["cot"]


# ------------------------------------------------------------------------------------- flipped labels


def test_translational_direction_flips_and_keeps_the_reference_pose() -> None:
    rev = reverse_record(DIRECTION)
    check_invariants(DIRECTION, rev)
    assert (rev["answer"], rev["answer_text"]) == ("C", "to the right")
    assert rev["question"] == REVERSE_PREFIX + DIRECTION_Q.replace(
        "the camera's initial position", "the camera's position in the last frame shown")
    assert "played forwards, ground-plane displacement dx = -1.50 m" in rev["cot"]
    assert rev["provenance"]["gt_answer"] == rev["provenance"]["estimated_answer"] == "C"
    assert rev["provenance"]["agrees_with_gt"] is True


def test_the_original_record_is_not_changed() -> None:
    before = copy.deepcopy(DIRECTION)
    reverse_record(DIRECTION)
    assert DIRECTION == before


@pytest.mark.parametrize(
    ("category", "kind", "question", "options", "letter", "expected"),
    [
        ("translational", "direction", DIRECTION_Q, DIRECTION_OPTS, "B", "it does not move"),
        ("translational", "direction", DIRECTION_Q,
         ["away from the camera", "toward the camera", "to the left", "it does not move"], "A", "toward the camera"),
        ("rotational", "yaw", "Seen from above, which way does the red cube rotate?",
         ["it tumbles forward", "clockwise (turning right)", "counter-clockwise (turning left)", "it does not rotate"],
         "C", "clockwise (turning right)"),
        ("rotational", "yaw", "Seen from above, which way does the red cube rotate?",
         ["it tumbles forward", "clockwise (turning right)", "counter-clockwise (turning left)", "it does not rotate"],
         "D", "it does not rotate"),
        ("object_camera_distance", "change", "Over the video, does the red cube get closer to the camera or farther away?",
         ["it gets closer", "it leaves the field of view", "it gets farther away", "it stays at about the same distance"],
         "A", "it gets farther away"),
        ("object_camera_distance", "change", "Over the video, does the red cube get closer to the camera or farther away?",
         ["it gets closer", "it leaves the field of view", "it gets farther away", "it stays at about the same distance"],
         "D", "it stays at about the same distance"),
    ],
)
def test_flipped_categories(category, kind, question, options, letter, expected) -> None:
    record = make(category, kind, question, options, letter, "a forward computation = +1.00")
    rev = reverse_record(record)
    check_invariants(record, rev)
    assert rev["answer_text"] == expected
    rephrase = RULES[(category, kind)].rephrase
    assert rev["question"] == REVERSE_PREFIX + (question.replace(*rephrase) if rephrase else question)


SPEED_Q = "How does the speed of the red cube change over the video?"
SPEED_OPTS = ["it speeds up", "it slows down", "it keeps a constant speed", "it stays still"]
ODD = [0, 2, 4, 6, 8, 10, 12, 14]  # 15 clip frames: the half split is symmetric


@pytest.mark.parametrize(
    ("letter", "frames", "expected"),
    [
        ("A", ODD, "it slows down"),
        ("B", ODD, "it speeds up"),
        ("C", ODD, "it keeps a constant speed"),
        ("D", ODD, "it stays still"),
        ("D", FRAMES, "it stays still"),  # still is exact whatever the split
        ("A", FRAMES, None),  # even span: the reversed halves are not the recorded halves swapped
        ("C", FRAMES, None),
    ],
)
def test_speed_change_is_reversed_only_when_the_split_is_symmetric(letter, frames, expected) -> None:
    record = make("speed_acceleration", "change", SPEED_Q, SPEED_OPTS, letter,
                  "speed over the first half 1.00 m/s, second half 2.00 m/s (ratio 2.00)", frames=frames)
    rev = reverse_record(record)
    if expected is None:
        assert rev is None and "even number of frames" in reverse_reason(record)
    else:
        check_invariants(record, rev)
        assert rev["answer_text"] == expected


@pytest.mark.parametrize(
    ("letter", "dx", "dz", "heading", "expected"),
    [
        ("A", 0.0, 1.5, 0.0, "backward"),
        ("B", 0.3, -1.5, 0.0, "forward"),  # 11 deg off axis, no turn
        ("C", 0.0, 0.0, -30.0, "turning right"),  # a turn in place flips exactly
        ("D", 0.1, 0.0, 40.0, "turning left"),
        ("A", 0.0, 1.5, 10.0, "backward"),  # 10 deg turn inside the dominance cone
        ("A", 0.0, 1.5, 33.0, None),  # a turn that could leave the cone
        ("A", 0.9, 1.5, 5.0, None),  # 31 deg off axis + 5 deg turn
        ("A", 0.0, 0.0, 0.0, None),  # a translation label with no recorded displacement
    ],
)
def test_ego_motion_flips_when_the_reversed_direction_is_certain(letter, dx, dz, heading, expected) -> None:
    record = ego(letter, dx, dz, heading)
    rev = reverse_record(record)
    if expected is None:
        assert rev is None and reverse_reason(record)
    else:
        check_invariants(record, rev)
        assert rev["answer_text"] == expected


def test_ego_motion_translation_without_a_computation_is_not_reversed() -> None:
    record = ego("A", 0.0, 1.5, 0.0)
    record["cot"] = record["cot"].replace("heading change", "turn")
    assert reverse_record(record) is None
    assert "heading change" in reverse_reason(record)


# ------------------------------------------------------------------------- unchanged and re-anchored


@pytest.mark.parametrize(
    ("category", "kind", "question", "expected_question"),
    [
        ("dimension", "height", "How tall is the red cube, in metres?", None),
        ("displacement_path_length", "displacement",
         "How far does the red cube end up from where it started, in metres (straight line)?", None),
        ("displacement_path_length", "path", "How long is the path that the red cube travels, in metres?", None),
        ("speed_acceleration", "speed", "What is the average speed of the red cube, in metres per second?", None),
        ("object_camera_distance", "final", "How far is the red cube from the camera at the end of the video, in metres?",
         "How far is the red cube from the camera at the start of the video, in metres?"),
        ("ego_motion", "distance", "How far does the camera travel during the video, in metres?", None),
    ],
)
@pytest.mark.parametrize("answer_type", ["mc", "numeric"])
def test_quantities_keep_their_answer(category, kind, question, expected_question, answer_type) -> None:
    options = ["1.00 m", "2.00 m", "3.00 m", "4.00 m"] if answer_type == "mc" else []
    record = make(category, kind, question, options, "C" if answer_type == "mc" else "3.00", "x = 3.00 m",
                  answer_type=answer_type)
    rev = reverse_record(record)
    check_invariants(record, rev)
    assert (rev["answer"], rev["answer_text"]) == (record["answer"], record["answer_text"])
    assert rev["question"] == REVERSE_PREFIX + (expected_question or question)


def test_spatial_relation_is_asked_at_the_same_instant() -> None:
    question = "At the first frame, where is the red cube relative to the blue sphere, from the camera's view?"
    options = list(q.RELATIONS)
    record = make("spatial_relation", "first", question, options, "B", "at the first frame, x difference -1.00 m",
                  reference=("the blue sphere", [2.0, 1.0, 7.0]))
    rev = reverse_record(record)
    check_invariants(record, rev)
    assert rev["question"] == REVERSE_PREFIX + question.replace("At the first frame", "At the last frame")
    assert rev["answer_text"] == record["answer_text"]
    assert "Reference object the blue sphere at the final frame: center [2.00, 1.00, 7.00]" in rev["cot"]


@pytest.mark.parametrize(
    ("category", "kind", "question", "options"),
    [
        ("counting", "moving", "How many objects move during the video?", ["0", "1", "2", "3"]),
        ("false_positive", "direction", FP_Q,
         ["to the left", "there is no pink cube in the video", "to the right", "toward the camera"]),
    ],
)
def test_scene_questions_keep_their_answer(category, kind, question, options) -> None:
    record = make(category, kind, question, options, "B", "no object labelled 'pink cube'", objects=None)
    rev = reverse_record(record)
    check_invariants(record, rev)
    assert rev["answer_text"] == record["answer_text"]


def test_false_positive_about_a_present_object_flips_its_direction() -> None:
    options = ["there is no pink cube in the video", "to the left", "to the right", "toward the camera"]
    record = make("false_positive", "direction", FP_Q, options, "B",
                  "the pink cube is present; ground-plane displacement dx = -1.50 m (right +), dz = +0.20 m (away +)")
    rev = reverse_record(record)
    check_invariants(record, rev)
    assert rev["answer_text"] == "to the right"
    assert "as seen from the camera's position in the last frame shown" in rev["question"]


# ---------------------------------------------------------------------------------- None, with reasons


def _with(**changes) -> dict:
    record = copy.deepcopy(DIRECTION)
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (_with(regions=[{"token": "<R1>"}], prompt_variant="region"), "region-prompted"),
        (_with(som_image="data/curated/som/c.png"), "region-prompted"),
        (_with(options=["to the left", "it does not move", "toward the camera", "away from the camera"]),
         "not among the options"),
        (make("rotational", "yaw", "Seen from above, which way does the red cube rotate?",
              ["it tumbles forward", "clockwise (turning right)", "it does not rotate", "counter-clockwise (turning left)"],
              "A", "yaw"), "not among the options"),
        (make("object_camera_distance", "change", "Does it get closer?",
              ["it leaves the field of view", "it gets closer", "it gets farther away", "it stays at about the same distance"],
              "A", "d"), "not among the options"),
        (_with(category="vlm4d_translational", qid="c:vlm4d_translational:direction:1"), "no reversal rule"),
        (_with(qid="c:translational:orbit:1"), "no reversal rule"),
        (_with(qid="other:translational:direction:1"), "no reversal rule"),
        (_with(qid=None), "no reversal rule"),
        (_with(question="Which way does the red cube go?"), "does not name"),
        (_with(answer_text="to the right"), "disagree"),
        (_with(answer="E"), "multiple-choice letter"),
        (_with(answer_type="numeric"), "multiple-choice letter"),
        (_with(cot=DIRECTION["cot"].replace("Computation:", "Working:")), "computation line"),
        (_with(solution={**DIRECTION["solution"], "camera_center": [[0.0, 0.0, 0.0]]}), "solution centers"),
        (_with(solution={**DIRECTION["solution"], "object_center": [[0.0, 0.0], [1.0, 1.0]]}), "solution centers"),
        (_with(solution={**DIRECTION["solution"], "camera_center": None}), "solution centers"),
        (_with(timestamps=[0.0, 0.5, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]), "increasing"),
        (_with(frame_paths=["a.png"]), "increasing"),
        (_with(provenance={"reverse_of": "x"}), "already"),
    ],
)
def test_unfaithful_reversals_return_none(record: dict, reason: str) -> None:
    assert reverse_record(record) is None
    assert reason in reverse_reason(record)


def test_a_reversed_record_is_not_reversed_again() -> None:
    assert reverse_record(reverse_record(DIRECTION)) is None


def test_reverse_records_counts_the_skipped() -> None:
    out, skipped = reverse_records([DIRECTION, _with(som_image="x.png"), _with(som_image="y.png")])
    assert [r["id"] for r in out] == [DIRECTION["id"] + "-rev"]
    assert sum(skipped.values()) == 2 and len(skipped) == 1


# -------------------------------------------------------------------------------------- the tables


@pytest.mark.parametrize(
    ("flips", "texts", "no_reversal"),
    [
        (DIRECTION_FLIP, q.DIRECTIONS, set()),
        (ROTATION_FLIP, q.ROTATIONS, {"it tumbles forward"}),
        (SPEED_FLIP, q.SPEED_CHANGES, set()),
        (DISTANCE_FLIP, q.DISTANCE_CHANGES, {"it leaves the field of view"}),
        (CAMERA_FLIP, q.CAMERA_MOTIONS, set()),
    ],
)
def test_flip_tables_are_involutions_over_the_question_texts(flips, texts, no_reversal) -> None:
    assert set(flips) == set(texts) - no_reversal
    assert set(flips.values()) <= set(texts)
    assert all(flips[flips[t]] == t for t in flips)


def test_reversed_answer_and_question_kind() -> None:
    assert reversed_answer("translational", "direction", "to the left") == "to the right"
    assert reversed_answer("dimension", "height", "1.25 m") == "1.25 m"
    assert reversed_answer("rotational", "yaw", "it tumbles forward") is None
    assert reversed_answer("made_up", "kind", "x") is None
    assert question_kind(DIRECTION) == ("translational", "direction")
    assert question_kind(reverse_record(DIRECTION)) == ("translational", "direction")
    assert question_kind({"qid": "c:translational", "clip_id": "c", "category": "translational"}) is None


# --------------------------------------------------------------------------------- curated records


def test_curated_records_reverse_faithfully(smoke_curated: tuple[Path, dict]) -> None:
    records = [r for split in ("sft", "rft", "bench") for r in read_jsonl(smoke_curated[0] / f"{split}.jsonl")]
    assert {question_kind(r) for r in records} <= set(RULES), "a question kind has no reversal rule"
    reversed_ = 0
    for record in records:
        rev = reverse_record(record)
        if record["regions"]:
            assert rev is None
        if rev is None:
            assert reverse_reason(record)
            continue
        reversed_ += 1
        check_invariants(record, rev)
        category, kind = question_kind(record)
        assert rev["answer_text"] == reversed_answer(category, kind, record["answer_text"])
    assert reversed_ > 0
