"""MLLM-4D's ST-reward terms: format F, accuracy Acc, camera R_cam and object R_obj, each in [0, 1].

MLLM-4D (``qwen-vl-rft/ST-reward.py`` of its release) trains GRPO on R = 0.2 F + 0.6 Acc + 0.1 R_cam +
0.1 R_obj with

* F = 0.5 [<thinking>..</thinking> and <answer>..</answer> present] + 0.4 [``Object Center: [..]`` and
  ``Camera Center: [..]`` present] + 0.1 [the thinking is longer than 20 characters];
* Acc = 1 when the <answer> content (the whole completion without one) equals the solution's answer;
* R_cam, R_obj = exp(-mean L2 distance) between the centers the completion states and the solution's
  (initial, final), 0 on a count or shape mismatch; null entries are dropped on both sides.

Each function here is one term, unweighted (the weights are ``RewardsConfig.terms``), with TRL's calling
convention ``fn(completions, *, cfg, **columns) -> list[float | None]``. Where we depart, and why:

* Tags: the release credits a <thinking> and an <answer> block found anywhere, in any order and number.
  Here the completion must be exactly one ST-CoT (``cot.parse_cot``: one thinking then one answer block,
  nothing else around them), so "two <answer>s" or an answer before the thinking earns no tag credit.
* Thinking length: the release measures the match *with* its tags (``<thinking></thinking>`` alone is
  21 characters, so an empty thinking passes ``> 20``); we measure the stripped text between the tags.
* Centers: the release accepts any bracket content (``Camera Center: [a, b]``); we require three finite
  numbers, the same test the distance terms apply. A question with no object in its
  solution (camera-only: ego-motion, counting, false positive) needs only the Camera Center: its reference
  ST-CoT has no Object Center, and the release's rule would push GRPO to invent one.
* Accuracy: we reuse the evaluation's deterministic extraction (``evaluation.answers``), so a letter or
  the option's text counts, as at evaluation; numeric answers score VSI-Bench MRA
  (``numeric_accuracy="mra"``) or exact equality (``"exact"``), where the release compares strings.
* Centers' reward: a predicted center that is not three finite numbers scores the completion 0 (the
  release's ``literal_eval`` fails on the whole list and gives 0 too). A solution with no usable centers
  is *unscorable* (None), where the release returns 1 when the completion also states none: rewarding
  silence about an object the question does not involve would add the same constant to every completion
  of a prompt, and None makes "not applicable" visible in the logs instead.
* Null entries: solution entries that are null are dropped (the release's rule), and so are predicted
  centers whose brackets say null (or None, as a Python-minded model writes it); the remaining lists must
  then have equal length.

Every function returns a defined value for any completion: a string, None (scored as ""), or TRL's
conversational form (a list of ``{"role", "content"}`` messages, whose text contents are joined).

Parsing is linear in the completion's length. A lazy regex such as ``<thinking>(.*?)</thinking>``
rescans to the end of the text from every unclosed opening tag, so a completion of repeated
``<thinking>`` (or ``Camera Center: [`` without ``]``) costs quadratic time: seconds for 100 kB, minutes
for 1 MB, inside a GRPO step. The blocks are found with ``str.find`` instead, which stops at the first
unclosed tag (no later one can close either).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from components.config import RewardsConfig
from components.curation.cot import parse_cot
from components.evaluation.answers import extract_answer, is_correct, mean_relative_accuracy

_TAGS = ("<thinking>", "</thinking>", "<answer>", "</answer>")
# A center's label up to its opening bracket; the content runs to the next "]" (``_bracketed``). Any
# bracketed content counts: _parse_center judges it, so that a malformed center is seen (and scores 0)
# instead of being skipped. Three numbers as ``float`` reads them: a superset of what ``cot.render_cot``
# writes (``cot.CAMERA_RE``), so format and distance agree on what a stated center is.
_CENTER_LABEL = {
    "camera": re.compile(r"Camera Center:\s*\["),
    "object": re.compile(r"Object Center:\s*\["),
}
_NULL = re.compile(r"\b(?:null|none)\b", re.IGNORECASE)


def completion_text(completion: object) -> str:
    """The text of one completion: a string as is, TRL's message list joined, anything else ""."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and not isinstance(completion, (bytes, bytearray)):
        parts = []
        for message in completion:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):  # multimodal content: [{"type": "text", "text": ...}, ...]
                texts = (p.get("text") for p in content if isinstance(p, dict))
                parts.extend(t for t in texts if isinstance(t, str))
        return "".join(parts)
    return ""


def _sized(values: Any, name: str, n: int) -> list:
    if values is None:
        raise ValueError(f"reward needs the record column {name!r}")
    values = list(values)
    if len(values) != n:
        raise ValueError(f"column {name!r} has {len(values)} values for {n} completions")
    return values


def _column(columns: dict[str, Any], name: str, n: int) -> list:
    if name not in columns:
        raise ValueError(f"reward needs the record column {name!r}; got columns {sorted(columns)}")
    return _sized(columns[name], name, n)


def _record(answer_type: object, options: object, answer: object) -> dict:
    """The fields ``evaluation.answers`` reads, from one row of columns."""
    if answer_type not in ("mc", "numeric"):
        raise ValueError(f"answer_type must be 'mc' or 'numeric', got {answer_type!r}")
    return {"answer_type": answer_type, "options": list(options or []), "answer": answer}


# ---------------------------------------------------------------------------------------------- format


def first_block(text: str, open_tag: str, close_tag: str) -> str | None:
    """The text between the first ``open_tag`` and the next ``close_tag`` (what ``re.search`` of
    ``open(.*?)close`` with DOTALL finds), in linear time; None when there is no such pair."""
    start = text.find(open_tag)
    if start < 0:
        return None
    start += len(open_tag)
    end = text.find(close_tag, start)
    return None if end < 0 else text[start:end]


def _bracketed(text: str, label: re.Pattern[str]) -> list[str]:
    r"""The contents of every ``label ... ]`` in order, as ``re.findall(label + r"([^\]]*)\]")`` gives them,
    in linear time: after an opening bracket with no ``]`` behind it no later label can close either."""
    out, pos = [], 0
    while (match := label.search(text, pos)) is not None:
        end = text.find("]", match.end())
        if end < 0:
            break
        out.append(text[match.end() : end])
        pos = end + 1
    return out


def has_cot_tags(text: str) -> bool:
    """Exactly one <thinking>...</thinking> followed by exactly one <answer>...</answer>, nothing around."""
    return all(text.count(tag) == 1 for tag in _TAGS) and parse_cot(text) is not None


def _states(text: str, which: str) -> bool:
    return any(c is not None for c in predicted_centers(text, which))


def _format_one(text: str, cfg: RewardsConfig, needs_object: bool) -> float:
    f = cfg.format
    thinking = first_block(text, "<thinking>", "</thinking>")
    centers = _states(text, "camera") and (not needs_object or _states(text, "object"))
    long_enough = thinking is not None and len(thinking.strip()) > f.min_thinking_chars
    return f.tags * has_cot_tags(text) + f.centers * centers + f.length * long_enough


def format_reward(
    completions: list, *, cfg: RewardsConfig, solution: list | None = None, **_: Any
) -> list[float]:
    """F: tags + centers + thinking length, weighted by ``cfg.format`` (1.0 for a full ST-CoT).

    Without a ``solution`` column both centers are required (the release's rule).
    """
    texts = [completion_text(c) for c in completions]
    if solution is None:
        needs_object = [True] * len(texts)
    else:
        solutions = _sized(solution, "solution", len(texts))
        needs_object = [_centers_of(s, "object") is not None for s in solutions]
    return [_format_one(t, cfg, o) for t, o in zip(texts, needs_object)]


# -------------------------------------------------------------------------------------------- accuracy


def accuracy_reward(completions: list, *, cfg: RewardsConfig, **columns: Any) -> list[float]:
    """Acc: 1/0 for multiple choice (letter or option text); MRA or exact match for numeric answers."""
    texts = [completion_text(c) for c in completions]
    n = len(texts)
    rows = zip(texts, *(_column(columns, k, n) for k in ("answer_type", "options", "answer")))
    out = []
    for text, answer_type, options, answer in rows:
        record = _record(answer_type, options, answer)
        extracted = extract_answer(text, record)
        if answer_type == "mc":
            out.append(float(is_correct(extracted, record)))
            continue
        truth = float(answer)
        if cfg.numeric_accuracy == "mra":
            out.append(mean_relative_accuracy(extracted.value, truth))
        else:  # "exact": the same number; the tolerance only absorbs float parsing
            value = extracted.value
            out.append(float(value is not None and math.isclose(value, truth, rel_tol=1e-9, abs_tol=1e-9)))
    return out


def format_valid_reward(completions: list, *, cfg: RewardsConfig, **columns: Any) -> list[float]:
    """1 when the completion's <answer> tag holds a parsable answer (``ExtractedAnswer.format_valid``).

    For logging (weight 0): it tracks how often GRPO completions stay answerable.
    """
    texts = [completion_text(c) for c in completions]
    n = len(texts)
    rows = zip(texts, *(_column(columns, k, n) for k in ("answer_type", "options", "answer")))
    return [float(extract_answer(t, _record(at, o, a)).format_valid) for t, at, o, a in rows]


# ------------------------------------------------------------------------------------ camera and object


def _parse_center(content: str) -> list[float] | None:
    """Three finite numbers from a bracket's content, else None."""
    parts = content.split(",")
    if len(parts) != 3:
        return None
    try:
        values = [float(p) for p in parts]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def predicted_centers(text: str, which: str) -> list[list[float] | None]:
    """Every ``<Camera|Object> Center: [..]`` in order; null ones dropped, malformed ones as None."""
    return [_parse_center(m) for m in _bracketed(text, _CENTER_LABEL[which]) if not _NULL.search(m)]


def _centers_of(solution: object, which: str) -> list[list[float]] | None:
    """The solution's non-null centers, or None when there are none or one is not three finite numbers."""
    if not isinstance(solution, dict):
        return None
    entries = solution.get(f"{which}_center")
    if not isinstance(entries, (list, tuple)):
        return None
    kept = []
    for entry in entries:
        if entry is None:
            continue
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            return None
        try:
            values = [float(x) for x in entry]
        except (TypeError, ValueError):
            return None
        if not all(math.isfinite(v) for v in values):
            return None
        kept.append(values)
    return kept or None


def center_score(predicted: list[list[float] | None], truth: list[list[float]]) -> float:
    """exp(-mean L2) over paired centers; 0 on a count mismatch or a malformed prediction."""
    if len(predicted) != len(truth) or any(p is None for p in predicted):
        return 0.0
    mean = sum(math.dist(p, t) for p, t in zip(predicted, truth)) / len(truth)
    return math.exp(-mean)


def _centers_reward(completions: list, solution: list | None, which: str) -> list[float | None]:
    texts = [completion_text(c) for c in completions]
    out: list[float | None] = []
    for text, sol in zip(texts, _sized(solution, "solution", len(texts))):
        truth = _centers_of(sol, which)
        out.append(None if truth is None else center_score(predicted_centers(text, which), truth))
    return out


def camera_reward(
    completions: list, *, cfg: RewardsConfig, solution: list | None = None, **_: Any
) -> list[float | None]:
    """R_cam: exp(-mean L2) to ``solution.camera_center`` (initial, final); None without one."""
    return _centers_reward(completions, solution, "camera")


def object_reward(
    completions: list, *, cfg: RewardsConfig, solution: list | None = None, **_: Any
) -> list[float | None]:
    """R_obj: exp(-mean L2) to ``solution.object_center``; None for camera-only questions."""
    return _centers_reward(completions, solution, "object")
