"""Clips as real stereo video gives them: no instance masks, no object names, sometimes no poses.

A clip without poses is never silently a static camera: its poses are estimated (provenance says so) or the
clip is refused with the odometry's reason. A clip without masks gets its objects discovered, asked about by
region marks only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from components.curation.assemble import build_records, label_questions
from components.curation.clip import OBJECTS_DISCOVERED, POSES_ESTIMATED, POSES_GIVEN, curate_clip
from components.sources.clip import read_meta


def _strip(src: Path, dst: Path, *, poses: bool, masks: bool) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("gt"))  # a real clip has no ground truth
    meta = json.loads((dst / "meta.json").read_text())
    if not poses:
        meta["poses"] = None
    if not masks:
        meta["objects"] = []
        shutil.rmtree(dst / "masks")
    (dst / "meta.json").write_text(json.dumps(meta))
    return dst


def _moving_camera_clip(smoke_scenes: Path) -> Path:
    """A smoke clip whose camera travels clearly (so a static camera would be a wrong label)."""
    travelling = [c for c in sorted(p for p in smoke_scenes.iterdir() if p.is_dir())
                  if np.linalg.norm(read_meta(c).poses[-1, :3, 3] - read_meta(c).poses[0, :3, 3]) > 1.0]
    assert travelling, "the smoke preset renders no clip whose camera travels: this test would check nothing"
    return travelling[0]


def test_a_clip_without_poses_gets_estimated_poses_not_a_static_camera(smoke_params, smoke_scenes, tmp_path):
    src = _moving_camera_clip(smoke_scenes)
    given = curate_clip(src, smoke_params.curation, tmp_path / "out")
    clip = _strip(src, tmp_path / src.name, poses=False, masks=True)
    result = curate_clip(clip, smoke_params.curation, tmp_path / "out")
    assert result.error is None, result.error
    assert given.pose_source == POSES_GIVEN and result.pose_source == POSES_ESTIMATED
    ego = result.est["ego_motion:direction:cam"]
    assert ego.correct != "it stays still"
    assert ego.correct == given.est["ego_motion:direction:cam"].correct
    # the camera's travel from the estimated poses is within 5% of the given poses'
    est_cam, true_cam = (np.array(r.centers["est"]["camera"][1]) for r in (result, given))
    assert np.linalg.norm(est_cam - true_cam) <= 0.05 * np.linalg.norm(true_cam)


def test_a_clip_whose_motion_cannot_be_measured_is_refused_with_the_reason(smoke_params, smoke_scenes, tmp_path):
    clip = _strip(_moving_camera_clip(smoke_scenes), tmp_path / "flat", poses=False, masks=True)
    meta = read_meta(clip)
    for side in ("left", "right"):  # textureless frames: nothing to track
        for png in (clip / side).glob("*.png"):
            cv2.imwrite(str(png), np.full((meta.height, meta.width, 3), 128, np.uint8))
    result = curate_clip(clip, smoke_params.curation, tmp_path / "out")
    assert result.error is not None and "no poses" in result.error and "odometry" in result.error, result.error


def test_a_clip_without_masks_asks_about_discovered_objects_by_region(smoke_params, smoke_scenes, tmp_path):
    clips = [_strip(c, tmp_path / "clips" / c.name, poses=True, masks=False)
             for c in sorted(p for p in smoke_scenes.iterdir() if p.is_dir())[:6]]
    results = [curate_clip(c, smoke_params.curation, tmp_path / "out") for c in clips]
    assert all(r.error is None for r in results), [r.error for r in results]
    assert all(r.object_source == OBJECTS_DISCOVERED for r in results)
    assert any(r.labels for r in results), "discovery found no object in six clips with moving objects"
    records = [r for split in build_records(label_questions(results, smoke_params.curation),
                                            smoke_params.curation).values() for r in split]
    about_objects = [r for r in records if r["regions"]]
    assert about_objects and all(r["prompt_variant"] == "region" for r in about_objects)
    assert not [r for r in records if r["category"] == "false_positive"]
    assert all(r["provenance"]["object_source"] == OBJECTS_DISCOVERED for r in records)
