"""Precomputed teacher targets: the teacher runs once per distinct (clip, student frames), the files hold
its outputs, the folder is swapped in whole, and a missing index, file or record or a grid mismatch is a
clear error. The teacher's input is the raw frames, never the Set-of-Marks image."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from components.config import ModelConfig, TeacherConfig
from components.teacher import (
    TeacherError,
    TeacherResult,
    batch_input,
    load_targets,
    load_teacher,
    record_key,
    teacher_input,
    write_targets,
)


@pytest.fixture(scope="module")
def teacher(trained: TeacherResult, teacher_cfg: TeacherConfig, model_cfg: ModelConfig):
    return load_teacher(trained.out, teacher_cfg, model_cfg)


@pytest.fixture(scope="module")
def written(tmp_path_factory, teacher, records: list[dict], model_cfg: ModelConfig) -> tuple[Path, dict, list]:
    calls = []
    encode = teacher.encode
    teacher.encode = lambda frames, times: calls.append(len(frames)) or encode(frames, times)
    try:
        out = tmp_path_factory.mktemp("targets") / "targets"
        return out, write_targets(teacher, records, model_cfg, out), calls
    finally:
        del teacher.encode


def test_once_per_distinct_clip_and_frames(written, records: list[dict], model_cfg: ModelConfig) -> None:
    out, summary, calls = written
    keys = {record_key(r, model_cfg) for r in records}
    assert sum(calls) == summary["keys"] == len(keys) < len(records) == summary["records"]
    index = json.loads((out / "index.json").read_text())
    assert index["grid"] == {"frames": 4, "height": 2, "width": 2} and len(index["teacher"]["digest"]) == 64
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.json", *(f"{k}.npz" for k in keys)])
    assert not list(out.parent.glob(".targets.*"))  # no temporaries left


def test_targets_are_the_teachers_outputs(written, teacher, records: list[dict], model_cfg: ModelConfig) -> None:
    out, _, _ = written
    record = records[-1]
    latent, maps = load_targets(out, record, model_cfg)
    assert latent.shape == (4, 2, 2, teacher.channels) and latent.dtype == np.float32
    with torch.no_grad():
        expected = teacher.encode(*batch_input([record], model_cfg))
        assert np.allclose(latent, expected[0].numpy(), rtol=2e-3, atol=2e-3)  # float16
        for m, shape in {"depth": 1, "flow": 2, "motion": 1, "camray": 6}.items():
            assert maps[m].shape == (4, shape, teacher.map_size, teacher.map_size)
            assert np.allclose(maps[m], teacher.decode(expected, m)[0].numpy(), rtol=2e-3, atol=2e-3)


def test_clear_errors(written, records: list[dict], model_cfg: ModelConfig, tmp_path: Path) -> None:
    out, _, _ = written
    with pytest.raises(TeacherError, match=r"nothing/index.json is missing"):
        load_targets(tmp_path / "nothing", records[0], model_cfg)
    with pytest.raises(TeacherError, match="grid"):
        load_targets(out, records[0], replace(model_cfg, frame_size=112))
    with pytest.raises(TeacherError, match="no teacher targets"):
        load_targets(out, {**records[0], "id": "not-a-record"}, model_cfg)
    with pytest.raises(TeacherError, match="now sees"):  # the record's frames changed since
        load_targets(out, {**records[0], "frames": [f + 1 for f in records[0]["frames"]]}, model_cfg)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "index.json").write_bytes((out / "index.json").read_bytes())
    with pytest.raises(TeacherError, match=rf"{record_key(records[0], model_cfg)}.npz is missing"):
        load_targets(copy, records[0], model_cfg)


def test_a_failed_write_keeps_the_previous_targets(written, teacher, records: list[dict], model_cfg: ModelConfig,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "targets"
    write_targets(teacher, records[:5], model_cfg, out)
    before = (out / "index.json").read_text()
    with pytest.raises(FileNotFoundError):
        gone = {**records[0], "id": "x", "clip_id": "gone", "frame_paths": ["/gone/left/000000.png"] * 4}
        write_targets(teacher, [*records, gone], model_cfg, out)
    assert (out / "index.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["targets"]


def test_teacher_input_is_the_raw_frames_never_the_set_of_marks(records: list[dict], model_cfg: ModelConfig) -> None:
    record = next(r for r in records if r["som_image"])
    frames, times = teacher_input(record, model_cfg)
    assert frames.shape == (4, 3, 56, 56) and times.tolist() == pytest.approx(record["timestamps"])
    with Image.open(record["frame_paths"][0]) as raw:
        expected = np.asarray(raw.convert("RGB").resize((56, 56), Image.Resampling.BICUBIC))
    assert np.array_equal((frames[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), expected)
