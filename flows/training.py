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
                 metrics_file: Path) -> tuple[Path, Path]:
    """The teacher, then its targets (``mllm4d teacher``, ``mllm4d teacher-targets``), in a child process: it trains
    beside SFT, and a thread of this process would draw its initial weights and batches from the torch RNG
    the SFT thread draws from."""
    run_command(cli_command("teacher", params_path, overrides, ["--curated", curated, "--out", out,
                                                                "--metrics", metrics_file]), "the teacher")
    run_command(cli_command("teacher-targets", params_path, overrides, ["--curated", curated, "--teacher", out,
                                                                        "--out", targets]), "the teacher's targets")
    return Path(out), Path(targets)


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


@flow(name="training", log_prints=True)
def training(params_path: str = "params.yaml", overrides: list[str] | None = None, data_root: str = "data",
             models_root: str = "models", reports_root: str = "reports") -> dict[str, str]:
    """Returns the checkpoints by name, for the evaluation flow (``sft_text_only``: the text-only control)."""
    params, root = params_from(params_path, overrides)
    curated, models = Path(data_root) / "curated", Path(models_root)
    base = base_model_task(params, curated, models / "base", root)
    setup = (params, params_path, overrides)  # a training task runs in this process or under accelerate launch
    # Two child processes in turn beside SFT: the teacher (~1.3 min on the default), then the text-only control
    # (as long as SFT), so P4D can start when SFT ends; on two cores, one chain per core.
    teacher = teacher_task.submit(params_path, overrides, curated, models / "teacher",
                                  Path(data_root) / "teacher_targets", Path(reports_root) / "teacher.json")
    text_only = sft_text_only_task.submit(*setup, curated, base, models / "sft_text_only", wait_for=[teacher])
    if params.launch.launched:
        text_only.result()  # each launch takes every GPU it is given: the two SFTs take turns
    sft = sft_task(*setup, curated, base, models / "sft", root)
    teacher_dir, targets = teacher.result()
    p4d = p4d_task(*setup, curated, sft, teacher_dir, targets, models / "p4d", root)
    grpo = grpo_task(*setup, curated, stages.grpo_init(params, models), models / "grpo", root)
    sft_text_only = text_only.result()
    return {"zero_shot": str(base), "sft": str(sft), "sft_text_only": str(sft_text_only), "p4d": str(p4d),
            "grpo": str(grpo)}
