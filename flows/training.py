"""The ``training`` flow: base model -> SFT -> gate -> teacher -> teacher targets -> P4D -> gate -> GRPO -> gate,
and beside SFT the text-only-trained control (the same SFT on blank frames) -> gate.

Each task is a stage function the CLI and ``dvc repro`` call too; a failed gate raises and fails the flow.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from components import stages
from components.config import Params
from flows.common import params_from


@task(cache_policy=NO_CACHE)
def base_model_task(params: Params, curated: Path, out: Path, root: Path) -> Path:
    return stages.base_model(params, curated, out, root=root)


@task(cache_policy=NO_CACHE)
def sft_task(params: Params, curated: Path, base: Path, out: Path, root: Path) -> Path:
    return stages.sft(params, curated, base, out, root=root).model_dir


@task(cache_policy=NO_CACHE)
def sft_text_only_task(params: Params, curated: Path, base: Path, out: Path, root: Path) -> Path:
    return stages.sft_text_only(params, curated, base, out, root=root).model_dir


@task(cache_policy=NO_CACHE)
def teacher_task(params: Params, curated: Path, out: Path, root: Path) -> Path:
    return stages.teacher(params, curated, out, root=root)


@task(cache_policy=NO_CACHE)
def teacher_targets_task(params: Params, curated: Path, teacher: Path, out: Path, root: Path) -> Path:
    stages.teacher_targets(params, curated, teacher, out, root=root)
    return out


@task(cache_policy=NO_CACHE)
def p4d_task(params: Params, curated: Path, sft: Path, teacher: Path, targets: Path, out: Path, root: Path) -> Path:
    return stages.p4d(params, curated, sft, teacher, targets, out, root=root).model_dir


@task(cache_policy=NO_CACHE)
def grpo_task(params: Params, curated: Path, init: Path, out: Path, root: Path) -> Path:
    return stages.grpo(params, curated, init, out, root=root).model_dir


@flow(name="training", log_prints=True)
def training(params_path: str = "params.yaml", overrides: list[str] | None = None, data_root: str = "data",
             models_root: str = "models") -> dict[str, str]:
    """Returns the checkpoints by name, for the evaluation flow (``sft_text_only``: the text-only control)."""
    params, root = params_from(params_path, overrides)
    curated, models = Path(data_root) / "curated", Path(models_root)
    base = base_model_task(params, curated, models / "base", root)
    sft = sft_task(params, curated, base, models / "sft", root)
    sft_text_only = sft_text_only_task(params, curated, base, models / "sft_text_only", root)
    teacher = teacher_task(params, curated, models / "teacher", root)
    targets = teacher_targets_task(params, curated, teacher, Path(data_root) / "teacher_targets", root)
    p4d = p4d_task(params, curated, sft, teacher, targets, models / "p4d", root)
    grpo = grpo_task(params, curated, p4d if params.grpo.init == "p4d" else sft, models / "grpo", root)
    return {"zero_shot": str(base), "sft": str(sft), "sft_text_only": str(sft_text_only), "p4d": str(p4d),
            "grpo": str(grpo)}
