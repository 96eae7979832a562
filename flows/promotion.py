"""The ``promotion`` flow: the promotion gate as a deployment of its own (run it after an evaluation, or
with ``dry_run`` to see what it would decide) and as the ``pipeline`` flow's last step. The decision and
its table go to the registry (tags and description of the challenger's version) and to a Prefect artifact."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from components import stages
from components.config import Params
from flows.common import params_from


@task(cache_policy=NO_CACHE)
def promote_task(params: Params, curated: Path, out: Path, root: Path, dry_run: bool):
    return stages.promote(params, curated, out, root=root, dry_run=dry_run)


@flow(name="promotion", log_prints=True)
def promotion(params_path: str = "params.yaml", overrides: list[str] | None = None, data_root: str = "data",
              reports_root: str = "reports", dry_run: bool = False) -> dict:
    """``@challenger`` vs ``@champion`` of ``evaluate.registered_model``; returns the decision (a dict)."""
    params, root = params_from(params_path, overrides)
    result = promote_task(params, Path(data_root) / "curated", Path(reports_root) / "promotion", root, dry_run)
    title = "## Promotion" + (" (dry run: registry unchanged)" if dry_run else "")
    create_markdown_artifact(key="promotion-decision", markdown=f"{title}\n\n{result.summary}\n",
                             description="the promotion gate's decision, reasons and per-category table")
    return {"verdict": result.decision.verdict,
            "challenger_version": int(result.challenger.version) if result.challenger else None,
            "champion_version": int(result.champion.version) if result.champion else None,
            "reasons": result.decision.reasons, "summary": result.summary}
