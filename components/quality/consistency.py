"""Record checks that compare fields with each other or with the files they name.

``table.py`` derives the structural columns (a field is present, has its type, the letter is in range);
the rules here catch records that are well-formed but contradict themselves, the corruptions a schema
alone lets through: an unknown extra field, a blank question, the same option twice, frame numbers
that are not the frames the paths name, timestamps that do not follow from the frame numbers and the
clip's frame rate, ``solution.answer`` or ``answer_value`` disagreeing with the answer, a frame path
that is not an image.

Each function returns plain scalars (``None`` where the rule does not apply, so GX skips the record).
"""

from __future__ import annotations

import decimal
import itertools
import json
import math
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import pandas as pd

from components.curation.schema import LETTERS, RECORD_FIELDS
from components.evaluation.answers import normalise

# Text fields a record cannot do without: an empty question or answer text trains on nothing.
TEXT_FIELDS: tuple[str, ...] = ("id", "qid", "clip_id", "question", "answer_text", "cot")
# Timestamps are written rounded to 1e-4 s; allow a few roundings on the line through the first frame.
TIMESTAMP_TOLERANCE_S = 2e-3
# Two records of one clip (or a record and the clip's meta.json) agree on the frame rate within this.
FPS_RELATIVE_TOLERANCE = 0.01
_LEADING_NUMBER = re.compile(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def extra_fields(record: dict[str, Any]) -> str | None:
    """Fields outside the contract: the gate would pass them and a later stage trip over them."""
    return ", ".join(sorted(set(record) - set(RECORD_FIELDS))) or None


def blank_fields(record: dict[str, Any]) -> str | None:
    """The ``TEXT_FIELDS`` that are strings but empty or only whitespace (null and type are checked apart)."""
    blank = [name for name in TEXT_FIELDS if isinstance(record.get(name), str) and not record[name].strip()]
    return ", ".join(blank) or None


def mc_options_distinct(options: Any) -> bool | None:
    """mc options are non-blank texts, pairwise different as the answer extractor compares them
    (``evaluation.answers.normalise``: case and punctuation ignored), so every answer maps to one option."""
    if not isinstance(options, list):
        return None
    if not all(isinstance(o, str) and o.strip() for o in options):
        return False
    normalised = [normalise(o) for o in options]
    return len(set(normalised)) == len(normalised)


def solution_answer_ok(record: dict[str, Any]) -> bool | None:
    """``solution.answer`` (and ``solution.answer_text`` when present) are the record's answer: the
    rewards score against the solution, the evaluation against the answer."""
    solution = record.get("solution")
    if not isinstance(solution, dict):
        return None  # field_types reports it
    if "answer" not in solution:
        return False
    answer, theirs = record.get("answer"), solution["answer"]
    if record.get("answer_type") == "numeric" and _is_number(answer):
        same = _is_number(theirs) and math.isclose(float(theirs), float(answer), rel_tol=1e-6, abs_tol=1e-9)
    else:
        same = theirs == answer
    if "answer_text" in solution:
        same = same and solution["answer_text"] == record.get("answer_text")
    return same


def _text_tolerance(number: str) -> float:
    """Half a unit of the last digit written: "1.50" -> 0.005, "12" -> 0.5, "1.5e3" -> 50."""
    exponent = decimal.Decimal(number).as_tuple().exponent
    return 0.5 * 10.0 ** int(exponent)


def answer_value_ok(record: dict[str, Any]) -> bool | None:
    """``answer_value`` (the quantity behind the answer) is the number the answer's text states, up to the
    text's rounding: the option text of the answer letter for mc, ``answer_text`` for numeric answers.
    None when there is no ``answer_value``; False when the answer's text states no number at all."""
    value = record.get("answer_value")
    if value is None or not _is_number(value):
        return None  # field_types reports a wrong type
    text = record.get("answer_text")
    options, answer = record.get("options"), record.get("answer")
    if record.get("answer_type") == "mc" and isinstance(options, list):
        if not (isinstance(answer, str) and answer in LETTERS[: len(options)]):
            return None  # mc_answer_letter / mc_answer_in_options report it
        text = options[LETTERS.index(answer)]
    if not isinstance(text, str):
        return None
    match = _LEADING_NUMBER.match(text)
    if match is None:
        return False
    stated = float(match.group(1))
    # answer_value itself is written rounded to 1e-4.
    return abs(stated - float(value)) <= _text_tolerance(match.group(1)) + 1e-4 + 1e-9


def frames_match_paths(frames: Any, paths: Any) -> bool | None:
    """Each frame number is the index in its path's file name (``sources.clip.frame_name``: NNNNNN.png)."""
    if not (isinstance(frames, list) and isinstance(paths, list)) or len(frames) != len(paths):
        return None  # frame_lengths_match reports it
    for frame, path in zip(frames, paths):
        if not _is_int(frame) or not isinstance(path, str):
            return False
        stem = Path(path).stem
        if not stem.isdigit() or int(stem) != frame:
            return False
    return True


def implied_fps(frames: Any, timestamps: Any) -> tuple[float | None, bool | None]:
    """(frames per second, timestamps on one line with the frame numbers).

    The timestamps must be ``t0 + |frame - frame0| / fps`` for one fps: forward records start at
    ``frame0 / fps``, reversed ones (``curation.reverse``) at 0 with decreasing frames, so only the
    differences are compared. ``(None, None)`` when the rule does not apply (fewer than two frames,
    non-numbers, timestamps not increasing: other expectations report those).
    """
    if not (isinstance(frames, list) and isinstance(timestamps, list)) or len(frames) != len(timestamps):
        return None, None
    if len(frames) < 2 or not all(_is_int(f) for f in frames) or not all(_is_number(t) for t in timestamps):
        return None, None
    span_t = timestamps[-1] - timestamps[0]
    if span_t <= 0 or any(b <= a for a, b in itertools.pairwise(timestamps)):
        return None, None
    steps = [abs(f - frames[0]) for f in frames]
    if steps[-1] == 0:
        return None, False
    fps = steps[-1] / span_t
    linear = all(
        abs(t - timestamps[0] - s / fps) <= TIMESTAMP_TOLERANCE_S for t, s in zip(timestamps, steps, strict=True)
    )
    return fps, linear


def source_fps(paths: Any, cache: dict[Path, float | None]) -> float | None:
    """The clip's frame rate from the source clip's ``meta.json`` (``<clip>/left/NNNNNN.png`` ->
    ``<clip>/meta.json``), when the frame paths lead to one; else None."""
    if not isinstance(paths, list) or not paths or not isinstance(paths[0], str):
        return None
    meta = Path(paths[0]).parent.parent / "meta.json"
    if meta not in cache:
        fps = None
        try:
            value = json.loads(meta.read_text()).get("fps")
            fps = float(value) if _is_number(value) and value > 0 else None
        except (OSError, ValueError, AttributeError):
            pass  # no readable meta.json: the clip's records are compared with each other instead
        cache[meta] = fps
    return cache[meta]


def _consensus(rates: pd.Series) -> float | None:
    """The frame rate most of a clip's records imply (rounded to 4 significant digits to group them)."""
    rounded = rates.dropna().map(lambda r: float(f"{r:.4g}"))
    return float(rounded.mode().iloc[0]) if not rounded.empty else None


def timestamps_match_fps(
    clip: pd.Series, fps: pd.Series, linear: pd.Series, meta_fps: pd.Series
) -> pd.Series:
    """Per record: its timestamps lie on one line with its frames (``implied_fps``) and that line's rate
    is the clip's, from ``meta.json`` when it was found, else the rate most of the clip's records imply
    (a record with timestamps x10 disagrees with its siblings)."""
    clip_fps: dict[Hashable, float | None] = {}
    for key, index in clip.groupby(clip, dropna=True).groups.items():
        known = meta_fps.loc[index].dropna()
        clip_fps[key] = float(known.iloc[0]) if not known.empty else _consensus(fps.loc[index])

    def one(i: Any) -> bool | None:
        if linear[i] is None:
            return None
        if not linear[i]:
            return False
        expected = clip_fps.get(clip[i])
        return expected is None or abs(fps[i] - expected) <= FPS_RELATIVE_TOLERANCE * expected

    return pd.Series([one(i) for i in clip.index], index=clip.index, dtype=object)


def is_image(path: str) -> bool:
    """The file decodes as an image (a frame path pointing at JSON or a truncated PNG does not)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return False
    return True


def unreadable_images(record: dict[str, Any], readable: dict[str, bool]) -> str | None:
    """Frame paths (and the SoM image) that exist but are not images; missing ones are ``frames_exist``'s."""
    frame_paths = record.get("frame_paths")
    paths = [p for p in frame_paths if isinstance(p, str)] if isinstance(frame_paths, list) else []
    if isinstance(record.get("som_image"), str):
        paths.append(record["som_image"])
    bad = []
    for p in paths:
        if p not in readable:
            readable[p] = not Path(p).is_file() or is_image(p)
        if not readable[p]:
            bad.append(p)
    return ", ".join(bad) or None
