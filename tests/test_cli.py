"""The `mllm4d` CLI: stage commands on the smoke preset, exit codes, clear errors."""

from __future__ import annotations

import json

import pytest

from components.cli import main
from tests.conftest import SMOKE


@pytest.fixture()
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLLM4D_PARENT_RUN_ID", raising=False)
    return tmp_path


def test_stage_commands_chain(in_tmp, capsys):
    base = ["--params", str(SMOKE), "--quiet", "-S", "scenes.num_clips=6"]
    assert main(base + ["scenes", "--out", "data/scenes"]) == 0
    assert main(base + ["curate", "--clips", "data/scenes", "--out", "data/curated"]) == 0
    assert main(base + ["validate", "--curated", "data/curated", "--report", "reports/quality"]) == 0
    out = capsys.readouterr().out
    assert "rendered 6 clips" in out and "data gate passed" in out
    assert json.loads((in_tmp / "reports/curation.json").read_text())["records.bench"] > 0
    assert (in_tmp / "mlflow.db").is_file()  # the default tracking store, in the project root

    # A failed gate is exit code 1 with every failed expectation named.
    rc = main(base + ["-S", "quality.min_records_per_split=100000", "validate", "--curated", "data/curated"])
    assert rc == 1
    assert "min_records_per_split" in capsys.readouterr().err


def test_unknown_param_is_exit_2_naming_the_key(in_tmp, capsys):
    assert main(["--params", str(SMOKE), "-S", "scenes.num_clipz=3", "scenes"]) == 2
    assert "scenes.num_clipz" in capsys.readouterr().err


def test_missing_clip_folder_is_a_clear_error(in_tmp, capsys):
    assert main(["--params", str(SMOKE), "--quiet", "curate", "--clips", "nowhere"]) == 1
    assert "clip root not found: nowhere" in capsys.readouterr().err


def test_help_for_every_stage(capsys):
    for command in ("scenes", "curate", "validate", "pipeline"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_top_level_help_runs_as_a_command():
    # "mllm4d --help" crashed on a bare "%" in a help text (argparse %-formats them).
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "components.cli", "--help"], cwd=root, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage: mllm4d" in done.stdout and "experiments" in done.stdout


def _subcommands() -> list[str]:
    import argparse

    from components.cli import _parser

    actions = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(actions[0].choices)


@pytest.mark.parametrize("command", [None, *_subcommands()])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"] if command is None else [command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: mllm4d" in capsys.readouterr().out


def test_malformed_override_is_exit_2_with_one_line(in_tmp, capsys):
    assert main(["--params", str(SMOKE), "-S", "sft.max_steps=[1", "scenes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sft.max_steps=[1" in err and "Traceback" not in err
