"""Video-R1's temporal contrast (T-GRPO): reward correct answers only when frame order helped.

Video-R1 generates each prompt's group twice, on the ordered frames and on randomly shuffled frames, and
compares the two groups' accuracy rewards: when p >= mu * p~ (p, p~ the mean accuracy on ordered and
shuffled frames; mu = 0.8) every *correct* ordered completion gets an extra alpha = 0.3 on its accuracy
reward; otherwise nobody does. A model that answers as well without the temporal order earns nothing
extra, which pushes it to use the order. (Its ``grpo_trainer.py``: ``acc_mean >= 0.8 * shuffled_acc_mean``,
bonus to completions whose accuracy reward is > 0.1.)

Here that is one pure function of the two groups' accuracy rewards; the GRPO wiring generates the shuffled
group and adds the bonus (weighted like the accuracy term, as Video-R1 adds it to the accuracy column).
mu, alpha and the switch are ``RewardsConfig.temporal_ratio``, ``temporal_bonus`` and ``temporal_contrast``.
Departures: the comparison is ``>=`` as in Video-R1's code (a tie p = mu * p~ earns the bonus); "correct"
is an accuracy of at least ``answers.NUMERIC_CORRECT_MRA`` (1 for a right letter, MRA >= 0.5 for a
number: the evaluation's definition) rather than Video-R1's > 0.1, so the bonus means the same thing as
the correctness we report; None (unscorable) accuracies are left out of the means and earn no bonus.
"""

from __future__ import annotations

from components.config import RewardsConfig
from components.evaluation.answers import NUMERIC_CORRECT_MRA


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def temporal_applies(ordered: list[float | None], shuffled: list[float | None], cfg: RewardsConfig) -> bool:
    """Whether the ordered group's mean accuracy reaches ``temporal_ratio`` x the shuffled group's."""
    p, p_shuffled = _mean(ordered), _mean(shuffled)
    if p is None or p_shuffled is None:
        return False
    return p >= cfg.temporal_ratio * p_shuffled


def temporal_bonus(ordered_correct: list[float | None], shuffled_correct: list[float | None],
                   cfg: RewardsConfig) -> list[float]:
    """Per ordered completion: ``cfg.temporal_bonus`` when it is correct and the contrast holds, else 0.

    ``ordered_correct`` / ``shuffled_correct`` are one prompt's accuracy rewards on ordered / shuffled
    frames. All zeros when ``cfg.temporal_contrast`` is off or either group has no scorable value.
    """
    if not cfg.temporal_contrast or not temporal_applies(ordered_correct, shuffled_correct, cfg):
        return [0.0] * len(ordered_correct)
    return [cfg.temporal_bonus if v is not None and v >= NUMERIC_CORRECT_MRA else 0.0
            for v in ordered_correct]
