"""Quiet, offline defaults for the libraries, set before they are imported; the environment still wins."""

from __future__ import annotations

import os

QUIET_DEFAULTS = {
    "GX_ANALYTICS_ENABLED": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true",  # offline: no pip resolution when logging models
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_quiet_defaults(**extra: str) -> None:
    for key, value in {**QUIET_DEFAULTS, **extra}.items():
        os.environ.setdefault(key, value)
