"""Questions whose answers are computed from geometry, by category.

Every generator reads a ``Geometry`` (estimated or ground truth: the same code labels both, so the
label agreement in ``stats.json`` measures the curation, not two implementations) and returns
``QuestionSpec``s keyed so that the estimated and the ground-truth versions of one question join.
A spec whose quantity sits too close to a decision threshold is marked ``clear=False``: the label
could flip with a few centimetres of depth noise, so it is not asked from that geometry.

Where we depart from the papers: MLLM-4D and R4D-Bench phrase questions with an LLM and verify by
hand; here the phrasings are templates, which keeps every answer machine-checkable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from components.config import ThresholdsConfig as Thresholds
from components.curation.geometry import Geometry
from components.curation.kinematics import ObjectKinematics, camera_kinematics, object_kinematics
from components.scenes.spec import PALETTE, SHAPES

# Vocabulary for false-positive questions: the renderer's own colours and shapes, so that an absent label is
# drawn from the same distribution as the labels that are there (a colour only ever asked about when absent
# would answer the question from its text).
COLORS = tuple(PALETTE)

DIRECTIONS = ("to the left", "to the right", "toward the camera", "away from the camera", "it does not move")
ROTATIONS = ("counter-clockwise (turning left)", "clockwise (turning right)", "it does not rotate",
             "it tumbles forward")
SPEED_CHANGES = ("it speeds up", "it slows down", "it keeps a constant speed", "it stays still")
DISTANCE_CHANGES = ("it gets closer", "it gets farther away", "it stays at about the same distance",
                    "it leaves the field of view")
CAMERA_MOTIONS = ("forward", "backward", "to the left", "to the right", "turning left", "turning right",
                  "it stays still")
# A camera that travels and turns (a car taking a bend): neither "forward" nor "turning right" alone is the
# one true option, so its label says both and its options are the other combinations, so that exactly one
# option is true and the phrasing does not give the answer away among them.
CAMERA_TURNING = tuple(f"{move} while {turn}" for move in CAMERA_MOTIONS[:4] for turn in CAMERA_MOTIONS[4:6])
RELATIONS = ("left of it and closer to the camera", "left of it and farther from the camera",
             "right of it and closer to the camera", "right of it and farther from the camera")
# Answers that can be true. Options are drawn from these only: an option that is never right ("it tumbles
# forward") tells a guesser which option to avoid, and every other option becomes right more often than its
# share. (ROTATIONS and DISTANCE_CHANGES keep the never-true texts for the reverse-thinking flips.)
ROTATION_LABELS = ROTATIONS[:3]
DISTANCE_LABELS = DISTANCE_CHANGES[:3]
COUNTS = ("0", "1", "2", "3")  # "how many move": asked when the truth is one of these


def absent_text(label: str) -> str:
    return f"there is no {label} in the video"


ABSENT = absent_text("X")  # the answer class of every false-positive question about an absent object


@dataclass
class QuestionSpec:
    key: str  # category:kind:object ids -- joins estimated and ground-truth versions
    category: str
    kind: str
    object_ids: tuple[int, ...]
    by_name: str | None  # None when an object it refers to has no name (discovered in real video)
    by_region: str | None  # None when the question refers to no object (camera, false positive)
    answer_type: str  # "choice" (categorical) or "quantity" (mc with numeric options, or open numeric)
    correct: str = ""  # option text for categorical
    choices: tuple[str, ...] = ()  # every candidate option, correct included
    value: float | None = None
    unit: str | None = None
    clear: bool = True
    computation: str = ""
    primary: int | None = None  # whose center the ST-CoT reports (None: no single object)
    extra: dict = field(default_factory=dict)


def _obj(labels: dict[int, str], i: int) -> str:
    return f"the {labels[i]}"


def _by_name(text: str, labels: dict[int, str], ids: tuple[int, ...]) -> str | None:
    """``text`` with ``{obj}``/``{ref}`` named, or None when an object has no name (found by discovery in real
    video: it is asked about only through its region mark, as R4D-Bench does)."""
    if not all(labels[i] for i in ids):
        return None
    return text.format(obj=_obj(labels, ids[0]), ref=_obj(labels, ids[-1]))


def _shown(labels: dict[int, str], i: int) -> str:
    """An object in a computation's text: its name, or its id when it has none."""
    return labels[i] or f"object {i}"


def _dominant(dx: float, dz: float, ratio: float = 1.5) -> tuple[str | None, bool]:
    """Camera-relative direction of a ground-plane displacement, and whether one axis clearly dominates."""
    if abs(dx) >= abs(dz):
        return ("to the right" if dx > 0 else "to the left"), abs(dx) >= ratio * abs(dz)
    return ("away from the camera" if dz > 0 else "toward the camera"), abs(dz) >= ratio * abs(dx)


def _between(value: float, threshold: float, margin: float) -> bool:
    """True when ``value`` is too close to ``threshold`` to label reliably."""
    return threshold * (1 - margin) < value < threshold * (1 + margin)


@dataclass(frozen=True)
class _Motion:
    """One object's kinematics and the judgement of whether it moves, which several questions share."""

    k: ObjectKinematics
    duration: float
    moving: bool
    speed_unclear: bool  # the net speed sits too close to ``still_speed`` to say whether it moves

    @classmethod
    def of(cls, k: ObjectKinematics, duration: float, th: Thresholds) -> _Motion:
        # "Moving" is judged on the net (chord) speed, not the path: an object spinning in place shows a
        # wobbling visible-surface center whose path length looks like motion; its chord stays short.
        chord = k.displacement_m / duration
        return cls(k, duration, chord >= th.still_speed, _between(chord, th.still_speed, th.margin))


@dataclass(frozen=True)
class _Answer:
    """One object question's answer: a choice among ``choices``, or a quantity ``value`` in ``unit``."""

    computation: str
    correct: str = ""
    choices: tuple[str, ...] = ()
    value: float | None = None
    unit: str | None = None
    clear: bool = True


def _direction(m: _Motion, th: Thresholds) -> _Answer:
    k = m.k
    direction, dominant = _dominant(float(k.displacement[0]), float(k.displacement[2]))
    return _Answer(f"ground-plane displacement dx = {k.displacement[0]:+.2f} m (right +), "
                   f"dz = {k.displacement[2]:+.2f} m (away +)",
                   direction if m.moving else "it does not move", DIRECTIONS,
                   clear=not m.speed_unclear and (dominant or not m.moving))


def _yaw(m: _Motion, th: Thresholds) -> _Answer | None:
    rate = m.k.yaw_rate
    if not np.isfinite(rate):
        return None  # no rotation estimate for this object: not asked
    if abs(rate) >= th.rotation_rate:
        rot = "counter-clockwise (turning left)" if rate > 0 else "clockwise (turning right)"
    else:
        rot = "it does not rotate"
    return _Answer(f"yaw rate = {np.degrees(rate):+.1f} deg/s (counter-clockwise +)", rot, ROTATION_LABELS,
                   clear=not _between(abs(rate), th.rotation_rate, th.margin))


# Quantities of motion exist for every object (so the two geometries can be compared), but are asked only
# about objects that clearly move.
def _speed(m: _Motion, th: Thresholds) -> _Answer:
    k = m.k
    return _Answer(f"path length {k.path_length_m:.2f} m / {m.duration:.2f} s = {k.avg_speed:.2f} m/s",
                   value=k.avg_speed, unit="m/s", clear=m.moving and not m.speed_unclear)


def _speed_change(m: _Motion, th: Thresholds) -> _Answer:
    k = m.k
    ratio = k.speed_second_half / max(k.speed_first_half, 1e-6)
    if not m.moving:
        change, clear = "it stays still", not m.speed_unclear
    elif ratio >= th.accel_ratio:
        change, clear = "it speeds up", not _between(ratio, th.accel_ratio, th.margin / 4)
    elif ratio <= 1 / th.accel_ratio:
        change, clear = "it slows down", not _between(1 / ratio, th.accel_ratio, th.margin / 4)
    else:
        change = "it keeps a constant speed"
        clear = abs(ratio - 1) <= (th.accel_ratio - 1) / 2 and not m.speed_unclear
    return _Answer(f"speed over the first half {k.speed_first_half:.2f} m/s, second half "
                   f"{k.speed_second_half:.2f} m/s (ratio {ratio:.2f})", change, SPEED_CHANGES, clear=clear)


def _displacement(m: _Motion, th: Thresholds) -> _Answer:
    d = m.k.displacement_m
    return _Answer(f"|final - initial center| on the ground plane = {d:.2f} m", value=d, unit="m",
                   clear=m.moving and not m.speed_unclear and d >= th.min_distance)


def _path_length(m: _Motion, th: Thresholds) -> _Answer:
    d = m.k.path_length_m
    return _Answer(f"sum of the steps between frames = {d:.2f} m", value=d, unit="m",
                   clear=m.moving and not m.speed_unclear and d >= th.min_distance)


def _final_distance(m: _Motion, th: Thresholds) -> _Answer:
    d = m.k.distance_final
    return _Answer(f"|object center - camera center| at the final frame = {d:.2f} m", value=d, unit="m")


def _distance_change(m: _Motion, th: Thresholds) -> _Answer:
    k = m.k
    change_m = k.distance_final - k.distance_initial
    if abs(change_m) >= th.distance_change:
        truth = "it gets closer" if change_m < 0 else "it gets farther away"
    else:
        truth = "it stays at about the same distance"
    return _Answer(f"distance {k.distance_initial:.2f} m -> {k.distance_final:.2f} m "
                   f"(change {change_m:+.2f} m)", truth, DISTANCE_LABELS,
                   clear=not _between(abs(change_m), th.distance_change, th.margin))


def _height(m: _Motion, th: Thresholds) -> _Answer:
    h = m.k.height_m
    return _Answer(f"vertical extent of the object's 3D points = {h:.2f} m", value=h, unit="m")


@dataclass(frozen=True)
class _Template:
    """One question asked about each object; ``{obj}`` in ``text`` is its name or its region mark."""

    category: str
    kind: str
    text: str
    answer: Callable[[_Motion, Thresholds], _Answer | None]  # None: not asked about this object


# In the order the questions are asked (the curation's records follow it).
_OBJECT_TEMPLATES: tuple[_Template, ...] = (
    _Template("translational", "direction",
              "In which direction does {obj} move, as seen from the camera's initial position?", _direction),
    _Template("rotational", "yaw", "Seen from above, which way does {obj} rotate?", _yaw),
    _Template("speed_acceleration", "speed",
              "What is the average speed of {obj}, in metres per second?", _speed),
    _Template("speed_acceleration", "change",
              "How does the speed of {obj} change over the video?", _speed_change),
    _Template("displacement_path_length", "displacement",
              "How far does {obj} end up from where it started, in metres (straight line)?", _displacement),
    _Template("displacement_path_length", "path",
              "How long is the path that {obj} travels, in metres?", _path_length),
    _Template("object_camera_distance", "final",
              "How far is {obj} from the camera at the end of the video, in metres?", _final_distance),
    _Template("object_camera_distance", "change",
              "Over the video, does {obj} get closer to the camera or farther away?", _distance_change),
    _Template("dimension", "height", "How tall is {obj}, in metres?", _height),
)


def object_questions(geo: Geometry, labels: dict[int, str], th: Thresholds) -> list[QuestionSpec]:
    out: list[QuestionSpec] = []
    duration = float(geo.times[-1] - geo.times[0])
    for oid, track in sorted(geo.tracks.items()):
        motion = _Motion.of(object_kinematics(geo, track), duration, th)
        for t in _OBJECT_TEMPLATES:
            if (answer := t.answer(motion, th)) is None:
                continue
            out.append(QuestionSpec(
                f"{t.category}:{t.kind}:{oid}", t.category, t.kind, (oid,),
                _by_name(t.text, labels, (oid,)), t.text.format(obj="<R1>"),
                "choice" if answer.choices else "quantity", answer.correct, answer.choices, answer.value,
                answer.unit, answer.clear, answer.computation, primary=oid))
    return out


def relation_questions(geo: Geometry, labels: dict[int, str], th: Thresholds) -> list[QuestionSpec]:
    out = []
    ids = sorted(geo.tracks)
    for a in ids:
        for b in ids:
            if a == b:
                continue
            pa, pb = geo.tracks[a].smooth[0], geo.tracks[b].smooth[0]
            dx, dz = float(pa[0] - pb[0]), float(pa[2] - pb[2])
            side = "left" if dx < 0 else "right"
            depth = "closer to the camera" if dz < 0 else "farther from the camera"
            out.append(QuestionSpec(
                f"spatial_relation:first:{a}-{b}", "spatial_relation", "first", (a, b),
                _by_name("At the first frame, where is {obj} relative to {ref}, from the camera's view?", labels,
                         (a, b)),
                "At the first frame, where is <R1> relative to <R2>, from the camera's view?", "choice",
                f"{side} of it and {depth}", RELATIONS,
                clear=abs(dx) >= th.relation_gap and abs(dz) >= th.relation_gap,
                computation=f"at the first frame, x difference {dx:+.2f} m (right +), z difference {dz:+.2f} m "
                f"(farther +)", primary=a, extra={"reference": b}))
    return out


def camera_motion_label(distance: float, dx: float, dz: float, yaw_deg: float,
                        th: Thresholds) -> tuple[str, tuple[str, ...], bool]:
    """The camera's motion as one label, the options it is asked among, and whether it is clear.

    Exactly one option is true: a camera that both travels and turns gets a label saying both ("forward
    while turning right") among the other travel-and-turn combinations; one that only travels or only turns
    gets one of ``CAMERA_MOTIONS``. A quantity near its threshold (travel near ``camera_move``, a turn near
    ``camera_turn_deg``) makes the label unclear: it is not asked.
    """
    turn = ("turning right" if yaw_deg > 0 else "turning left") if abs(yaw_deg) >= th.camera_turn_deg else None
    turn_unclear = _between(abs(yaw_deg), th.camera_turn_deg, th.margin)
    if distance >= th.camera_move:
        word, dominant = _dominant(dx, dz)
        move = {"to the right": "to the right", "to the left": "to the left",
                "away from the camera": "forward", "toward the camera": "backward"}[word]
        clear = dominant and not _between(distance, th.camera_move, th.margin) and not turn_unclear
        if turn is None:
            return move, CAMERA_MOTIONS, clear
        return f"{move} while {turn}", CAMERA_TURNING, clear
    if turn is not None:
        return turn, CAMERA_MOTIONS, not turn_unclear
    return "it stays still", CAMERA_MOTIONS, (distance <= th.camera_move * (1 - th.margin)
                                              and abs(yaw_deg) <= th.camera_turn_deg / 2)


def scene_questions(geo: Geometry, labels: dict[int, str], th: Thresholds, absent: str) -> list[QuestionSpec]:
    """Questions about the whole scene: counting, the camera's ego-motion, a false positive."""
    out = []
    ids = sorted(geo.tracks)
    duration = float(geo.times[-1] - geo.times[0])
    speeds = {i: object_kinematics(geo, geo.tracks[i]).displacement_m / duration for i in ids}
    n_moving = sum(s >= th.still_speed for s in speeds.values())
    # Asked by name only: listing the marks <R1>, <R2>, ... would tell how many objects there are, an upper
    # bound on the answer that needs no video. The options are always the same counts.
    out.append(QuestionSpec(
        "counting:moving:all", "counting", "moving", tuple(ids), "How many objects move during the video?",
        None, "choice", str(n_moving), COUNTS,
        clear=str(n_moving) in COUNTS and not any(_between(s, th.still_speed, th.margin) for s in speeds.values()),
        computation="net speeds (displacement / duration): "
        + ", ".join(f"{_shown(labels, i)} {speeds[i]:.2f} m/s" for i in ids)
        + f"; moving means >= {th.still_speed:.2f} m/s"))

    cam = camera_kinematics(geo)
    motion, choices, clear = camera_motion_label(cam.distance_m, float(cam.displacement[0]),
                                                 float(cam.displacement[2]), cam.yaw_change_deg, th)
    dx, dz = float(cam.displacement[0]), float(cam.displacement[2])
    cam_comp = (f"camera displacement in the initial camera frame R_0^T (c_N - c_0) = "
                f"[{dx:+.2f}, {cam.displacement[1]:+.2f}, {dz:+.2f}] m, heading change {cam.yaw_change_deg:+.1f} deg")
    out.append(QuestionSpec("ego_motion:direction:cam", "ego_motion", "direction", (), "How does the camera move "
                            "during the video?", None, "choice", motion, choices, clear=clear,
                            computation=cam_comp))
    if cam.distance_m >= th.camera_move:
        out.append(QuestionSpec("ego_motion:distance:cam", "ego_motion", "distance", (),
                                "How far does the camera travel during the video, in metres?", None, "quantity",
                                value=cam.distance_m, unit="m", clear=not _between(cam.distance_m, th.camera_move, th.margin),
                                computation=cam_comp + f"; distance {cam.distance_m:.2f} m"))

    out.extend(false_positive_questions(geo, labels, th, absent))
    return out


def false_positive_questions(geo: Geometry, labels: dict[int, str], th: Thresholds, absent: str) -> list[QuestionSpec]:
    """"In which direction does the X move?" about an absent X and about each moving object.

    Asked only about absent objects, "there is no X" would always be right (a text-only guesser scored 100%).
    Here it is one answer among the four directions, and quotas in ``assemble`` make it right as often as
    each of them. The absent object's option text names it; every record maps to one answer class
    (``answer_class``) so that balance is measured over the label set, not over the many names.
    """
    out = []
    if not all(labels.values()):
        # Objects found by discovery have no names: "is there a purple cylinder?" about a street says nothing
        # about the video, and a named question about an unnamed object cannot be asked.
        return out
    duration = float(geo.times[-1] - geo.times[0])
    for oid, track in sorted(geo.tracks.items()):
        k = object_kinematics(geo, track)
        chord = k.displacement_m / duration
        direction, dominant = _dominant(float(k.displacement[0]), float(k.displacement[2]))
        name = labels[oid]
        out.append(QuestionSpec(
            f"false_positive:direction:{oid}", "false_positive", "direction", (oid,),
            f"In which direction does the {name} move, as seen from the camera's initial position?", None,
            "choice", direction,
            (absent_text(name),) + DIRECTIONS[:4],
            clear=chord >= th.still_speed and not _between(chord, th.still_speed, th.margin) and dominant,
            computation=f"the {name} is present; ground-plane displacement dx = {k.displacement[0]:+.2f} m "
            f"(right +), dz = {k.displacement[2]:+.2f} m (away +)", primary=oid))
    out.append(QuestionSpec(f"false_positive:direction:{absent}", "false_positive", "direction", (),
                            f"In which direction does the {absent} move, as seen from the camera's initial "
                            "position?", None, "choice", absent_text(absent),
                            (absent_text(absent),) + DIRECTIONS[:4],
                            computation=f"no object labelled '{absent}' is present in any frame"))
    return out


# Per multiple-choice category, the classes its categorical answer can take: what balance is measured over
# (mc records whose answer is a number, e.g. "1.20 m", belong to no label set).
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "translational": DIRECTIONS,
    "rotational": ROTATION_LABELS,
    "speed_acceleration": SPEED_CHANGES,
    "object_camera_distance": DISTANCE_LABELS,
    "ego_motion": CAMERA_MOTIONS,
    "counting": COUNTS,
    "false_positive": (ABSENT,) + DIRECTIONS[:4],
    "spatial_relation": RELATIONS,
}


def answer_class(category: str, text: str) -> str:
    """The label-set class of an answer text: false-positive answers about different absent objects are
    one class ("there is no X in the video"); every other answer text is its own class."""
    if category == "false_positive" and text.startswith("there is no "):
        return ABSENT
    return text



def absent_label(present: set[str], rng: np.random.Generator) -> str:
    """A colour-and-shape label not in the clip, uniform over the rest: present objects are also uniform
    over colours and shapes, so the name does not tell whether the object is there."""
    candidates = [f"{c} {s}" for s in SHAPES for c in COLORS if f"{c} {s}" not in present]
    return candidates[int(rng.integers(len(candidates)))]


def all_questions(geo: Geometry, labels: dict[int, str], th: Thresholds, absent: str) -> dict[str, QuestionSpec]:
    specs = object_questions(geo, labels, th) + relation_questions(geo, labels, th) + scene_questions(geo, labels, th, absent)
    return {s.key: s for s in specs}
