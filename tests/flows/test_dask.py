"""The curation flow's fan-outs on Dask (``orchestration.task_runner: dask``) give exactly what Prefect's thread
runner gives: the same clips, the same curated splits and stats. Real Prefect (the test harness), a real Dask
LocalCluster of two worker processes started from params, as the flow starts it."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.testing.utilities import prefect_test_harness
from prefect_dask import DaskTaskRunner

from components.config import ParamsError, load_params
from flows.common import task_runner
from flows.curation import batches, render_as_tasks, run_curation
from tests.conftest import SMOKE

CLIPS = 4  # enough for every split to get records; the whole smoke preset adds time and no coverage
PER_TASK = 2  # two batches: one per worker process


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def dask_work(monkeypatch) -> list[dict]:
    """What each Dask cluster did, read just before the runner shuts it down: its workers' process ids and how
    many tasks each executed. A spy on the real runner, so the test knows the tasks left this process."""
    seen: list[dict] = []
    original = DaskTaskRunner.__exit__

    def spy(self, *args):
        if self._client is not None:
            workers = self._client.run(lambda dask_worker: (os.getpid(), dask_worker.state.executed_count))
            seen.append({"pids": [pid for pid, _ in workers.values()],
                         "executed": sum(n for _, n in workers.values())})
        return original(self, *args)

    monkeypatch.setattr(DaskTaskRunner, "__exit__", spy)
    return seen


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _params(tmp_path: Path, runner: str):
    return load_params(SMOKE, [f"scenes.num_clips={CLIPS}", f"orchestration.task_runner={runner}",
                               "orchestration.workers=2", f"orchestration.clips_per_task={PER_TASK}",
                               f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
                               f"tracking.artifact_location={tmp_path / 'mlartifacts'}"])


def test_curation_on_dask_equals_curation_on_threads(tmp_path, monkeypatch, dask_work):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLLM4D_PARENT_RUN_ID", raising=False)
    threads, dask = _params(tmp_path, "thread"), _params(tmp_path, "dask")

    clips = {}
    for name, params in (("thread", threads), ("dask", dask)):
        rendered = render_as_tasks(params.scenes, tmp_path / name / "scenes", task_runner(params.orchestration),
                                   params.orchestration.clips_per_task)
        assert [p.name for p in rendered] == sorted(p.name for p in (tmp_path / name / "scenes").iterdir())
        clips[name] = _tree(tmp_path / name / "scenes")
    assert len(clips["thread"]) > CLIPS and clips["dask"] == clips["thread"]

    # Both curate the same clips into the same folder: records hold the frames' and the output's paths, so
    # equal bytes need equal paths; the first output is read before the second replaces it.
    scenes, out, curated, stats = tmp_path / "thread" / "scenes", tmp_path / "curated", {}, {}
    for name, params in (("thread", threads), ("dask", dask)):
        stats[name] = run_curation(params, scenes, out, tmp_path)
        curated[name] = _tree(out)
    assert stats["thread"]["n_curated_clips"] == CLIPS
    for name, s in stats.items():  # the stage's wall time covers the clips' tasks: at least one clip's time
        assert s["performance"]["wall_s"] >= s["performance"]["timing_s"]["total"] / CLIPS, name
    assert all(stats["thread"]["records"][s] > 0 for s in ("sft", "rft", "bench"))
    assert {"sft.jsonl", "rft.jsonl", "bench.jsonl", "stats.json"} <= set(curated["thread"])
    assert curated["dask"] == curated["thread"]
    timings = "performance"  # wall times and per-stage seconds: the only part that may differ
    assert {k: v for k, v in stats["dask"].items() if k != timings} == \
        {k: v for k, v in stats["thread"].items() if k != timings}
    assert json.loads(curated["dask"]["stats.json"]) == {k: v for k, v in stats["dask"].items() if k != timings}

    # the Dask runs really ran on the local cluster's two worker processes: one cluster per fan-out
    tasks = CLIPS // PER_TASK
    assert [(len(run["pids"]), run["executed"]) for run in dask_work] == [(2, tasks), (2, tasks)]
    assert all(os.getpid() not in run["pids"] for run in dask_work)


def test_batches_keep_the_order_and_cover_every_item():
    assert batches(list(range(5)), 2) == [[0, 1], [2, 3], [4]]
    assert batches([1, 2], 16) == [[1, 2]] and batches([], 3) == []


def test_thread_runner_runs_at_most_workers_task_runs_at_once():
    """Prefect's own default is a thread per task run: a fan-out over every clip would hold every clip at once."""
    lock, running, peak = threading.Lock(), [0], [0]

    @task(cache_policy=NO_CACHE)
    def busy(_: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1

    @flow
    def fan_out() -> None:
        busy.map(range(6)).wait()

    runner = task_runner(load_params(SMOKE, ["orchestration.workers=2"]).orchestration)
    fan_out.with_options(task_runner=runner)()
    assert peak[0] == 2


def test_runner_comes_from_params():
    assert type(task_runner(load_params(SMOKE).orchestration)).__name__ == "ThreadPoolTaskRunner"
    local = task_runner(load_params(SMOKE, ["orchestration.task_runner=dask", "orchestration.workers=3"]).orchestration)
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs["n_workers"] == 3 and local.cluster_kwargs["processes"] is True
    remote = task_runner(load_params(SMOKE, ["orchestration.task_runner=dask",
                                             "orchestration.address=tcp://10.1.2.3:8786"]).orchestration)
    assert remote.address == "tcp://10.1.2.3:8786" and not remote.cluster_kwargs


@pytest.mark.parametrize("overrides, match", [
    (["orchestration.address=tcp://h:8786"], "task_runner is thread"),
    (["orchestration.task_runner=dask", "orchestration.address=http://h:8786"], "not a dask cluster address"),
    (["orchestration.task_runner=spark"], r"orchestration.task_runner must be one of"),
    (["orchestration.task_runner=dask", "orchestration.workers=0"], "orchestration.workers must be >= 1"),
    (["orchestration.clips_per_task=0"], "orchestration.clips_per_task must be >= 1"),
])
def test_bad_orchestration_params_name_the_file_and_field(overrides, match):
    with pytest.raises(ParamsError, match=rf"smoke\.yaml: .*{match}"):
        load_params(SMOKE, overrides)


def test_ray_without_prefect_ray_is_refused_saying_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect_ray", None)  # as if the `ray` extra were not installed
    with pytest.raises(ImportError, match=r"task_runner is ray but prefect-ray is not installed.*\.\[ray\]"):
        task_runner(load_params(SMOKE, ["orchestration.task_runner=ray"]).orchestration)


@pytest.mark.slow
def test_curation_on_ray_equals_curation_on_threads(tmp_path, monkeypatch):
    """Needs the `ray` extra (``pip install -e '.[ray]'``); ``make setup`` does not install it."""
    pytest.importorskip("prefect_ray")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLLM4D_PARENT_RUN_ID", raising=False)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    threads, ray = _params(tmp_path, "thread"), _params(tmp_path, "ray")
    scenes, out, curated, stats = tmp_path / "scenes", tmp_path / "curated", {}, {}
    render_as_tasks(threads.scenes, scenes)
    for name, params in (("thread", threads), ("ray", ray)):
        stats[name] = {k: v for k, v in run_curation(params, scenes, out, tmp_path).items() if k != "performance"}
        curated[name] = _tree(out)
    assert stats["thread"]["n_curated_clips"] == CLIPS
    for name, s in stats.items():  # the stage's wall time covers the clips' tasks: at least one clip's time
        assert s["performance"]["wall_s"] >= s["performance"]["timing_s"]["total"] / CLIPS, name
    assert curated["ray"] == curated["thread"] and stats["ray"] == stats["thread"]
