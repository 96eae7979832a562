"""What goes into a run besides the stage's own numbers: cleaned params and tags, lineage, digests.

Secrets never reach MLflow from here: a param or tag whose key or value looks like a credential is
dropped with a warning naming the key (never the value), passwords inside URLs are masked and absolute
paths made relative to the project root (``redact``: the one filter for params, tags and artifacts).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from components.config import flatten
from components.io import file_digest
from components.tracking.redact import is_secret, mask_url_passwords, redact_text

log = logging.getLogger(__name__)

GIT_TAG, DIRTY_TAG, DVC_LOCK_TAG = "mllm4d.git.commit", "mllm4d.git.dirty", "mllm4d.dvc_lock.sha256"
PIPELINE_WRITES = ("reports", "dvc.lock")  # git-tracked files a pipeline run rewrites: not code, not "dirty"

def clean(items: dict[str, Any], limit: int, what: str, root: Path | None = None) -> dict[str, str]:
    """Params or tags as MLflow takes them: strings, through ``redact`` (a secret drops the item, with a
    warning naming its key; paths relative to ``root``, the open run's project root by default), cut to
    ``limit`` characters."""
    out: dict[str, str] = {}
    for key, value in items.items():
        text = str(value)
        if is_secret(str(key), mask_url_passwords(text)):
            log.warning("not logging %s %r: it looks like a credential", what, key)
            continue
        text = redact_text(text, root)
        out[str(key)] = text if len(text) <= limit else text[: limit - 3] + "..."
    return out


def flatten_params(d: dict | Any) -> dict[str, str]:
    """Nested dict or dataclass -> ``{"a.b": "value"}``, stringified, truncated, secrets dropped."""
    if dataclasses.is_dataclass(d):
        d = dataclasses.asdict(d)
    return clean(flatten(d), MAX_PARAM_VAL_LENGTH, "param")


def lineage_tags(project_root: Path) -> dict[str, str]:
    """Git commit + dirty flag: tracked files only, like ``git describe --dirty``, and not the files a pipeline
    run itself rewrites (``PIPELINE_WRITES``: the reports and dvc.lock), or every run after the first would
    be "dirty". The dvc.lock hash is not here: a stage runs before its lock entry exists, so the lock it
    could name is never the one committed with its outputs (``dvc_lock_tag`` after ``dvc repro`` is)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=project_root, capture_output=True, text=True, timeout=30, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    tags = {GIT_TAG: "unknown"}
    if commit := git("rev-parse", "HEAD"):
        status = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                     *(f":(exclude){p}" for p in PIPELINE_WRITES))
        tags |= {GIT_TAG: commit, "mlflow.source.git.commit": commit}
        tags[DIRTY_TAG] = "unknown" if status is None else str(bool(status)).lower()
    return tags


def dvc_lock_tag(project_root: Path) -> dict[str, str]:
    """The sha256 of ``dvc.lock`` as it is now (after ``dvc repro`` wrote it: the lock to commit)."""
    lock = Path(project_root) / "dvc.lock"
    return {DVC_LOCK_TAG: file_digest(lock)} if lock.is_file() else {}


def content_digest(path: Path, files: list[Path]) -> str:
    """md5 of the file (the same value dvc.lock records for it); for a folder, md5 of its files' md5s."""
    if not path.is_dir():
        return file_digest(path, "md5")
    listing = "".join(f"{f.relative_to(path).as_posix()}\t{file_digest(f, 'md5')}\n" for f in files)
    return hashlib.md5(listing.encode()).hexdigest()


def json_cell(value: Any) -> Any:
    # Nested or mixed-type JSON columns defeat MLflow's schema inference: keep them as JSON text.
    return value if value is None or isinstance(value, str) else json.dumps(value, sort_keys=True)
