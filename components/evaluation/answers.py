"""Deterministic answer extraction: a completion's text -> an option letter or a number.

There is no LLM judge: the same completion always scores the same, offline, in CI and in GRPO
rewards alike. The first source that parses wins:

1. the last ``<answer>...</answer>`` tag (the ST-CoT format; only this sets ``format_valid``),
2. the last "answer:" / "answer is" phrase (the rest of that line),
3. a lone option letter: the whole completion is "B", "(B)", "B." or starts "B. left" / "(B) left",
4. an option's text in the completion: exact, then case/punctuation-insensitive equality, then
   unique containment (several contained options resolve to the one that contains all the others:
   "turning left" over "left"; anything else is ambiguous and extracts nothing).

Inside a span from 1 or 2 a letter is read first, then option text. A letter beyond the record's
options ("E" with four options) is not an answer. Numeric records take the first number of the
chosen span (of the whole completion when there is no tag or phrase): "about 3.2 m" -> 3.2.

Departures from the official scorers: where a benchmark maps free text onto an option with an LLM,
this module cannot; a completion that names neither a letter nor an option text is wrong and
format-invalid. A multiple-choice answer counts as correct when its option *text* equals the true
option's text, so a record with a duplicated option (VLM4D ``validation_633`` lists "away from the
camera" twice) accepts either letter.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

from components.curation.schema import LETTERS

# A numeric answer is "correct" (for the per-record flag) when its MRA is at least this: its relative
# error is below 0.3, the first five of the ten MRA thresholds. Aggregates use the MRA itself.
NUMERIC_CORRECT_MRA = 0.5
MRA_THRESHOLDS = tuple(round(0.50 + 0.05 * i, 2) for i in range(10))  # VSI-Bench's

_OPEN_TAG = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE_TAG = re.compile(r"</answer>", re.IGNORECASE)


def mean_relative_accuracy(pred: float | None, truth: float) -> float:
    """VSI-Bench's MRA, with the departures ``metrics`` documents (rounded relative error, truth 0)."""
    if pred is None or not math.isfinite(pred):
        return 0.0
    if truth == 0:
        return 1.0 if pred == 0 else 0.0
    rel = round(abs(pred - truth) / abs(truth), 9)
    return sum(rel < round(1.0 - t, 9) for t in MRA_THRESHOLDS) / len(MRA_THRESHOLDS)


def _last_answer_tag(text: str) -> str | None:
    """The last <answer>...</answer> content, in linear time: ``re.findall`` with a lazy ``(.*?)`` rescans
    the rest of the text from every unclosed ``<answer>`` (15 s on a 1 MB reward-hacking completion)."""
    last, pos = None, 0
    while (opened := _OPEN_TAG.search(text, pos)) is not None:
        closed = _CLOSE_TAG.search(text, opened.end())
        if closed is None:
            break  # no later <answer> can close either
        last, pos = text[opened.end() : closed.start()], closed.end()
    return last
_PHRASE = re.compile(r"\banswer(?:\s+is\b|\s*:)", re.IGNORECASE)
_LONE_LETTER = re.compile(r"\W*(?:(?i:option)\s+)?([A-E])\W*")
_LEADING_LETTER = re.compile(r"\W*(?:(?i:option)\s+)?([A-E])(?:[.):]|\s+[-–])\s*\S")
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class ExtractedAnswer:
    letter: str | None  # multiple choice: the option letter, when one was found
    value: float | None  # numeric: the number, when one was found
    format_valid: bool  # an <answer> tag whose content parsed
    method: str  # where it came from: "tag:letter", "phrase:option_text", "letter", "number", "none", ...

    def as_dict(self) -> dict:
        return asdict(self)


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, whitespace collapsed: "Not moving." -> "not moving"."""
    return " ".join(re.sub(r"[^\w\s]", " ", str(text).lower()).split())


def _letter_in(span: str, n_options: int) -> str | None:
    match = _LONE_LETTER.fullmatch(span) or _LEADING_LETTER.match(span)
    if match and LETTERS.index(match.group(1)) < n_options:
        return match.group(1)
    return None


def _option_in(span: str, options: list[str]) -> str | None:
    stripped = span.strip()
    for i, option in enumerate(options):
        if stripped == option.strip():
            return LETTERS[i]
    norm = normalise(span)
    if not norm:
        return None
    normed = [normalise(o) for o in options]
    for i, option in enumerate(normed):
        if norm == option:
            return LETTERS[i]
    # First index of each distinct option text contained as whole words in the span.
    hits: dict[str, int] = {}
    for i, option in enumerate(normed):
        if option and option not in hits and re.search(rf"\b{re.escape(option)}\b", norm):
            hits[option] = i
    covering = [o for o in hits if all(other in o for other in hits)]
    return LETTERS[hits[covering[0]]] if len(covering) == 1 else None


def _first_number(span: str) -> float | None:
    match = _NUMBER.search(span)
    return float(match.group(0)) if match else None


def _parse(span: str, options: list[str], numeric: bool) -> tuple[str | None, float | None, str | None]:
    """(letter, value, how) from one span; ``how`` is None when nothing parsed."""
    if numeric:
        value = _first_number(span)
        return None, value, "number" if value is not None else None
    if letter := _letter_in(span, len(options)):
        return letter, None, "letter"
    if letter := _option_in(span, options):
        return letter, None, "option_text"
    return None, None, None


def _last_phrase(text: str) -> str | None:
    matches = list(_PHRASE.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end() :].strip()
    return rest.split("\n", 1)[0] if rest else None


def extract_answer(text: str, record: dict) -> ExtractedAnswer:
    """The answer a completion gives to ``record`` (see the module docstring for the precedence)."""
    numeric = record["answer_type"] == "numeric"
    options = [str(o) for o in record["options"]]
    spans: list[tuple[str, str]] = []
    if (tag := _last_answer_tag(text)) is not None:
        spans.append(("tag", tag))
    if (phrase := _last_phrase(text)) is not None:
        spans.append(("phrase", phrase))
    for source, span in spans:
        letter, value, how = _parse(span, options, numeric)
        if how is not None:
            return ExtractedAnswer(letter, value, source == "tag", f"{source}:{how}")
    letter, value, how = _parse(text, options, numeric)
    return ExtractedAnswer(letter, value, False, how or "none")


def truth_letter(record: dict) -> str:
    """The record's answer as a letter; an answer given as option text maps back to its letter."""
    answer, options = str(record["answer"]), [str(o) for o in record["options"]]
    if answer in LETTERS[: len(options)]:
        return answer
    for i, option in enumerate(options):
        if normalise(option) == normalise(answer):
            return LETTERS[i]
    raise ValueError(f"record {record.get('id')!r}: answer {answer!r} is neither a letter nor an option")


def is_correct(extracted: ExtractedAnswer, record: dict) -> bool:
    """Multiple choice: the extracted option's text is the true option's text. Numeric: MRA >= 0.5."""
    if record["answer_type"] == "numeric":
        return mean_relative_accuracy(extracted.value, float(record["answer"])) >= NUMERIC_CORRECT_MRA
    if extracted.letter is None:
        return False
    options, truth = [str(o) for o in record["options"]], truth_letter(record)
    if extracted.letter == truth:
        return True
    return normalise(options[LETTERS.index(extracted.letter)]) == normalise(options[LETTERS.index(truth)])
