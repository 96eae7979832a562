"""Bad clips are quarantined with the clip and the file named; the other clips are still curated;
outputs are written atomically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest

from components.curation.clip import curate_clip
from components.curation.run import curate
from components.io import read_jsonl, write_jsonl


def _copy(smoke_scenes: Path, dst: Path, n: int = 4) -> list[Path]:
    clips = sorted(p for p in smoke_scenes.iterdir() if p.is_dir())[:n]
    for c in clips:
        shutil.copytree(c, dst / c.name)
    return sorted(dst.iterdir())


def _edit_meta(clip: Path, **changes) -> None:
    meta = json.loads((clip / "meta.json").read_text())
    for key, value in changes.items():
        if "." in key:
            a, b = key.split(".")
            meta[a][b] = value
        else:
            meta[key] = value
    (clip / "meta.json").write_text(json.dumps(meta))


BREAKAGES = {
    "truncated frame": (lambda c: (c / "left/000001.png").write_bytes((c / "left/000001.png").read_bytes()[:80]),
                        "left/000001.png", "unreadable or truncated"),
    "missing right frame": (lambda c: (c / "right/000002.png").unlink(), "right/000002.png", "missing"),
    "mismatched sizes": (lambda c: cv2.imwrite(str(c / "right/000000.png"), cv2.imread(str(c / "right/000000.png"))[:-8]),
                         "right/000000.png", "differs"),
    "non-positive baseline": (lambda c: _edit_meta(c, baseline_m=-0.1), "meta.json", "baseline_m must be > 0"),
    "NaN calibration": (lambda c: (c / "meta.json").write_text((c / "meta.json").read_text().replace(
        '"fx": ', '"fx": NaN, "_fx": ', 1)), "meta.json", "K.fx is not finite"),
    "empty clip": (lambda c: _edit_meta(c, num_frames=0), "meta.json", "empty"),
}


@pytest.mark.parametrize("case", sorted(BREAKAGES))
def test_bad_clip_is_quarantined_naming_clip_and_file(case, smoke_params, smoke_scenes, tmp_path):
    clip = _copy(smoke_scenes, tmp_path / "clips", n=1)[0]
    breakage, file, reason = BREAKAGES[case]
    breakage(clip)
    result = curate_clip(clip, smoke_params.curation, tmp_path / "out")
    assert result.error is not None
    assert clip.name in result.error and file in result.error and reason in result.error, result.error


def test_one_bad_clip_does_not_stop_the_others(smoke_params, smoke_scenes, tmp_path):
    clips = _copy(smoke_scenes, tmp_path / "clips", n=5)
    (clips[0] / "right/000000.png").unlink()
    stats = curate(tmp_path / "clips", smoke_params.curation, tmp_path / "out", progress=False)
    quarantine = json.loads((tmp_path / "out/quarantine.json").read_text())
    assert stats["n_quarantined"] == 1 and quarantine["clips"][0]["clip_id"] == clips[0].name
    assert "right/000000.png" in quarantine["clips"][0]["reason"]
    assert sum(stats["records"].values()) > 0


def test_no_curatable_clip_is_an_error(smoke_params, tmp_path):
    (tmp_path / "clips" / "empty_clip").mkdir(parents=True)
    (tmp_path / "clips" / "empty_clip" / "meta.json").write_text("{not json")
    with pytest.raises(ValueError, match="no clip could be curated") as info:
        curate(tmp_path / "clips", smoke_params.curation, tmp_path / "out", progress=False)
    # The reasons are in the error; nothing is written (an old output would stay as it was).
    assert "empty_clip" in str(info.value) and "not valid JSON" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_jsonl_writes_are_atomic(tmp_path):
    path = tmp_path / "sft.jsonl"
    write_jsonl(path, [{"id": "a"}, {"id": "b"}])

    def rows():
        yield {"id": "c"}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"id": "a"}, {"id": "b"}]
    assert [p.name for p in tmp_path.iterdir()] == ["sft.jsonl"]  # no temporary left behind
