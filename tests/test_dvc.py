"""`dvc repro` on a fresh copy of the project: the stages run from params.yaml, a second repro does
nothing, and a param change re-runs exactly the stages that depend on it.

Slow (about 3 minutes): `pytest -m slow tests/test_dvc.py`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_dvc_repro_reproduces_and_reruns_only_what_changed(tmp_path):
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    project = tmp_path / "project"
    for name in files:
        if (ROOT / name).is_file() and not name.startswith(("data/", "reports/")) and name != "dvc.lock":
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, project / name)
    shutil.copy(ROOT / "presets" / "smoke.yaml", project / "params.yaml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    env.pop("MLLM4D_PARENT_RUN_ID", None)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
        _run(cmd, project, env)
    dvc = [str(Path(sys.executable).parent / "dvc")]

    first = out = _run(dvc + ["repro"], project, env)
    assert all(f"Running stage '{s}'" in out for s in ("scenes", "curate", "validate_data")), out
    assert (project / "dvc.lock").is_file() and (project / "data/curated/bench.jsonl").is_file()

    out = _run(dvc + ["repro"], project, env)
    assert "Running stage" not in out, out

    params = (project / "params.yaml").read_text().replace("letter_balance_tolerance: 0.15", "letter_balance_tolerance: 0.2")
    (project / "params.yaml").write_text(params)
    out = _run(dvc + ["repro"], project, env)
    assert "Running stage 'validate_data'" in out and "Running stage 'curate'" not in out, out

    # the whole chain ran, and a GRPO param re-runs only GRPO and its evaluation (and the comparison)
    assert all(f"Running stage '{s}'" in first for s in ("teacher", "teacher_targets", "p4d", "grpo", "evaluate@grpo"))
    params = (project / "params.yaml").read_text().replace("  temperature: 1.0\n", "  temperature: 0.9\n", 1)
    (project / "params.yaml").write_text(params)
    out = _run(dvc + ["repro"], project, env)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    # compare re-runs only if the GRPO checkpoint's metrics changed
    assert {"grpo", "evaluate@grpo"} <= ran <= {"grpo", "evaluate@grpo", "compare"}, out
