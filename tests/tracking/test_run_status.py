"""Runs end FAILED or KILLED, never stay RUNNING: SIGTERM is caught, a SIGKILLed run is closed later."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from components.config import TrackingConfig
from components.tracking import PARENT_RUN_ENV, resolve_tracking_uri, setup, stage_run
from components.tracking.runs import Terminated

REPO = Path(__file__).resolve().parents[2]
CFG = TrackingConfig(experiment="mllm4d-run-status")

# A stage run (nested in a pipeline run) that reports its ids and then waits to be killed.
_CHILD = """
import sys, time
from pathlib import Path
from components.config import TrackingConfig
from components.tracking import pipeline_run, stage_run
cfg, root = TrackingConfig(experiment={experiment!r}), Path({root!r})
with pipeline_run("chain", cfg, root) as parent, stage_run("sft", cfg, root) as stage:
    print(parent.run_id, stage.run_id, flush=True)
    time.sleep(120)
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(PARENT_RUN_ENV, raising=False)


@pytest.fixture()
def client(tmp_path: Path) -> MlflowClient:
    setup(CFG, tmp_path)
    return MlflowClient(resolve_tracking_uri(CFG, tmp_path))


def _start_child(root: Path) -> tuple[subprocess.Popen, list[str]]:
    code = _CHILD.format(experiment=CFG.experiment, root=str(root))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", PARENT_RUN_ENV)}
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    line = child.stdout.readline()  # the runs are open once the ids are printed
    if not line:
        child.kill()
        pytest.fail(f"child did not start: {child.stderr.read()}")
    return child, line.split()


def test_sigterm_ends_the_stage_and_pipeline_runs_killed(tmp_path: Path, client: MlflowClient) -> None:
    child, run_ids = _start_child(tmp_path)
    child.send_signal(signal.SIGTERM)
    child.wait(timeout=60)
    assert child.returncode != 0
    assert "Terminated" in child.stderr.read()
    assert [client.get_run(r).info.status for r in run_ids] == ["KILLED", "KILLED"]


def test_a_sigkilled_run_is_closed_killed_by_the_next_run(tmp_path: Path, client: MlflowClient) -> None:
    child, run_ids = _start_child(tmp_path)
    child.kill()  # SIGKILL: nothing in the child can react
    child.wait(timeout=60)
    assert [client.get_run(r).info.status for r in run_ids] == ["RUNNING", "RUNNING"]
    with stage_run("validate", CFG, tmp_path) as run:
        pass
    assert client.get_run(run.run_id).info.status == "FINISHED"
    for run_id in run_ids:
        closed = client.get_run(run_id)
        assert closed.info.status == "KILLED", run_id
        assert "is gone" in closed.data.tags["mllm4d.ended_by"]


def test_sigterm_handler_lives_only_while_a_run_is_open(tmp_path: Path, client: MlflowClient) -> None:
    before = signal.getsignal(signal.SIGTERM)
    # (Checked without sending the signal: without the handler, SIGTERM would end the test process.)
    with pytest.raises(Terminated), stage_run("curate", CFG, tmp_path) as run:
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
    assert client.get_run(run.run_id).info.status == "KILLED"
    assert signal.getsignal(signal.SIGTERM) is before
    assert mlflow.active_run() is None


def test_a_failed_stage_ends_failed(tmp_path: Path, client: MlflowClient) -> None:
    with pytest.raises(ZeroDivisionError), stage_run("teacher", CFG, tmp_path) as run:
        _ = 1 / 0
    assert client.get_run(run.run_id).info.status == "FAILED"
