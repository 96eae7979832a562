"""What every flow shares: quiet offline defaults, params loading, the I/O-only retry rule."""

from __future__ import annotations

from pathlib import Path

from components.env import apply_quiet_defaults

apply_quiet_defaults()

from components.config import Params, load_params


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
