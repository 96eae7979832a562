"""What every flow shares: quiet offline defaults, params loading, the I/O-only retry rule, the task runner."""

from __future__ import annotations

from pathlib import Path

from components.env import apply_quiet_defaults

apply_quiet_defaults()

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from components.config import OrchestrationConfig, Params, load_params


def retry_on_io(task, task_run, state) -> bool:
    """Retry a task only when it failed on I/O (a flaky disk or object store), never on a logic error."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:  # noqa: BLE001 (any other failure is a logic error: never retried)
        return False
    return False


def params_from(params_path: str, overrides: list[str] | None) -> tuple[Params, Path]:
    """The params and the project root: the working directory, as ``make run`` and ``dvc repro`` see it
    (records hold frame paths relative to it)."""
    path = Path(params_path).resolve()
    return load_params(path, overrides or []), Path.cwd()


def task_runner(cfg: OrchestrationConfig) -> TaskRunner:
    """The Prefect task runner ``orchestration`` names (``docs/scale_out.md``). Nothing starts here: a local
    cluster starts when a flow run enters the runner and stops when that run ends."""
    if cfg.task_runner == "thread":
        # Bounded: Prefect's default is a thread per task run, so a fan-out of thousands of clips would hold
        # thousands of clips in memory at once on a machine with a few cores.
        return ThreadPoolTaskRunner(max_workers=cfg.workers)
    if cfg.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.address:
            return DaskTaskRunner(address=cfg.address)
        # Worker processes with one thread each: rendering and curating are CPU-bound Python and OpenCV, which
        # threads would serialise on the GIL. The scheduler's HTTP server (health, metrics; the dashboard needs
        # bokeh) on a free loopback port: the default 8787 is often taken by another run's cluster.
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
            "n_workers": cfg.workers, "threads_per_worker": 1, "processes": True,
            "dashboard_address": "127.0.0.1:0"})
    try:
        from prefect_ray import RayTaskRunner
    except ImportError:
        # Ray is an optional extra: its wheels are large and the thread and Dask runners cover one machine and
        # a cluster; refused when the flow starts, before any work, rather than when the first task is mapped.
        raise ImportError("orchestration.task_runner is ray but prefect-ray is not installed: install it with "
                          "`.venv/bin/pip install -e '.[ray]'`, or set orchestration.task_runner to dask") from None
    if cfg.address:
        return RayTaskRunner(address=cfg.address)
    return RayTaskRunner(init_kwargs={"num_cpus": cfg.workers, "include_dashboard": False})
