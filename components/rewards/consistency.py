"""Reverse-thinking consistency (ST-R1): does the answer to a question agree with the answer to its reverse?

ST-R1 trains GRPO on forward questions and their reverses (the route back, the video backwards); its
released code rewards each with plain accuracy and format, so the reverse questions act as data. Our
``rewards.consistency_weight`` adds the agreement between the two answers the policy gives, which needs
no label: "to the left" forwards and "to the right" on the reversed video agree, "to the left" on both
does not. It is a pairwise function, so it is not a ``REGISTRY`` term (those score one completion against
its own record); the GRPO wiring pairs each forward completion with a completion of the reverse record
(``curation.reverse.reverse_record``) and adds ``consistency_weight`` x this value.

The mapping between forward and reverse answers is ``curation.reverse.RULES`` (the same table that labels
the reverse records), so agreement and labels cannot drift apart. Multiple choice: 1 when the reverse
answer is the reversal of the forward one, else 0. Numbers (answers that reversal leaves unchanged):
VSI-Bench MRA of the reverse answer against the forward one, the accuracy term's scale. A pair with a
missing answer scores 0 (nothing to agree with); a question kind with no reversal rule is None.
"""

from __future__ import annotations

import numbers

from components.curation.reverse import RULES, question_kind, reversed_answer
from components.curation.schema import LETTERS
from components.evaluation.answers import extract_answer, mean_relative_accuracy, normalise
from components.rewards.spatiotemporal import completion_text


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def reverse_agreement(forward: str | float | None, reverse: str | float | None, *, category: str,
                      kind: str) -> float | None:
    """Agreement of a forward answer and its reverse question's answer (option texts or numbers)."""
    rule = RULES.get((category, kind))
    if rule is None:
        return None
    if forward is None or reverse is None:
        return 0.0
    if isinstance(forward, str) and isinstance(reverse, str):
        # Option texts as the model may echo them: compare after normalise ("Clockwise (turning right)." ok).
        texts = {normalise(t): t for t in (rule.flips or {})}
        expected = reversed_answer(category, kind, texts.get(normalise(forward), forward))
        return float(expected is not None and normalise(expected) == normalise(reverse))
    if _is_number(forward) and _is_number(reverse) and rule.flips is None:
        return mean_relative_accuracy(float(reverse), float(forward))
    return 0.0


def _answer(completion: object, record: dict) -> str | float | None:
    extracted = extract_answer(completion_text(completion), record)
    if record["answer_type"] == "numeric":
        return extracted.value
    return None if extracted.letter is None else str(record["options"][LETTERS.index(extracted.letter)])


def consistency_reward(forward: list, reverse: list, records: list[dict]) -> list[float | None]:
    """Per pair i: ``reverse_agreement`` of ``forward[i]`` (answering ``records[i]``) and ``reverse[i]``
    (answering the reverse of ``records[i]``, which keeps its options). Any completion gives a value."""
    if not len(forward) == len(reverse) == len(records):
        raise ValueError(
            f"{len(forward)} forward, {len(reverse)} reverse completions for {len(records)} records")
    out: list[float | None] = []
    for fwd, rev, record in zip(forward, reverse, records):
        kind = question_kind(record)
        if kind is None:
            out.append(None)
            continue
        category, question = kind
        out.append(reverse_agreement(_answer(fwd, record), _answer(rev, record), category=category, kind=question))
    return out
