"""The ``scenes`` stage (what ``dvc repro`` and the ``curation`` flow run) takes a real source from params."""

from __future__ import annotations

from components import stages
from components.config import load_params
from components.sources.clip import list_clips, read_meta
from tests.conftest import SMOKE
from tests.sources.helpers import write_folder


def test_the_scenes_stage_ingests_a_real_source_from_params(tmp_path):
    recording = write_folder(tmp_path / "recording", n=7, poses=True)
    params = load_params(SMOKE, [
        "source.format=folder", f"source.root={recording}", "source.window=3",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
    ])
    out = tmp_path / "clips"
    (out / "scene_0000").mkdir(parents=True)  # a rendered clip from before: the source replaces the folder
    (out / "scene_0000" / "meta.json").write_text("{}")
    clips = stages.scenes(params, out, root=tmp_path, metrics_file=tmp_path / "scenes.json")
    assert [c.name for c in clips] == [c.name for c in list_clips(out)] == ["recording_000000", "recording_000003"]
    assert [read_meta(c).num_frames for c in clips] == [3, 3]
    assert read_meta(clips[1]).poses is not None
    assert '"stereo_frames": 6' in (tmp_path / "scenes.json").read_text()
