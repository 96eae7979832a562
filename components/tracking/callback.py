"""transformers' ``MLflowCallback`` with what it logs passed through the project's filter (``redact``).

The stock callback logs every ``TrainingArguments`` field and the model config as params, unfiltered:
``output_dir``, ``logging_dir`` and the config's ``_name_or_path`` are absolute paths, and any field a
user points at a credential would go out verbatim. This subclass hands the callback a stand-in for the
``mlflow`` module whose ``log_params`` / ``log_param`` / ``set_tags`` / ``set_tag`` filter first (the same
``metadata.clean`` as the stage's own params); everything else (metrics, the active run) is MLflow's.
Checkpoint upload (``HF_MLFLOW_LOG_ARTIFACTS``) is refused: a checkpoint folder is not filtered and
models reach MLflow through ``tracking.registry`` instead.

Imported only by the training code (it imports transformers).
"""

from __future__ import annotations

import logging
from typing import Any

import mlflow
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH
from transformers.integrations import MLflowCallback

from components.tracking.metadata import clean

log = logging.getLogger(__name__)


class _FilteredMlflow:
    """The ``mlflow`` module as the callback sees it: params and tags filtered, the rest unchanged."""

    def __getattr__(self, name: str) -> Any:
        return getattr(mlflow, name)

    def log_params(self, params: dict[str, Any], **kwargs: Any) -> None:
        safe = clean(params, MAX_PARAM_VAL_LENGTH, "param")
        if safe:
            mlflow.log_params(safe, **kwargs)

    def log_param(self, key: str, value: Any, **kwargs: Any) -> None:
        self.log_params({key: value}, **kwargs)

    def set_tags(self, tags: dict[str, Any], **kwargs: Any) -> None:
        safe = clean(tags, MAX_TAG_VAL_LENGTH, "tag")
        if safe:
            mlflow.set_tags(safe, **kwargs)

    def set_tag(self, key: str, value: Any, **kwargs: Any) -> None:
        self.set_tags({key: value}, **kwargs)


class FilteredMLflowCallback(MLflowCallback):
    """``MLflowCallback`` whose params and tags pass ``metadata.clean``; use it in place of the stock one."""

    def __init__(self) -> None:
        super().__init__()
        self._ml_flow = _FilteredMlflow()

    def setup(self, args: Any, state: Any, model: Any) -> None:
        super().setup(args, state, model)
        if self._log_artifacts:
            log.warning("HF_MLFLOW_LOG_ARTIFACTS is ignored: checkpoints are not logged to MLflow unfiltered; "
                        "a finished model is registered by the evaluate stage (tracking.registry)")
            self._log_artifacts = False


def use_filtered_mlflow_callback(trainer: Any) -> None:
    """Swap the stock ``MLflowCallback`` that ``report_to="mlflow"`` added for the filtered one, at the end
    of the callback list (callbacks that add to a log entry must run before it). No-op without one."""
    if trainer.pop_callback(MLflowCallback) is not None:
        trainer.add_callback(FilteredMLflowCallback())
