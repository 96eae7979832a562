"""Video-R1's temporal contrast on literal accuracy lists."""

from __future__ import annotations

import pytest

from components.config import RewardsConfig
from components.rewards import temporal_applies, temporal_bonus

ON = RewardsConfig(temporal_contrast=True)  # bonus 0.3, ratio 0.8


@pytest.mark.parametrize(
    ("ordered", "shuffled", "expected"),
    [
        ([1, 0, 1, 0], [1, 1, 0, 0], [0.3, 0.0, 0.3, 0.0]),  # 0.5 >= 0.8 x 0.5
        ([1, 0, 0, 0], [1, 1, 1, 0], [0.0] * 4),  # 0.25 < 0.8 x 0.75: order did not help
        ([1, 1, 0, 0, 0], [1, 1, 0, 0], [0.3, 0.3, 0.0, 0.0, 0.0]),  # a tie (0.4 = 0.8 x 0.5) earns it
        ([0, 0], [0, 0], [0.0, 0.0]),  # the contrast holds but nobody is correct
        ([1, 1], [0, 0], [0.3, 0.3]),
        ([0.6, 0.3, 1.0], [0.1, 0.2], [0.3, 0.0, 0.3]),  # numeric MRA: correct means >= 0.5
        ([1, None, 0], [0.5], [0.3, 0.0, 0.0]),  # None is left out of the mean and earns nothing
        ([1, 1], [], [0.0, 0.0]),  # no shuffled group to compare with
        ([None, None], [1], [0.0, 0.0]),
        ([], [1, 0], []),
    ],
)
def test_temporal_bonus(ordered, shuffled, expected) -> None:
    assert temporal_bonus(ordered, shuffled, ON) == pytest.approx(expected)


def test_temporal_bonus_follows_the_config() -> None:
    assert temporal_bonus([1, 1], [0, 0], RewardsConfig()) == [0.0, 0.0]  # temporal_contrast off by default
    cfg = RewardsConfig(temporal_contrast=True, temporal_bonus=0.5, temporal_ratio=1.5)
    assert temporal_bonus([1, 1, 1, 0], [1, 0], cfg) == [0.5, 0.5, 0.5, 0.0]  # 0.75 >= 1.5 x 0.5
    assert temporal_bonus([1, 0], [1, 0], cfg) == [0.0, 0.0]  # 0.5 < 0.75
    assert temporal_applies([1.0], [1.0], cfg) is False
    assert temporal_applies([1.0], [1.0], ON) is True
