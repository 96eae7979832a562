"""`dvc repro` on a fresh copy of the project: the stages run from params.yaml, a second repro does
nothing, and a param change re-runs exactly the stages that depend on it.

Slow (about 3 minutes): `pytest -m slow tests/test_dvc.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

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

    # `mllm4d repro` (make repro): dvc repro under one MLflow parent run
    first = out = _run([str(Path(sys.executable).parent / "mllm4d"), "repro"], project, env)
    assert all(f"Running stage '{s}'" in out for s in ("scenes", "curate", "validate_data", "promote")), out
    assert (project / "dvc.lock").is_file() and (project / "data/curated/bench.jsonl").is_file()
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("mllm4d").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("mllm4d.pipeline") == "dvc-repro"]
    stages = [r for r in runs if r is not parent]
    assert stages and all(r.data.tags.get("mlflow.parentRunId") == parent.info.run_id for r in stages)
    assert parent.data.tags["mllm4d.dvc_lock.sha256"] == hashlib.sha256((project / "dvc.lock").read_bytes()).hexdigest()
    # the promote stage registered the GRPO checkpoint and, the first, made it champion (smoke: checks off)
    champion = client.get_model_version_by_alias("mllm4d", "champion")
    assert champion.tags["mllm4d.promotion"] == "promoted"
    assert json.loads((project / "reports/promotion/decision.json").read_text())["verdict"] == "promoted"
    # model folders hold nothing run-specific: the commit is in the sidecar beside them
    assert "git_commit" not in (project / "models/sft/meta.json").read_text()
    assert json.loads((project / "models/sft.run.json").read_text())["git_commit"]

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
    # compare re-runs only if the GRPO checkpoint's metrics changed; promote registers the new GRPO checkpoint
    assert {"grpo", "evaluate@grpo", "promote"} <= ran <= {"grpo", "evaluate@grpo", "compare", "promote"}, out
