"""What a training stage was made from, by digest: one way to name an input, for resuming and for lineage.

A file is named by its sha256; a model folder by ``models.factory.model_digest`` (the ``digest.json`` the
stage that wrote it recorded, or, for a checkpoint this pipeline did not write, one sha256 over its files).
The same digests decide whether a checkpoint may be resumed (``sft.fit``) and go into ``<out>/meta.json``
(``write_lineage``), so the lineage file says exactly what the resume check compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.io import file_digest, read_folder_digest, write_json
from components.models.factory import DIGEST, model_digest


def input_digest(path: Path) -> str:
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if path.is_dir():
        return model_digest(path)
    raise FileNotFoundError(f"training input not found: {path}")


def input_digests(inputs: dict[str, Path]) -> dict[str, str]:
    """``{name: digest}`` for ``{name: file or model folder}``."""
    return {name: input_digest(path) for name, path in inputs.items()}


def write_lineage(out: Path, *, stage: str, config: dict, inputs: dict[str, Path], digests: dict[str, str],
                  model_dir: Path, **record: Any) -> None:
    """``out/meta.json``: the stage, its config, each input's path and digest, the digest of the model it wrote,
    and ``record`` (steps, losses, ...). Nothing run-specific (no git commit, no run id): this folder is a DVC
    output, hashed; the commit is on the stage's MLflow run and in the ``<out>.run.json`` sidecar."""
    write_json(Path(out) / "meta.json", {
        "stage": stage,
        "config": config,
        "inputs": {name: {"path": str(path), "sha256": digests[name]} for name, path in inputs.items()},
        "model_digest": read_folder_digest(model_dir, DIGEST),
        **record,
    })
