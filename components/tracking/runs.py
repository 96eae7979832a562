"""MLflow runs: one parent run per pipeline run, one nested run per stage.

The parent run is created with ``MlflowClient`` and never becomes MLflow's "active run", so nothing
logs into it by accident; its id travels in ``MLLM4D_PARENT_RUN_ID`` so that a stage opened in this
process, in another thread (Prefect tasks) or in a subprocess (``dvc repro``) nests under it. A stage
run *is* the active run of its thread, so library callbacks (transformers' ``MLflowCallback`` with
``report_to="mlflow"``) log into it. Every ``RunHandle`` method logs by explicit run id.
Params and tags pass through ``metadata.clean``, which drops anything that looks like a credential.

A run ends FINISHED, FAILED (an exception) or KILLED (Ctrl-C, or SIGTERM: while a run is open in the main
thread, SIGTERM raises :class:`Terminated` so the run is closed before the process exits, instead of
staying RUNNING forever). A SIGKILL cannot be caught: each run records its host and process id, and the
next run opened on that host closes, as KILLED, the RUNNING runs whose process is gone.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from components.config import TrackingConfig
from components.io import read_jsonl, write_json
from components.tracking.metadata import (
    DIRTY_TAG,
    GIT_TAG,
    clean,
    content_digest,
    flatten_params,
    json_cell,
    lineage_tags,
)
from components.tracking.redact import project_root as current_root
from components.tracking.redact import redact_text, redacted_copy, use_root

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "MLLM4D_PARENT_RUN_ID"
STAGE_TAG, PIPELINE_TAG, ROLE_TAG = "mllm4d.stage", "mllm4d.pipeline", "mllm4d.dataset.role"
HOST_TAG, PID_TAG, END_TAG = "mllm4d.host", "mllm4d.pid", "mllm4d.ended_by"


class Terminated(BaseException):
    """SIGTERM arrived while a run was open. A BaseException, like KeyboardInterrupt: ``except Exception``
    blocks must not swallow a request to stop."""


def resolve_tracking_uri(cfg: TrackingConfig, project_root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` wins; else ``cfg.tracking_uri`` with a relative sqlite path made absolute."""
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{(Path(project_root) / uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def setup(cfg: TrackingConfig, project_root: Path) -> str:
    """Point MLflow at the store and get (or create) ``cfg.experiment``; returns its id. Idempotent."""
    # First use of a SQLite store runs the schema migrations, which log at INFO: not news.
    for noisy in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    uri = resolve_tracking_uri(cfg, project_root)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI, which would then "win" over the config of every
    # later setup() in this process: keep the environment as the user set it.
    user_env = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    if user_env is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.experiment)
    if experiment is None:
        location = None
        if uri.startswith("sqlite:"):  # a server picks its own artifact root
            location = cfg.artifact_location
            if "://" not in location:
                location = str((Path(project_root) / location).resolve())
        try:
            return client.create_experiment(cfg.experiment, artifact_location=location)
        except MlflowException:  # another process created it in between
            experiment = client.get_experiment_by_name(cfg.experiment)
            if experiment is None:
                raise
    if experiment.lifecycle_stage != "active":
        raise MlflowException(
            f"experiment {cfg.experiment!r} is deleted in {uri}: restore it "
            f"(`mlflow experiments restore`) or set tracking.experiment to another name"
        )
    return experiment.experiment_id


class RunHandle:
    """One MLflow run, addressed by id; every method logs to this run whatever run is active."""

    def __init__(self, run_id: str, tracking_uri: str, experiment_id: str, root: Path | None = None) -> None:
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.root = Path(root) if root is not None else current_root()  # paths are logged relative to it
        self._client = MlflowClient(tracking_uri)

    def url(self) -> str:
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"{self.tracking_uri} run {self.run_id}"

    def write_sidecar(self, out: Path) -> Path:
        """``<out>.run.json`` beside a stage's output folder: the run and the commit that made it. Beside, not
        inside: the folder is a DVC output, and a commit inside it would change its hash on every commit."""
        tags = self._client.get_run(self.run_id).data.tags
        sidecar = Path(f"{Path(out)}.run.json")
        write_json(sidecar, {"stage": tags.get(STAGE_TAG), "mlflow_run_id": self.run_id,
                             "experiment_id": self.experiment_id, "git_commit": tags.get(GIT_TAG),
                             "git_dirty": tags.get(DIRTY_TAG)})
        return sidecar

    def log_params(self, params: dict) -> None:
        with use_root(self.root):
            flat = flatten_params(params)
        self._client.log_batch(self.run_id, params=[Param(k, v) for k, v in flat.items()])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        now, good = int(time.time() * 1000), []
        for key, value in metrics.items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                value = math.nan
            if not math.isfinite(value):
                log.warning(
                    "metric %r=%r at step %s is not a finite number: not logged", key, metrics[key], step
                )
                continue
            good.append(Metric(key, value, now, step or 0))
        if good:
            self._client.log_batch(self.run_id, metrics=good)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Log a filtered copy of ``path`` (``redact``: no secrets, paths relative to the project root)."""
        with redacted_copy(Path(path), self.root) as copy:
            self._client.log_artifact(self.run_id, str(copy), artifact_path)

    def log_artifacts(self, directory: Path, artifact_path: str | None = None) -> None:
        """Log a filtered copy of every file under ``directory``, as ``log_artifact``."""
        with redacted_copy(Path(directory), self.root) as copy:
            self._client.log_artifacts(self.run_id, str(copy), artifact_path)

    def log_dataset(self, path: Path, *, name: str, context: str, role: str = "input") -> str:
        """Record a JSONL file (or folder of them) in the run's inputs; returns its content digest.

        The digest is the md5 of the file, so it matches the ``md5`` that ``dvc.lock`` records for it.
        MLflow 3.17 has no dataset *outputs* (``log_outputs`` takes logged models only), so an output
        dataset is logged as an input with context ``output:<context>``, input tag
        ``mllm4d.dataset.role=output`` and run tag ``mllm4d.output.<name>.digest``.
        """
        import pandas as pd

        if role not in ("input", "output"):
            raise ValueError(f"role must be 'input' or 'output', got {role!r}")
        path = Path(path)
        files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise FileNotFoundError(f"no JSONL dataset at {path}")
        digest = content_digest(path, files)
        df = pd.DataFrame([row for f in files for row in read_jsonl(f)])
        for column in df.columns[df.dtypes == object]:
            df[column] = df[column].map(json_cell)
        with warnings.catch_warnings():  # "source can be interpreted in multiple ways", integer hints
            warnings.simplefilter("ignore")
            source = redact_text(str(path), self.root)  # the dataset's source is logged too
            dataset = mlflow.data.from_pandas(df, source=source, name=name, digest=digest)
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context if role == "input" else f"output:{context}")]
        if role == "output":
            tags.append(InputTag(ROLE_TAG, "output"))
            self.set_tags({f"mllm4d.output.{name}.digest": digest})
        self._client.log_inputs(self.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags)])
        return digest

    def log_image(self, image: np.ndarray | Path, artifact_file: str) -> None:
        if isinstance(image, (str, Path)):
            from PIL import Image

            with Image.open(image) as img:
                img.load()
                image = img.copy()
        self._client.log_image(self.run_id, image, artifact_file=artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._client.log_text(self.run_id, redact_text(text, self.root), artifact_file)

    def set_tags(self, tags: dict[str, str]) -> None:
        safe = clean(tags, MAX_TAG_VAL_LENGTH, "tag", self.root)
        self._client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in safe.items()])


class OtherRankHandle:
    """What ``stage_run`` yields on a rank other than 0 of an ``accelerate launch``: every rank runs the stage (each
    trains its share of the batches), rank 0 alone logs, so a stage has one MLflow run. Logging here does nothing.
    Not a ``RunHandle`` subclass on purpose: a logging method added there and not here fails loudly on these ranks
    instead of logging from every rank."""

    def __init__(self, stage: str, rank: int) -> None:
        self.stage, self.rank, self.run_id = stage, rank, None

    def url(self) -> str:
        return f"(rank {self.rank}: the {self.stage} run is rank 0's)"

    def write_sidecar(self, out: Path) -> Path:
        return Path(f"{Path(out)}.run.json")  # rank 0 writes it

    def log_dataset(self, path: Path, *, name: str, context: str, role: str = "input") -> str:
        return ""

    def log_params(self, *args, **kwargs) -> None: ...
    def log_metrics(self, *args, **kwargs) -> None: ...
    def log_artifact(self, *args, **kwargs) -> None: ...
    def log_artifacts(self, *args, **kwargs) -> None: ...
    def log_image(self, *args, **kwargs) -> None: ...
    def log_text(self, *args, **kwargs) -> None: ...
    def set_tags(self, *args, **kwargs) -> None: ...


def launch_rank() -> int:
    """This process's global rank under ``accelerate launch`` (torch's launcher sets ``RANK``); 0 in a plain process.
    Read from the environment: a stage opens its run before any trainer, or process group, exists."""
    return int(os.environ.get("RANK", "0"))


def _status(exc: BaseException | None) -> str:
    if exc is None:
        return "FINISHED"
    return "KILLED" if isinstance(exc, (KeyboardInterrupt, Terminated)) else "FAILED"


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(f"received signal {signal.Signals(signum).name}")


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` inside the block, so open runs end KILLED, not RUNNING.

    Only where Python can take the signal (the main thread) and only over the default action (which
    kills the process without unwinding): a handler someone else installed (Prefect, a test runner)
    is left alone, and so is an ignored SIGTERM. The previous handler is restored on exit.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _process_tags() -> dict[str, str]:
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def close_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """End as KILLED the RUNNING runs that a process on this host opened and that died without closing
    them (SIGKILL, power loss); returns their ids. A reused pid only leaves a dead run RUNNING a while longer.
    """
    host = socket.gethostname().replace("'", "")
    query = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    closed = []
    for run in client.search_runs([experiment_id], query, max_results=1000):
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not _process_alive(int(pid)):
            client.set_tag(run.info.run_id, END_TAG, f"closed by pid {os.getpid()}: its process {pid} is gone")
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
    if closed:
        log.warning("marked %d run(s) KILLED whose process died while they ran: %s", len(closed), closed)
    return closed


def _context_tags(project_root: Path) -> dict[str, str]:
    """The tags MLflow's fluent ``start_run`` adds by itself (``mlflow.source.name`` is the script's
    absolute path), filtered; given explicitly, they replace MLflow's own."""
    from mlflow.tracking.context.registry import resolve_tags

    return clean(resolve_tags({}), MAX_TAG_VAL_LENGTH, "tag", project_root)


def _finish(client: MlflowClient, run_id: str, exc: BaseException | None, *, active: bool) -> None:
    status = _status(exc)
    if active:
        # Runs a library opened inside the stage and left open end with it.
        while (run := mlflow.active_run()) is not None and run.info.run_id != run_id:
            mlflow.end_run(status)
        if run is not None:
            mlflow.end_run(status)
            return
    client.set_terminated(run_id, status)


@contextmanager
def pipeline_run(
    name: str, cfg: TrackingConfig, project_root: Path, *, params: dict | None = None
) -> Iterator[RunHandle]:
    """The one parent run of a pipeline run; stage runs opened while it is open nest under it."""
    experiment_id = setup(cfg, project_root)
    uri = resolve_tracking_uri(cfg, project_root)
    client = MlflowClient(uri)
    close_orphaned_runs(client, experiment_id)
    tags = lineage_tags(project_root) | _process_tags() | {PIPELINE_TAG: name}
    run = client.create_run(experiment_id, tags=tags, run_name=name)
    handle = RunHandle(run.info.run_id, uri, experiment_id, project_root)
    previous = os.environ.get(PARENT_RUN_ENV)
    os.environ[PARENT_RUN_ENV] = handle.run_id
    try:
        with _sigterm_raises(), use_root(project_root):
            if params:
                handle.log_params(params)
            yield handle
    except BaseException as exc:
        _finish(client, handle.run_id, exc, active=False)
        raise
    else:
        _finish(client, handle.run_id, None, active=False)
    finally:
        if previous is None:
            os.environ.pop(PARENT_RUN_ENV, None)
        else:
            os.environ[PARENT_RUN_ENV] = previous
    log.info("pipeline run %s: %s", name, handle.url())


@contextmanager
def stage_run(
    stage: str,
    cfg: TrackingConfig,
    project_root: Path,
    *,
    params: dict | None = None,
    tags: dict | None = None,
) -> Iterator[RunHandle]:
    """A stage's run: nested under ``MLLM4D_PARENT_RUN_ID`` (or this thread's active run), else top-level.

    It is the active MLflow run while open. An exception ends it FAILED (KILLED on Ctrl-C or SIGTERM) and
    re-raises. On a rank other than 0 of an ``accelerate launch`` it opens nothing: an ``OtherRankHandle``.
    """
    if (rank := launch_rank()) != 0:  # under `accelerate launch`: one run per stage, rank 0's
        yield OtherRankHandle(stage, rank)
        return
    experiment_id = setup(cfg, project_root)
    uri = resolve_tracking_uri(cfg, project_root)
    close_orphaned_runs(MlflowClient(uri), experiment_id)
    run_tags = (
        _context_tags(project_root)
        | lineage_tags(project_root)
        | clean(tags or {}, MAX_TAG_VAL_LENGTH, "tag", project_root)
        | _process_tags()
        | {STAGE_TAG: stage}
    )
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=stage,
        nested=True,
        parent_run_id=os.environ.get(PARENT_RUN_ENV) or None,
        tags=run_tags,
    )
    handle = RunHandle(run.info.run_id, uri, experiment_id, project_root)
    try:
        # Inside, library callbacks logging into this run (transformers' MLflowCallback through
        # ``tracking.callback``) relativise paths against this root too.
        with _sigterm_raises(), use_root(project_root):
            if params:
                handle.log_params(params)
            yield handle
    except BaseException as exc:
        _finish(handle._client, handle.run_id, exc, active=True)
        raise
    _finish(handle._client, handle.run_id, None, active=True)
    log.info("stage %s: %s", stage, handle.url())
