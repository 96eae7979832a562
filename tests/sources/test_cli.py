"""``mllm4d ingest`` end to end on a tiny folder: clips the clip contract accepts, clear errors."""

from __future__ import annotations

import json

from components.cli import main
from components.sources.clip import list_clips, read_meta
from tests.conftest import SMOKE
from tests.sources.helpers import write_folder


def test_ingest_a_folder(tmp_path, capsys):
    src = write_folder(tmp_path / "my_rec", n=7, poses=True)
    out = tmp_path / "clips"
    rc = main(["--params", str(SMOKE), "--quiet", "ingest", "--format", "folder", str(src), "--out", str(out),
               "--window", "3", "--stride", "2"])
    assert rc == 0, capsys.readouterr().err
    assert "ingested 3 clips" in capsys.readouterr().out
    clips = list_clips(out)
    assert [c.name for c in clips] == ["my_rec_000000", "my_rec_000002", "my_rec_000004"]
    assert all(read_meta(c).poses.shape == (3, 4, 4) for c in clips)

    rc = main(["--params", str(SMOKE), "--quiet", "ingest", "--format", "folder", str(src), "--out", str(out),
               "--window", "3", "--no-poses"])
    assert rc == 0 and "poses: none (dropped with --no-poses)" in capsys.readouterr().out
    meta = json.loads((out / "my_rec_000003" / "meta.json").read_text())
    assert meta["poses"] is None and meta["source"]["pose_source"] == "none (dropped with --no-poses)"


def test_unknown_format_and_bad_source_are_exit_1(tmp_path, capsys):
    src = write_folder(tmp_path / "rec", n=2)
    assert main(["--params", str(SMOKE), "--quiet", "ingest", "--format", "zed", str(src), "--out",
                 str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "unknown source format 'zed'" in err and "folder, karlsruhe, kitti, stereo4d" in err
    assert main(["--params", str(SMOKE), "--quiet", "ingest", "--format", "folder", str(src), "--out",
                 str(tmp_path / "o")]) == 1
    assert "2 frames: fewer than one window of 16" in capsys.readouterr().err
    (src / "calib.json").unlink()
    assert main(["--params", str(SMOKE), "--quiet", "ingest", "--format", "folder", str(src), "--out",
                 str(tmp_path / "o")]) == 1
    assert "calib.json: missing" in capsys.readouterr().err
