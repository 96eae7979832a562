"""The promotion gate against the MLflow model registry: find ``@challenger`` and ``@champion``, fetch what
each answered on the bench, decide (``components.evaluation.promotion.decide``), record the decision on the
challenger's version (tags and description) and move ``@champion`` when it passes.

Where the predictions come from: every registered version's run logged its evaluation folder under the
artifact path ``evaluation/`` (``stages.evaluate``), so a version's ``predictions.jsonl`` is one download
away. When the champion was evaluated on other bench records (the data changed since), the caller passes
a function that evaluates the champion's model on the challenger's records instead: the comparison is
always on the same records.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from components.config import PromoteConfig
from components.evaluation.promotion import Decision, decide
from components.io import read_jsonl
from components.tracking.registry import promote

log = logging.getLogger(__name__)

PREDICTIONS = "evaluation/predictions.jsonl"
METRICS = "evaluation/metrics.json"
DECISION_TAG = "mllm4d.promotion"  # promoted | rejected (| promoted (dry run) ...)


@dataclass
class Promotion:
    decision: Decision
    challenger: ModelVersion | None  # None: an unregistered candidate (a dry run on a model folder)
    champion: ModelVersion | None
    dry_run: bool

    @property
    def summary(self) -> str:
        champion = f"version {self.champion.version}" if self.champion else None
        challenger = f"version {self.challenger.version}" if self.challenger else "the candidate"
        return self.decision.markdown(challenger, champion)


def _alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:  # RESOURCE_DOES_NOT_EXIST / INVALID_PARAMETER_VALUE by store
        if "alias" in str(exc).lower() or "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
            return None
        raise


def _download(client: MlflowClient, version: ModelVersion, artifact: str, dst: Path) -> Path:
    if not version.run_id:
        raise ValueError(f"model version {version.version} has no source run: nothing records what it answered")
    try:
        return Path(client.download_artifacts(version.run_id, artifact, str(dst)))
    except (MlflowException, OSError) as exc:
        raise FileNotFoundError(f"model version {version.version}'s run {version.run_id} has no {artifact} "
                                f"(was it registered by `mllm4d evaluate --register`?): {exc}") from exc


def version_evaluation(client: MlflowClient, version: ModelVersion, dst: Path) -> tuple[list[dict], dict]:
    """(prediction rows, metrics) a registered version's run logged for its bench evaluation."""
    rows = read_jsonl(_download(client, version, PREDICTIONS, dst / str(version.version)))
    metrics = json.loads(_download(client, version, METRICS, dst / str(version.version)).read_text())
    return rows, metrics


def _same_records(a: list[dict], b: list[dict]) -> bool:
    key = lambda rows: {r["id"]: (r["category"], str(r["answer"])) for r in rows}
    return key(a) == key(b)


def promote_challenger(tracking_uri: str, name: str, cfg: PromoteConfig, *, dry_run: bool = False,
                       challenger_rows: tuple[list[dict], dict] | None = None,
                       reevaluate: Callable[[ModelVersion, list[dict]], list[dict]] | None = None) -> Promotion:
    """Decide whether ``name@challenger`` replaces ``name@<cfg.alias>``; record it unless ``dry_run``.

    ``challenger_rows``: the challenger's (prediction rows, metrics) when the caller has them on disk (with
    ``dry_run``: an unregistered candidate's, compared with the champion; no @challenger needed);
    ``reevaluate(champion_version, challenger_rows)``: the champion's rows on the challenger's records,
    called only when its own evaluation was on other records (without it that is an error)."""
    client = MlflowClient(tracking_uri)
    # a dry run given the rows of a model that is not registered compares that candidate with the champion
    challenger = None if dry_run and challenger_rows else _alias(client, name, "challenger")
    if challenger is None and not (dry_run and challenger_rows):
        raise ValueError(f"registered model {name!r} has no @challenger version: register one first "
                         "(`mllm4d evaluate --register` or the pipeline's evaluation)")
    champion = _alias(client, name, cfg.alias)
    if champion is not None and challenger is not None and str(champion.version) == str(challenger.version):
        raise ValueError(f"{name} version {challenger.version} is already @{cfg.alias}: nothing to decide")
    with tempfile.TemporaryDirectory(prefix="mllm4d-promote-") as tmp:
        rows, metrics = challenger_rows or version_evaluation(client, challenger, Path(tmp))
        theirs = None
        if champion is not None:
            theirs, _ = version_evaluation(client, champion, Path(tmp))
            if not _same_records(rows, theirs):
                if reevaluate is None:
                    raise ValueError(f"{name} @{cfg.alias} (version {champion.version}) was evaluated on other bench "
                                     "records than the challenger and no re-evaluation was given")
                log.info("champion version %s was evaluated on other records: evaluating it again", champion.version)
                theirs = reevaluate(champion, rows)
    decision = decide(rows, theirs, cfg, headline=metrics.get("headline"))
    promotion = Promotion(decision, challenger, champion, dry_run)
    if dry_run:
        log.info("dry run: %s %s would be %s", name, challenger.version if challenger else "candidate",
                 decision.verdict)
        return promotion
    _record(client, tracking_uri, name, promotion, cfg)
    return promotion


def _record(client: MlflowClient, tracking_uri: str, name: str, promotion: Promotion, cfg: PromoteConfig) -> None:
    """The decision on the challenger's version (tags: verdict, reasons, numbers; description: the table),
    then the alias: a reader who sees @champion move also finds why on that version."""
    d, version = promotion.decision, promotion.challenger.version
    tags = {
        DECISION_TAG: d.verdict,
        f"{DECISION_TAG}.metric": d.metric,
        f"{DECISION_TAG}.challenger": f"{d.challenger:.4f}",
        f"{DECISION_TAG}.format_valid": f"{d.format_valid:.4f}",
        f"{DECISION_TAG}.compared_with": str(promotion.champion.version) if promotion.champion else "none",
        f"{DECISION_TAG}.reasons": "; ".join(d.reasons)[:MAX_TAG_VAL_LENGTH] or "-",
    }
    if d.improvement:
        tags[f"{DECISION_TAG}.improvement"] = f"{d.improvement['value']:.4f}"
        tags[f"{DECISION_TAG}.improvement_ci"] = f"[{d.improvement['ci'][0]:.4f}, {d.improvement['ci'][1]:.4f}]"
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.update_model_version(name, version, description=promotion.summary)
    if d.promote:
        promote(name, version, cfg.alias, tracking_uri=tracking_uri)
