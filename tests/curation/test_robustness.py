"""Issue 9, curation: bad masks, unsafe clip ids, one bad clip among good ones, and crash consistency.

One test per case, named after it. The crash tests SIGKILL a real subprocess that calls ``curate``,
stopped at a chosen file write (a hook on ``os.replace``, which every output write goes through), so the
kill lands after outputs began being written, not at a random moment.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from components.config import CurationConfig
from components.curation.clip import curate_clip
from components.curation.run import curate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cfg(smoke_params) -> CurationConfig:
    # In-process, one clip at a time: fast for three or four clips, and the kill hook sees every write.
    return dataclasses.replace(smoke_params.curation, workers=1)


def _copy(smoke_scenes: Path, dst: Path, n: int = 3, start: int = 0) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    for clip in sorted(p for p in smoke_scenes.iterdir() if p.is_dir())[start:start + n]:
        shutil.copytree(clip, dst / clip.name)
    return sorted(dst.iterdir())


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (dot-files included) -> its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _quarantined(out: Path) -> dict[str, str]:
    return {c["clip_id"]: c["reason"] for c in json.loads((out / "quarantine.json").read_text())["clips"]}


def _assert_quarantined_alone(out: Path, stats: dict, clip: Path, file: str, *reasons: str) -> None:
    """``clip`` (only it) is quarantined with the clip and the file named; the others were curated."""
    quarantine = _quarantined(out)
    assert stats["n_quarantined"] == 1 and stats["n_curated_clips"] == stats["n_clips"] - 1, quarantine
    reason = quarantine[clip.name]
    assert clip.name in reason and file in reason, reason
    for text in reasons:
        assert text in reason, reason
    assert sum(stats["records"].values()) > 0


# --- 3. masks ------------------------------------------------------------------------------------------------


def test_wrong_size_mask_is_quarantined(smoke_scenes, cfg, tmp_path):
    clips = _copy(smoke_scenes, tmp_path / "clips")
    mask_path = clips[0] / "masks" / "000003.png"
    mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
    h, w = mask.shape[:2]
    cv2.imwrite(str(mask_path), cv2.resize(mask, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST))
    stats = curate(tmp_path / "clips", cfg, tmp_path / "out", progress=False)
    _assert_quarantined_alone(tmp_path / "out", stats, clips[0], "masks/000003.png", f"{w // 2}x{h // 2}",
                              f"{w}x{h}")


def test_wrong_dtype_mask_is_quarantined(smoke_scenes, cfg, tmp_path):
    clip = _copy(smoke_scenes, tmp_path / "clips", n=1)[0]
    mask_path = clip / "masks" / "000002.png"
    cv2.imwrite(str(mask_path), cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED).astype(np.uint16))
    result = curate_clip(clip, cfg, tmp_path / "out")
    assert result.error is not None and clip.name in result.error, result.error
    assert "masks/000002.png" in result.error and "uint16" in result.error, result.error


# --- 4. clip ids used in paths -------------------------------------------------------------------------------


def test_clip_id_with_path_traversal_is_refused(smoke_scenes, cfg, tmp_path):
    work = tmp_path / "work"
    clips = _copy(smoke_scenes, work / "clips")
    _edit_json(clips[0] / "meta.json", lambda m: m.update(clip_id="../../x"))
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(work)}
    stats = curate(work / "clips", cfg, work / "out", progress=False)
    written_outside = {p for p in tmp_path.rglob("*") if not p.is_relative_to(work)} - before
    assert not written_outside and not (work / "x.png").exists()
    _assert_quarantined_alone(work / "out", stats, clips[0], "meta.json", "clip_id", "../../x")


@pytest.mark.parametrize("clip_id", ["/tmp/x", "a/b", "..", ".", "a\\b", "", ".hidden", "x\x00y"])
def test_clip_id_that_is_not_a_plain_name_is_refused(smoke_scenes, cfg, tmp_path, clip_id):
    clip = _copy(smoke_scenes, tmp_path / "clips", n=1)[0]
    _edit_json(clip / "meta.json", lambda m: m.update(clip_id=clip_id))
    result = curate_clip(clip, cfg, tmp_path / "out")
    assert result.error is not None and "meta.json" in result.error and "clip_id" in result.error, result.error
    assert not (tmp_path / "out").exists()


def test_duplicate_clip_id_is_quarantined(smoke_scenes, cfg, tmp_path):
    """Two clips claiming one id would share record ids and one Set-of-Marks file: the second is refused."""
    clips = _copy(smoke_scenes, tmp_path / "clips")
    _edit_json(clips[2] / "meta.json", lambda m: m.update(clip_id=clips[0].name))
    stats = curate(tmp_path / "clips", cfg, tmp_path / "out", progress=False)
    reasons = [c["reason"] for c in json.loads((tmp_path / "out" / "quarantine.json").read_text())["clips"]]
    assert stats["n_quarantined"] == 1 and len(reasons) == 1, reasons
    assert str(clips[2]) in reasons[0] and "meta.json" in reasons[0] and str(clips[0]) in reasons[0], reasons


# --- 6. one bad clip never aborts the others ----------------------------------------------------------------


def test_one_pixel_frames_are_quarantined(smoke_scenes, cfg, tmp_path):
    clips = _copy(smoke_scenes, tmp_path / "clips")
    for folder in ("left", "right", "masks"):
        for frame in (clips[0] / folder).glob("*.png"):
            cv2.imwrite(str(frame), cv2.imread(str(frame), cv2.IMREAD_UNCHANGED)[:1, :1])
    _edit_json(clips[0] / "meta.json", lambda m: m.update(width=1, height=1))
    stats = curate(tmp_path / "clips", cfg, tmp_path / "out", progress=False)
    _assert_quarantined_alone(tmp_path / "out", stats, clips[0], "left/000000.png", "1x1")


def test_num_frames_that_is_not_a_number_is_quarantined(smoke_scenes, cfg, tmp_path):
    clips = _copy(smoke_scenes, tmp_path / "clips")
    _edit_json(clips[1] / "meta.json", lambda m: m.update(num_frames="eight"))
    stats = curate(tmp_path / "clips", cfg, tmp_path / "out", progress=False)
    _assert_quarantined_alone(tmp_path / "out", stats, clips[1], "meta.json", "num_frames", "'eight'")


def test_gt_tracks_without_yaw_is_quarantined(smoke_scenes, cfg, tmp_path):
    clips = _copy(smoke_scenes, tmp_path / "clips")

    def drop_yaw(tracks: dict) -> None:
        for obj in tracks["objects"]:
            del obj["yaw"]

    _edit_json(clips[2] / "gt" / "tracks.json", drop_yaw)
    stats = curate(tmp_path / "clips", cfg, tmp_path / "out", progress=False)
    _assert_quarantined_alone(tmp_path / "out", stats, clips[2], "gt/tracks.json", "yaw")


def test_unexpected_error_in_one_clip_is_quarantined(smoke_scenes, cfg, tmp_path, monkeypatch):
    """A failure nobody foresaw (here: the stereo matcher raising) still quarantines only that clip."""
    import components.curation.clip as clip_module

    clips = _copy(smoke_scenes, tmp_path / "clips")
    real = clip_module.estimate_disparity
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:  # the first frame of the first clip
            raise RuntimeError("matcher exploded")
        return real(*args, **kwargs)

    monkeypatch.setattr(clip_module, "estimate_disparity", flaky)
    stats = curate(tmp_path / "clips", cfg, tmp_path / "out", progress=False)
    _assert_quarantined_alone(tmp_path / "out", stats, clips[0], "left/000000.png", "RuntimeError",
                              "matcher exploded")


# --- 5. crash consistency ------------------------------------------------------------------------------------

# Runs ``curate`` with ``os.replace`` hooked: at the chosen write it touches a sentinel and sleeps until
# killed. ``when=after`` stops once the file is in place, ``when=before`` while its temporary exists.
_KILLABLE = """
import dataclasses, os, sys, time
from pathlib import Path
from components.env import apply_quiet_defaults
apply_quiet_defaults()
from components.config import load_params
from components.curation.run import curate

clips, out, when, target, sentinel = sys.argv[1:6]
real_replace = os.replace

def matches(dst):
    dst = Path(dst)
    return dst.name == target or dst.parent.name == target

def replace(src, dst, *args, **kwargs):
    if when == "before" and matches(dst):
        Path(sentinel).touch()
        time.sleep(600)
    real_replace(src, dst, *args, **kwargs)
    if when == "after" and matches(dst):
        Path(sentinel).touch()
        time.sleep(600)

os.replace = replace
cfg = dataclasses.replace(load_params(os.path.join("presets", "smoke.yaml")).curation, workers=1)
curate(Path(clips), cfg, Path(out), progress=False)
"""


def _kill_curate_at(clips: Path, out: Path, when: str, target: str, tmp_path: Path) -> None:
    """Run ``curate`` in a subprocess, SIGKILL it at the ``target`` write, and reap it."""
    sentinel = tmp_path / "reached"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE, str(clips), str(out), when, target, str(sentinel)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not sentinel.exists():
            if proc.poll() is not None:
                pytest.fail(f"curate ended (rc {proc.returncode}) before the {target} write:\n"
                            f"{proc.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"curate never reached the {target} write")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _leftovers(out: Path) -> list[str]:
    """Temporaries of an output folder: its dot-siblings and any dot-file inside it."""
    siblings = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    inside = [str(p) for p in out.rglob(".*")] if out.exists() else []
    return siblings + inside


def test_killed_curate_leaves_old_output_whole(smoke_scenes, cfg, tmp_path):
    out = tmp_path / "out"
    _copy(smoke_scenes, tmp_path / "old_clips", n=4)
    curate(tmp_path / "old_clips", cfg, out, progress=False)
    old = _snapshot(out)
    _copy(smoke_scenes, tmp_path / "new_clips", n=3, start=4)  # a different set: different records
    _kill_curate_at(tmp_path / "new_clips", out, "after", "sft.jsonl", tmp_path)
    assert _snapshot(out) == old, "a killed curate left new files beside the old output"


def test_rerun_after_kill_is_byte_identical_to_clean_run(smoke_scenes, cfg, tmp_path):
    out = tmp_path / "out"
    _copy(smoke_scenes, tmp_path / "clips", n=3)
    curate(tmp_path / "clips", cfg, out, progress=False)
    clean = _snapshot(out)
    shutil.rmtree(out)
    _kill_curate_at(tmp_path / "clips", out, "before", "som", tmp_path)  # a Set-of-Marks temporary exists
    curate(tmp_path / "clips", cfg, out, progress=False)
    assert _snapshot(out) == clean
    assert not _leftovers(out), _leftovers(out)


def test_all_clips_bad_fails_and_leaves_old_output_untouched(smoke_scenes, cfg, tmp_path):
    out = tmp_path / "out"
    _copy(smoke_scenes, tmp_path / "good", n=3)
    curate(tmp_path / "good", cfg, out, progress=False)
    old = _snapshot(out)
    bad = _copy(smoke_scenes, tmp_path / "bad", n=2)
    for clip in bad:
        (clip / "right" / "000001.png").unlink()
    with pytest.raises(ValueError, match="no clip could be curated") as info:
        curate(tmp_path / "bad", cfg, out, progress=False)
    assert bad[0].name in str(info.value) and "right/000001.png" in str(info.value)
    assert _snapshot(out) == old
    assert not _leftovers(out), _leftovers(out)


def test_failed_curate_leaves_no_temporary(smoke_scenes, cfg, tmp_path, monkeypatch):
    """An exception while writing (here: the exports) leaves the old output and no temporary folder."""
    import components.curation.run as run_module

    out = tmp_path / "out"
    _copy(smoke_scenes, tmp_path / "old_clips", n=3)
    curate(tmp_path / "old_clips", cfg, out, progress=False)
    old = _snapshot(out)
    _copy(smoke_scenes, tmp_path / "new_clips", n=3, start=3)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(run_module, "export_all", broken)
    with pytest.raises(OSError, match="disk full"):
        curate(tmp_path / "new_clips", cfg, out, progress=False)
    assert _snapshot(out) == old
    assert not _leftovers(out), _leftovers(out)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_swap_without_atomic_exchange_replaces_the_folder_whole(tmp_path, monkeypatch):
    """File systems without ``renameat2(RENAME_EXCHANGE)`` take the two-rename path; same result."""
    from components import io

    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "old.txt").write_text("old")
    monkeypatch.setattr(io, "_exchange", lambda a, b: False)
    with io.atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _snapshot(out) == {"new.txt": b"new"}
    assert not _leftovers(out), _leftovers(out)


def test_swap_killed_between_renames_is_rolled_back(tmp_path):
    """A kill between the two renames leaves no output and the old one aside: the next writer restores it
    and drops a killed writer's staging folder, but leaves a live writer's alone."""
    from components.io import remove_stale_temporaries

    out, dead = tmp_path / "out", _dead_pid()
    old = tmp_path / f".out.old-{dead}-abc123"
    old.mkdir()
    (old / "stats.json").write_text("{}")
    (tmp_path / f".out.staging-{dead}-def456" / "som").mkdir(parents=True)
    live = tmp_path / f".out.staging-{os.getppid()}-ghi789"
    live.mkdir()
    remove_stale_temporaries(out)
    assert _snapshot(out) == {"stats.json": b"{}"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", live.name])
