"""Reverse-thinking records (ST-R1): the same clip played backwards, with the answer that reversal implies.

ST-R1 (Ego-ST Bench) adds *reverse* questions to GRPO: a route asked forwards ("to reach your destination")
is asked backwards ("to return to the starting point"), so the model must reason about the same
spatio-temporal evidence in the other direction. Our clips have no routes; the reversal here is time
itself: the record's frames, frame paths and timestamps are reversed (timestamps re-based so the first is 0
and they increase), the question says so, and the answer is the one the reversed video implies:

* flipped: translational direction (left <-> right, toward <-> away), rotation (clockwise <->
  counter-clockwise), speed change (speeds up <-> slows down), object-camera distance change (closer <->
  farther), ego-motion (forward <-> backward, left <-> right, turning left <-> turning right);
* unchanged: displacement, path length, average speed, dimension, counting, false positive, ego distance;
* re-anchored: a question tied to a named frame is rephrased so that it names the same instant of the
  reversed video ("at the first frame" -> "at the last frame", "at the end of the video" -> "at the start
  of the video", "from the camera's initial position" -> "from the camera's position in the last frame
  shown"), so its answer stays exactly the original one.

The options are kept; the answer letter points at the flipped option text. The ST-CoT is re-rendered with
``cot.render_cot``: initial and final Spatial States swap (so do ``solution.camera_center`` and
``solution.object_center``), the coordinates stay in the original world frame (the camera at the last
frame shown, which the header now says), and the computation states the forward computation and why the
reversal gives the new answer. ``id`` gains "-rev", ``qid`` gains ":rev" (a different question, so letter
balance and per-question joins must not merge it with the original), and ``provenance`` gains
``reverse_of``. The field set is exactly the original's (``schema.RECORD_FIELDS``).

A reversal must never produce a wrong label, so ``reverse_record`` returns None (with a reason from
``reverse_reason``) whenever the reversed answer is not exactly computable from the record:

* region-prompted records: the regions and the Set-of-Marks image mark the *first* sampled frame, which
  becomes the last one;
* a flipped answer text that is not among the options ("it tumbles forward" reversed), or an answer whose
  reversal is undefined ("it leaves the field of view");
* speed change with an even number of clip frames between the first and the last sampled frame:
  ``kinematics.object_kinematics`` splits the span at ``len // 2``, which moves by one frame when the
  order is reversed, so the reversed first/second-half ratio is not the inverse of the recorded one (for
  an odd count it is exactly; "it stays still" is exact either way);
* ego-motion translation when the camera also turned: the reversed label is read in the final camera's
  frame, i.e. the negated displacement rotated by the heading change. It is kept only when the recorded
  displacement's angle to its dominant axis plus the heading change (plus a margin for the CoT's
  rounding) stays inside ``questions._dominant``'s cone, so the flipped label and its dominance are
  certain. This assumes the camera turns about the vertical axis only (true of every clip we render);
* any record that is not one of our curated templates (an unknown category or kind, an external
  benchmark's record, an already reversed record, a CoT without the expected lines).

Departure from ST-R1: its reverse questions are written per benchmark category by hand (routes,
landmarks, actions); ours are derived from the template and the geometry, so every label is computed.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from components.curation.cot import render_cot
from components.curation.schema import LETTERS

logger = logging.getLogger(__name__)

REVERSE_PREFIX = "The frames are shown in reverse order (the video plays backwards). "
_HEADER = "world = the camera at the first frame"
_HEADER_REVERSED = "world = the camera at the last frame shown"
_REFERENCE = " at the initial frame: center "
_REFERENCE_REVERSED = " at the final frame: center "

# Answer texts of ``questions.py`` under time reversal (tests check every text is one of its constants).
DIRECTION_FLIP = MappingProxyType({
    "to the left": "to the right", "to the right": "to the left",
    "toward the camera": "away from the camera", "away from the camera": "toward the camera",
    "it does not move": "it does not move",
})
ROTATION_FLIP = MappingProxyType({
    "counter-clockwise (turning left)": "clockwise (turning right)",
    "clockwise (turning right)": "counter-clockwise (turning left)",
    "it does not rotate": "it does not rotate",
})
SPEED_FLIP = MappingProxyType({
    "it speeds up": "it slows down", "it slows down": "it speeds up",
    "it keeps a constant speed": "it keeps a constant speed", "it stays still": "it stays still",
})
DISTANCE_FLIP = MappingProxyType({
    "it gets closer": "it gets farther away", "it gets farther away": "it gets closer",
    "it stays at about the same distance": "it stays at about the same distance",
})
CAMERA_FLIP = MappingProxyType({
    "forward": "backward", "backward": "forward",
    "to the left": "to the right", "to the right": "to the left",
    "turning left": "turning right", "turning right": "turning left", "it stays still": "it stays still",
})


class _FalsePositiveFlip(Mapping[str, str]):
    """DIRECTION_FLIP for a present object; "there is no X in the video" (any X) stays as it is."""

    def __getitem__(self, text: str) -> str:
        return text if text.startswith("there is no ") else DIRECTION_FLIP[text]

    def __iter__(self):
        return iter(DIRECTION_FLIP)

    def __len__(self) -> int:
        return len(DIRECTION_FLIP)


@dataclass(frozen=True)
class ReverseRule:
    """How one question kind behaves under time reversal."""

    why: str  # the clause the reversed CoT gives for the new answer
    flips: Mapping[str, str] | None = None  # forward answer text -> reversed; None: the answer is unchanged
    rephrase: tuple[str, str] | None = None  # (phrase of the question, the phrase naming the same instant)
    odd_span: bool = False  # exact only when the clip span has an odd number of frames (speed change)
    steady_heading: bool = False  # a translation label is exact only if the camera hardly turned (ego-motion)


_SAME = "does not depend on the playing direction"
RULES: Mapping[tuple[str, str], ReverseRule] = MappingProxyType({
    ("translational", "direction"): ReverseRule(
        "reversing time negates the displacement, read from the same camera pose (the last frame shown)",
        DIRECTION_FLIP,
        ("as seen from the camera's initial position",
         "as seen from the camera's position in the last frame shown")),
    ("rotational", "yaw"): ReverseRule("reversing time negates the yaw rate", ROTATION_FLIP),
    ("speed_acceleration", "speed"): ReverseRule("path length and duration are unchanged"),
    ("speed_acceleration", "change"): ReverseRule(
        "reversing time swaps the two halves and inverts the ratio", SPEED_FLIP, odd_span=True),
    ("displacement_path_length", "displacement"): ReverseRule(f"the straight-line distance {_SAME}"),
    ("displacement_path_length", "path"): ReverseRule(f"the path length {_SAME}"),
    ("object_camera_distance", "final"): ReverseRule(
        "the start of the reversed video is the end of the original", None,
        ("at the end of the video", "at the start of the video")),
    ("object_camera_distance", "change"): ReverseRule(
        "reversing time swaps the initial and final distances", DISTANCE_FLIP),
    ("dimension", "height"): ReverseRule(f"an object's size {_SAME}"),
    ("spatial_relation", "first"): ReverseRule(
        "the last frame shown is the original first frame", None,
        ("At the first frame", "At the last frame")),
    ("counting", "moving"): ReverseRule(f"whether an object moves {_SAME}"),
    ("ego_motion", "direction"): ReverseRule(
        "reversing time reverses the camera's translation and turn", CAMERA_FLIP, steady_heading=True),
    ("ego_motion", "distance"): ReverseRule(f"the distance travelled {_SAME}"),
    ("false_positive", "direction"): ReverseRule(
        "an absent object stays absent; a present one's displacement is negated, read from the last frame shown",
        _FalsePositiveFlip(),
        ("as seen from the camera's initial position", "as seen from the camera's position in the last frame shown")),
})

# ``questions._dominant`` labels a direction when one ground axis is at least this times the other.
DOMINANCE_RATIO = 1.5
_CONE_DEG = math.degrees(math.atan(1.0 / DOMINANCE_RATIO))  # 33.7 deg around the dominant axis
_ROUNDING_DEG = 1.0  # the CoT prints dx, dz to 0.01 m and the heading to 0.1 deg: stay clear of the edge
_CAMERA_TRANSLATIONS = frozenset({"forward", "backward", "to the left", "to the right"})
_NUM = r"([-+]?\d+(?:\.\d+)?)"
_CAMERA_COMPUTATION = re.compile(
    rf"R_0\^T \(c_N - c_0\) = \[{_NUM}, {_NUM}, {_NUM}\] m, heading change {_NUM} deg")
_COMPUTATION_LINE = re.compile(r"^Computation: (.*)\.$", re.MULTILINE)
_REFERENCE_LINE = re.compile(
    rf"^Reference object (.+) at the initial frame: center \[{_NUM}, {_NUM}, {_NUM}\]$", re.MULTILINE)


def question_kind(record: dict) -> tuple[str, str] | None:
    """(category, kind) of a curated record from its ``qid`` ("<clip>:<category>:<kind>:<ids>")."""
    qid, clip = record.get("qid"), record.get("clip_id")
    if not isinstance(qid, str) or not isinstance(clip, str) or not qid.startswith(clip + ":"):
        return None
    parts = qid[len(clip) + 1 :].split(":")
    if len(parts) < 2 or parts[0] != record.get("category"):
        return None
    return parts[0], parts[1]


def reversed_answer(category: str, kind: str, text: str) -> str | None:
    """The answer text a question's reverse has when the forward answer is ``text``; None if undefined.

    This is the label mapping only; ``reverse_record`` adds the exactness guards that need the record.
    """
    rule = RULES.get((category, kind))
    if rule is None:
        return None
    return text if rule.flips is None else rule.flips.get(text)


class _NotReversible(Exception):
    """A record whose reverse is not exactly computable; the message says why (``reverse_records`` counts
    the messages)."""


def _rule(record: dict) -> ReverseRule:
    """The reversal rule of a forward, object-named record of one of our templates."""
    if record.get("regions") or record.get("som_image") is not None:
        raise _NotReversible("region-prompted: the marks refer to the first sampled frame")
    if "reverse_of" in (record.get("provenance") or {}):
        raise _NotReversible("already a reversed record")
    kind = question_kind(record)
    rule = RULES.get(kind) if kind else None
    if rule is None:
        raise _NotReversible(f"no reversal rule for {kind or record.get('category')!r}")
    return rule


def _check_sequence(frames: list, stamps: list, paths: list) -> None:
    increasing = all(a < b for a, b in itertools.pairwise(stamps))
    if not (len(frames) == len(stamps) == len(paths) >= 2) or not increasing:
        raise _NotReversible("frames, timestamps and frame_paths are not one increasing sequence")


def _rephrase(question: str, rule: ReverseRule) -> str:
    """The question naming the same instant of the reversed video."""
    if rule.rephrase is None:
        return question
    old, new = rule.rephrase
    if question.count(old) != 1:
        raise _NotReversible(f"question does not name {old!r} exactly once")
    return question.replace(old, new)


def _flip_answer(record: dict, options: list[str], rule: ReverseRule) -> tuple[object, str, str]:
    """(answer, answer_text) of the reversed record, and the forward answer text."""
    answer, text = record["answer"], record["answer_text"]
    if rule.flips is None:
        return answer, text, text
    if record["answer_type"] != "mc" or answer not in LETTERS[: len(options)]:
        raise _NotReversible("a flipped answer needs a multiple-choice letter")
    forward = options[LETTERS.index(answer)]
    if forward != text:
        raise _NotReversible("answer letter and answer_text disagree")
    flipped = rule.flips.get(forward)
    if flipped is None or flipped not in options:
        raise _NotReversible(f"the reverse of {forward!r} is not among the options")
    return LETTERS[options.index(flipped)], flipped, forward


def _check_odd_span(frames: list) -> None:
    if not all(isinstance(f, int) for f in frames):
        raise _NotReversible("frames are not integer indices")
    if (frames[-1] - frames[0] + 1) % 2 == 0:
        raise _NotReversible("speed change over an even number of frames: the half split is not symmetric")


def _check_camera_turn(cot: str) -> None:
    """Passes when the flipped ego-motion translation is certain (see the module docstring)."""
    match = _CAMERA_COMPUTATION.search(cot)
    if match is None:
        raise _NotReversible("ego_motion CoT has no camera displacement and heading change")
    dx, _, dz, heading = (float(g) for g in match.groups())
    if dx == 0 and dz == 0:
        raise _NotReversible("ego_motion translation with no recorded ground displacement")
    off_axis = math.degrees(math.atan2(min(abs(dx), abs(dz)), max(abs(dx), abs(dz))))
    if off_axis + abs(heading) + _ROUNDING_DEG > _CONE_DEG:
        raise _NotReversible("the camera turned while translating: the reversed direction is not certain")


def _swap(pair: object) -> list | None:
    if not isinstance(pair, list) or len(pair) != 2:
        return None
    if any(not isinstance(c, list) or len(c) != 3 for c in pair):
        return None
    return [list(pair[1]), list(pair[0])]


def _swapped_centers(solution: dict) -> tuple[list, list | None]:
    """(camera, object) [initial, final] centers of the reversed video; no object's for a camera question."""
    cameras = _swap(solution.get("camera_center"))
    objects = solution.get("object_center")
    if cameras is None or (objects is not None and (objects := _swap(objects)) is None):
        raise _NotReversible("solution centers are not [initial, final] 3-vectors")
    return cameras, objects


def _computation(cot: str, rule: ReverseRule, forward_text: str) -> str:
    """The reversed CoT's computation line: the forward one, then why reversal gives the new answer."""
    comp = _COMPUTATION_LINE.search(cot)
    if comp is None:
        raise _NotReversible("CoT has no computation line")
    forward = comp.group(1)
    if rule.flips is None:
        return f"the frames are in reverse order; {forward}; {rule.why}"
    return f"the frames are in reverse order; played forwards, {forward} ({forward_text}); {rule.why}"


def _reference(cot: str) -> tuple[str, list[float]] | None:
    """The reference object's (mark, center) from a relation question's CoT; None when it names none."""
    ref = _REFERENCE_LINE.search(cot)
    return None if ref is None else (ref.group(1), [float(x) for x in ref.groups()[1:]])


def _flip_letter(letter: object, options: list[str], flips: Mapping[str, str]) -> object:
    """A provenance letter mapped through ``flips``; "none" when its flip is not an option."""
    if not isinstance(letter, str) or letter not in LETTERS[: len(options)]:
        return letter  # None, "none" or a number: nothing to map
    new = flips.get(options[LETTERS.index(letter)])
    return LETTERS[options.index(new)] if new in options else "none"


def _reverse(record: dict) -> dict:
    """The reversed record; raises ``_NotReversible`` when it cannot be reversed faithfully."""
    rule = _rule(record)
    frames, stamps, paths = record["frames"], record["timestamps"], record["frame_paths"]
    _check_sequence(frames, stamps, paths)
    question = _rephrase(record["question"], rule)
    options = [str(o) for o in record["options"]]
    answer, answer_text, forward_text = _flip_answer(record, options, rule)
    if rule.odd_span and answer_text != "it stays still":
        _check_odd_span(frames)
    if rule.steady_heading and answer_text in _CAMERA_TRANSLATIONS:
        _check_camera_turn(record["cot"])
    cameras, objects = _swapped_centers(record["solution"])
    computation = _computation(record["cot"], rule, forward_text)

    new_frames = list(reversed(frames))
    new_stamps = [round(stamps[-1] - t, 6) + 0.0 for t in reversed(stamps)]  # + 0.0: no -0.0
    cot = render_cot(frames=new_frames, timestamps=new_stamps, camera_centers=cameras, object_centers=objects,
                     computation=computation, conclusion=answer_text, answer=str(answer),
                     reference=_reference(record["cot"]))
    cot = cot.replace(_HEADER, _HEADER_REVERSED, 1).replace(_REFERENCE, _REFERENCE_REVERSED, 1)

    out = copy.deepcopy(record)
    provenance = out["provenance"]
    if rule.flips is not None:
        # The other geometry's label maps through the same bijection, so agrees_with_gt is unchanged.
        for key in ("gt_answer", "estimated_answer"):
            if key in provenance:
                provenance[key] = _flip_letter(provenance[key], options, rule.flips)
    provenance["reverse_of"] = record["id"]
    out.update(
        id=f"{record['id']}-rev", qid=f"{record['qid']}:rev", question=REVERSE_PREFIX + question,
        answer=answer, answer_text=answer_text, frames=new_frames, timestamps=new_stamps,
        frame_paths=list(reversed(paths)), cot=cot,
        solution={**out["solution"], "answer": answer, "answer_text": answer_text,
                  "camera_center": cameras, "object_center": objects},
    )
    return out


def reverse_reason(record: dict) -> str | None:
    """Why ``record`` cannot be reversed faithfully; None when it can."""
    try:
        _reverse(record)
    except _NotReversible as skip:
        return str(skip)
    return None


def reverse_record(record: dict) -> dict | None:
    """The reverse-thinking record of ``record`` (see the module docstring), or None."""
    try:
        return _reverse(record)
    except _NotReversible as skip:
        logger.debug("not reversing %s: %s", record.get("id"), skip)
        return None


def reverse_records(records: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Every reversible record reversed, and how many were skipped for each reason."""
    out, skipped = [], Counter()
    for record in records:
        try:
            out.append(_reverse(record))
        except _NotReversible as skip:
            skipped[str(skip)] += 1
    return out, dict(skipped)
