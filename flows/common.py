"""What every flow shares: quiet offline defaults, params loading, the I/O-only retry rule."""

from __future__ import annotations

import os
from pathlib import Path

for _key, _value in {
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",
}.items():
    os.environ.setdefault(_key, _value)

from components.config import Params, load_params  # noqa: E402


def retry_on_io(task, task_run, state) -> bool:  # noqa: ANN001 (Prefect's callback signature)
    """Retry a task only when it failed on I/O (a flaky disk or object store), never on a logic error."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


def params_from(params_path: str, overrides: list[str] | None) -> tuple[Params, Path]:
    """The params and the project root (the folder the params file lives in, as ``dvc repro`` sees it)."""
    path = Path(params_path).resolve()
    return load_params(path, overrides or []), Path.cwd()
