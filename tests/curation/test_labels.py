"""Labels real video needs: exactly one true option for a camera that travels and turns, and objects without
names (found by discovery) asked about by their region marks only."""

from __future__ import annotations

import numpy as np
import pytest

from components.config import CurationConfig
from components.curation.geometry import Geometry, Track
from components.curation.questions import CAMERA_MOTIONS, CAMERA_TURNING, all_questions, camera_motion_label

TH = CurationConfig().thresholds


def _pose(x: float = 0.0, z: float = 0.0, heading_deg: float = 0.0) -> np.ndarray:
    a = np.radians(heading_deg)  # clockwise seen from above: forward (+z) turns toward +x ("turning right")
    T = np.eye(4)
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = [x, 0, z]
    return T


def _true_options(distance: float, dx: float, dz: float, yaw: float, label: str, choices: tuple[str, ...]) -> list:
    """Which of ``choices`` describe the motion: a travel label is true when the camera travels that way, a turn
    label when it turns that way, a combination when both are."""
    travel = None
    if distance >= TH.camera_move:
        travel = ("forward" if dz > 0 else "backward") if abs(dz) >= abs(dx) else ("to the right" if dx > 0 else
                                                                                   "to the left")
    turn = ("turning right" if yaw > 0 else "turning left") if abs(yaw) >= TH.camera_turn_deg else None
    facts = {travel, turn} - {None}

    def true(option: str) -> bool:
        parts = set(option.split(" while "))
        if option == "it stays still":
            return not facts
        return parts <= facts and (len(parts) == len(facts) or option == label)

    return [c for c in choices if true(c)]


@pytest.mark.parametrize("distance,dx,dz,yaw", [
    (8.0, 0.4, 8.0, 35.0),  # a car taking a right bend: forward and turning right
    (8.0, 0.4, 8.0, -35.0),
    (3.0, 0.0, -3.0, 20.0),  # reversing while turning
    (8.0, 0.3, 8.0, 1.0),  # straight ahead
    (0.0, 0.0, 0.0, 40.0),  # turning on the spot
    (0.0, 0.0, 0.0, 0.0),  # still
])
def test_the_camera_label_is_the_one_true_option(distance, dx, dz, yaw):
    label, choices, clear = camera_motion_label(distance, dx, dz, yaw, TH)
    assert clear and label in choices
    assert _true_options(distance, dx, dz, yaw, label, choices) == [label]


def test_travelling_and_turning_says_both():
    label, choices, _ = camera_motion_label(8.0, 0.4, 8.0, 35.0, TH)
    assert label == "forward while turning right" and choices == CAMERA_TURNING
    # neither single motion is offered beside it: each is half true
    assert "forward" not in choices and "turning right" not in choices
    assert camera_motion_label(8.0, 0.4, 8.0, 1.0, TH)[:2] == ("forward", CAMERA_MOTIONS)


def test_a_turn_near_its_threshold_is_not_asked():
    assert not camera_motion_label(8.0, 0.4, 8.0, TH.camera_turn_deg * 1.1, TH)[2]


def test_a_clip_that_drives_through_a_bend_gets_the_combined_label():
    # The camera drives 8 m and turns 35 deg right (issue 12's van clip): before, "forward" with
    # "turning right" also offered.
    T = 9
    poses = np.stack([_pose(x=0.5 * (i / (T - 1)) ** 2 * 2, z=8.0 * i / (T - 1), heading_deg=35.0 * i / (T - 1))
                      for i in range(T)])
    geo = Geometry(np.arange(T) / 8.0, poses, {})
    spec = all_questions(geo, {}, TH, "red cube")["ego_motion:direction:cam"]
    assert spec.correct == "forward while turning right" and spec.clear
    assert "turning right" not in spec.choices and "forward" not in spec.choices


def _geo_with_objects(labels: dict[int, str]) -> Geometry:
    T = 9
    times = np.arange(T) / 4.0
    tracks = {}
    for i, label in labels.items():
        centers = np.stack([np.linspace(-1, 1, T) * i, np.full(T, 0.5), np.full(T, 6.0 + 2 * i)], axis=1)
        tracks[i] = Track(i, label, centers, centers, 1.5, 1.8, 0.0, 1.0)
    return Geometry(times, np.stack([_pose(z=0.3 * k) for k in range(T)]), tracks)


def test_unnamed_objects_are_asked_by_region_only():
    specs = all_questions(_geo_with_objects({1: "", 2: ""}), {1: "", 2: ""}, TH, "red cube")
    about_objects = [s for s in specs.values() if s.object_ids]
    assert about_objects, "object questions are still asked"
    assert all(s.by_name is None and s.by_region for s in about_objects if s.category != "counting")
    # No false-positive question: the absent label comes from the synthetic vocabulary, meaningless for a street.
    assert not [s for s in specs.values() if s.category == "false_positive"]


def test_named_objects_keep_both_phrasings():
    specs = all_questions(_geo_with_objects({1: "red cube", 2: "blue sphere"}), {1: "red cube", 2: "blue sphere"},
                          TH, "green cone")
    direction = specs["translational:direction:1"]
    assert direction.by_name and "the red cube" in direction.by_name and direction.by_region
    relation = specs["spatial_relation:first:1-2"]
    assert "the red cube relative to the blue sphere" in relation.by_name
    assert [s for s in specs.values() if s.category == "false_positive"]
