"""The ``training`` flow: base model -> SFT -> gate -> P4D -> gate -> GRPO -> gate, and beside SFT the teacher ->
teacher targets, then the text-only-trained control (the same SFT on blank frames) -> gate.

Each task is a stage function the CLI and ``dvc repro`` call too; a failed gate raises and fails the flow.
The teacher and the text-only control train beside SFT in processes of their own (the ``teacher``,
``teacher-targets`` and ``sft-text-only`` commands): in this process they would share the GIL and torch's RNG.

With ``launch.processes > 1`` or a ``launch.accelerate_config`` (the GPU pool), every training stage (sft,
sft-text-only, p4d, grpo) runs as its ``components.cli`` command under ``accelerate launch`` in a child process
(``components.training.launch``), one rank per GPU, and the two SFTs take turns: each launch takes every GPU.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture

from components import stages
from components.config import Params
from components.training.launch import cli_command, run_command, run_launched
from flows.common import params_from


@task(cache_policy=NO_CACHE)
def base_model_task(params: Params, curated: Path, out: Path, root: Path) -> Path:
    return stages.base_model(params, curated, out, root=root)


@task(cache_policy=NO_CACHE)
def sft_task(params: Params, params_path: str, overrides: list[str] | None, curated: Path, base: Path, out: Path,
             root: Path) -> Path:
    if params.launch.launched:
        run_launched("sft", params_path, overrides, ["--curated", curated, "--base", base, "--out", out], params)
        return Path(out) / "model"
    return stages.sft(params, curated, base, out, root=root).model_dir


@task(cache_policy=NO_CACHE)
def sft_text_only_task(params: Params, params_path: str, overrides: list[str] | None, curated: Path, base: Path,
                       out: Path) -> Path:
    """``mllm4d sft-text-only`` in a child process, under ``accelerate launch`` when ``params.launch`` says so (its
    MLflow run nests under the parent's, whose id the child inherits in ``MLLM4D_PARENT_RUN_ID``); a failure there
    (gate included) fails this task."""
    args = ["--curated", curated, "--base", base, "--out", out]
    if params.launch.launched:
        run_launched("sft-text-only", params_path, overrides, args, params)
    else:
        run_command(cli_command("sft-text-only", params_path, overrides, args), "the text-only control")
    return Path(out) / "model"


@task(cache_policy=NO_CACHE)
def teacher_task(params_path: str, overrides: list[str] | None, curated: Path, out: Path, targets: Path,
                 metrics_file: Path) -> Path:
    """The teacher, then its targets (``mllm4d teacher``, ``mllm4d teacher-targets``), in a child process: it trains
    beside SFT, and a thread of this process would draw its initial weights and batches from the torch RNG
    the SFT thread draws from. Returns the targets' folder."""
    run_command(cli_command("teacher", params_path, overrides, ["--curated", curated, "--out", out,
                                                                "--metrics", metrics_file]), "the teacher")
    run_command(cli_command("teacher-targets", params_path, overrides, ["--curated", curated, "--teacher", out,
                                                                        "--out", targets]), "the teacher's targets")
    return Path(targets)


@task(cache_policy=NO_CACHE)
def p4d_task(params: Params, params_path: str, overrides: list[str] | None, curated: Path, sft: Path, teacher: Path,
             targets: Path, out: Path, root: Path) -> Path:
    if params.launch.launched:
        run_launched("p4d", params_path, overrides, ["--curated", curated, "--sft", sft, "--teacher", teacher,
                                                     "--targets", targets, "--out", out], params)
        return Path(out) / "model"
    return stages.p4d(params, curated, sft, teacher, targets, out, root=root).model_dir


@task(cache_policy=NO_CACHE)
def grpo_task(params: Params, params_path: str, overrides: list[str] | None, curated: Path, init: Path, out: Path,
              root: Path) -> Path:
    if params.launch.launched:
        run_launched("grpo", params_path, overrides, ["--curated", curated, "--init", init, "--out", out], params)
        return Path(out) / "model"
    return stages.grpo(params, curated, init, out, root=root).model_dir


def submit_training(params: Params, params_path: str, overrides: list[str] | None, data_root: str = "data",
                    models_root: str = "models", reports_root: str = "reports") -> dict[str, PrefectFuture]:
    """Every training task submitted, each waiting only for what it reads; returns their futures by checkpoint name,
    in pipeline order (``sft_text_only``: the text-only control). The ``pipeline`` flow hangs each checkpoint's
    evaluation on its future, so evaluations run while the next stage trains."""
    root = params_from(params_path, overrides)[1]
    curated, models = Path(data_root) / "curated", Path(models_root)
    base = base_model_task.submit(params, curated, models / "base", root)
    setup = (params, params_path, overrides)  # a training task runs in this process or under accelerate launch
    # Two child processes in turn beside SFT: the teacher (~1.3 min on the default), then the text-only control
    # (as long as SFT), so P4D can start when SFT ends; on two cores, one chain per core.
    teacher_dir = models / "teacher"
    targets = teacher_task.submit(params_path, overrides, curated, teacher_dir, Path(data_root) / "teacher_targets",
                                  Path(reports_root) / "teacher.json")
    text_only = sft_text_only_task.submit(*setup, curated, base, models / "sft_text_only", wait_for=[targets])
    # each launch takes every GPU it is given: the two SFTs take turns
    sft = sft_task.submit(*setup, curated, base, models / "sft", root,
                          wait_for=[text_only] if params.launch.launched else None)
    p4d = p4d_task.submit(*setup, curated, sft, teacher_dir, targets, models / "p4d", root)
    # GRPO starts from P4D's checkpoint or SFT's (grpo.init); after P4D either way, one training at a time
    grpo = grpo_task.submit(*setup, curated, stages.grpo_init(params, models), models / "grpo", root, wait_for=[p4d])
    return {"zero_shot": base, "sft": sft, "sft_text_only": text_only, "p4d": p4d, "grpo": grpo}


@flow(name="training", log_prints=True)
def training(params_path: str = "params.yaml", overrides: list[str] | None = None, data_root: str = "data",
             models_root: str = "models", reports_root: str = "reports") -> dict[str, str]:
    """Returns the checkpoints by name, for the evaluation flow (``sft_text_only``: the text-only control)."""
    params = params_from(params_path, overrides)[0]
    futures = submit_training(params, params_path, overrides, data_root, models_root, reports_root)
    return {name: str(future.result()) for name, future in futures.items()}
