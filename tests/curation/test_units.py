"""Literal-input tests for the curation's geometry, kinematics, ST-CoT, regions and assembly."""

import numpy as np
import pytest

from components.config import CurationConfig
from components.curation.assemble import assign_splits, numeric_options
from components.curation.cot import parse_cot, render_cot
from components.curation.geometry import (
    Geometry,
    Track,
    backproject,
    fit_track,
    observe_object,
    relative_poses,
)
from components.curation.kinematics import camera_kinematics, heading_deg, object_kinematics
from components.curation.regions import mask_box, rle_decode, rle_encode

K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])


def _pose(x=0.0, z=0.0, heading_deg_=0.0):
    a = np.radians(heading_deg_)
    T = np.eye(4)
    # Heading clockwise seen from above: forward (+z) turns toward +x.
    T[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    T[:3, 3] = [x, 0, z]
    return T


def test_backproject_recovers_a_plane():
    depth = np.full((48, 64), 5.0, np.float32)
    mask = np.zeros((48, 64), bool)
    mask[24, 32] = True
    assert np.allclose(backproject(depth, mask, K), [[0, 0, 5]])


def test_observe_object_is_robust_to_background_pixels():
    depth = np.full((48, 64), 20.0, np.float32)
    mask = np.zeros((48, 64), bool)
    mask[14:34, 22:42] = True
    depth[mask] = 4.0
    depth[14, 22:42] = 20.0  # a bled border row, as stereo leaves at occlusions
    depth[20, 30] = np.nan
    obs = observe_object(depth, mask, K)
    width = 20 * 4.0 / 100
    assert obs.center_cam[2] == pytest.approx(4.0 + 0.4 * width, rel=0.05)
    assert obs.height == pytest.approx(0.8, rel=0.15)


def test_fit_track_has_no_lag_on_constant_velocity():
    t = np.arange(10) / 5.0
    truth = np.stack([t * 1.5, np.zeros_like(t), 6 - t], axis=1)
    noisy = truth + np.random.default_rng(0).normal(0, 0.02, truth.shape)
    noisy[3] = np.nan  # an occluded frame
    fit = fit_track(t, noisy)
    assert np.abs(fit - truth).max() < 0.05
    assert np.isfinite(fit).all()


def test_object_and_camera_kinematics():
    t = np.arange(5) / 2.0  # 2 s
    centers = np.stack([np.linspace(0, 2, 5), np.ones(5), np.full(5, 6.0)], axis=1)
    poses = np.stack([_pose(z=0.25 * i) for i in range(5)])
    geo = Geometry(t, poses, {1: Track(1, "red cube", centers, centers, 0.8, 0.8, 0.0, 1.0)})
    k = object_kinematics(geo, geo.tracks[1])
    assert k.path_length_m == pytest.approx(2.0) and k.avg_speed == pytest.approx(1.0)
    assert k.displacement_m == pytest.approx(2.0)
    cam = camera_kinematics(geo)
    assert cam.distance_m == pytest.approx(1.0) and cam.displacement[2] == pytest.approx(1.0)  # forward
    assert heading_deg(_pose(heading_deg_=30)) == pytest.approx(30)


def test_camera_direction_is_in_the_initial_camera_frame():
    # The camera starts turned 90 deg right and moves along world +x: that is "forward" for it.
    poses = np.stack([_pose(0, 0, 90), _pose(1, 0, 90)])
    cam = camera_kinematics(Geometry(np.array([0, 1.0]), poses))
    assert cam.displacement[2] == pytest.approx(1.0) and abs(cam.displacement[0]) < 1e-9
    rel = relative_poses(poses)
    assert np.allclose(rel[0], np.eye(4))


def test_cot_round_trip():
    text = render_cot(frames=[0, 7], timestamps=[0.0, 0.875], camera_centers=[[0, 0, 0], [0, 0, 1.5]],
                      object_centers=[[1.2, 0.85, 6.3], [-0.4, 0.85, 6.1]], computation="dx = -1.60 m",
                      conclusion="to the left", answer="B")
    parsed = parse_cot(text)
    assert parsed.answer == "B"
    assert parsed.camera_centers == [[0, 0, 0], [0, 0, 1.5]]
    assert parsed.object_centers[1] == [-0.4, 0.85, 6.1]
    assert parse_cot("<answer>B</answer>") is None
    assert parse_cot(text.replace("</thinking>", "")) is None


def test_rle_round_trip_and_box():
    mask = np.zeros((7, 9), bool)
    mask[2:5, 3:8] = True
    mask[6, 0] = True
    assert np.array_equal(rle_decode(rle_encode(mask)), mask)
    assert rle_encode(np.zeros((2, 2), bool))["counts"] == [4]
    mask[6, 0] = False
    assert mask_box(mask) == [3, 2, 8, 5]


@pytest.mark.parametrize("value", [0.3, 1.0, 7.5])
def test_numeric_options_are_decidable(value):
    opts = numeric_options(value, 5, np.random.default_rng(1))
    assert opts[0] == value and len(opts) == 5
    ratios = np.sort(np.asarray(opts) / value)
    steps = ratios[1:] / ratios[:-1]
    assert np.allclose(steps, steps[0]) and 1.3 <= steps[0] <= 1.7  # one ratio: a ladder, rungs >= 30% apart


def test_numeric_truth_is_not_the_option_nearest_the_mean_more_than_its_share():
    rng = np.random.default_rng(0)
    n, hits, trials = 4, 0, 2000
    for _ in range(trials):
        opts = numeric_options(float(rng.uniform(0.5, 10)), n, rng)
        hits += int(np.argmin([abs(o - np.mean(opts)) for o in opts])) == 0

    assert abs(hits / trials - 1 / n) < 0.04, hits / trials


def test_splits_are_disjoint_and_cover_every_split():
    ids = [f"c{i}" for i in range(10)]
    splits = assign_splits(ids, CurationConfig())
    assert set(splits) == set(ids)
    counts = {s: list(splits.values()).count(s) for s in ("sft", "rft", "bench")}
    assert counts == {"sft": 6, "rft": 2, "bench": 2}
    assert assign_splits(ids[:3], CurationConfig()).values() and set(assign_splits(ids[:3], CurationConfig()).values()) == {"sft", "rft", "bench"}


def test_numeric_truth_rank_is_uniform():
    rng = np.random.default_rng(0)
    ranks = [sorted(opts).index(opts[0]) for opts in (numeric_options(1.0, 4, rng) for _ in range(800))]
    counts = np.bincount(ranks, minlength=4)
    assert counts.min() > 150, counts  # ~200 each: the truth is not always a middle value
