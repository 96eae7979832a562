"""The one place that talks to MLflow: stage entry points and flows call this; core components never do."""

from components.tracking.metadata import flatten_params
from components.tracking.runs import (
    PARENT_RUN_ENV,
    RunHandle,
    pipeline_run,
    resolve_tracking_uri,
    setup,
    stage_run,
)

__all__ = [
    "PARENT_RUN_ENV",
    "RunHandle",
    "flatten_params",
    "pipeline_run",
    "resolve_tracking_uri",
    "setup",
    "stage_run",
]
