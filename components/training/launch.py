"""Training stages under ``accelerate launch``: the command, its accelerate config, the child process.

With ``launch.processes > 1`` or a ``launch.accelerate_config``, the training flow runs each training stage (sft,
sft-text-only, p4d, grpo) as ``accelerate launch ... -m components.cli ... <stage> ...`` in a child process, not in
its own process. accelerate starts one process (rank) per GPU; every rank runs the same ``components.cli`` stage and
trains on its share of each batch (DDP, or DeepSpeed when the stage's ``deepspeed`` names a JSON); rank 0 alone opens
the stage's MLflow run (nested under the parent through the inherited ``MLLM4D_PARENT_RUN_ID``) and writes the output
folder (``components.tracking.runs.stage_run``, ``components.training.sft.fit`` and ``run_sft``).

The DeepSpeed settings travel in the params (``sft.deepspeed``, ``p4d.train.deepspeed``, ``grpo.deepspeed``), never in
the accelerate config, so that the run's params in MLflow and ``meta.json`` say how it trained. Plain functions: the
flow calls ``run_launched``; the tests read ``launch_command``.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from components.config import LaunchConfig, ModelConfig, Params

log = logging.getLogger(__name__)

TRAINING_STAGES = ("sft", "sft-text-only", "p4d", "grpo")  # the ``components.cli`` commands that train
STDERR_TAIL = 6000  # characters of a failed child's stderr in the error: torch's summary of the failed rank fits


def cli_args(stage: str, params_path: str | Path, overrides: list[str] | None, args: list) -> list[str]:
    """``components.cli``'s arguments for ``stage``: ``--quiet --params P [-S k=v ...] <stage> <args>``."""
    sets = [arg for o in overrides or [] for arg in ("-S", o)]
    return ["--quiet", "--params", str(params_path), *sets, stage, *map(str, args)]


def cli_command(stage: str, params_path: str | Path, overrides: list[str] | None, args: list) -> list[str]:
    """``stage`` as one plain process of this interpreter: ``python -m components.cli ...``."""
    return [sys.executable, "-m", "components.cli", *cli_args(stage, params_path, overrides, args)]


def launch_command(stage: str, params_path: str | Path, overrides: list[str] | None, args: list, cfg: LaunchConfig,
                   *, config_file: str | Path, mixed_precision: str = "no") -> list[str]:
    """``accelerate launch --config_file C --num_processes N ... -m components.cli ... <stage> <args>``.

    accelerate runs from this interpreter's package (``python -m accelerate.commands.launch`` is ``accelerate
    launch``): a worker's PATH need not hold the virtual environment's scripts. ``--num_processes`` and
    ``--mixed_precision`` are always given, so the params decide them whatever the config file says;
    ``mixed_precision`` comes from :func:`launch_precision`."""
    if stage not in TRAINING_STAGES:
        raise ValueError(f"launch_command: {stage!r} is not a training stage; valid: {', '.join(TRAINING_STAGES)}")
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
            "--num_processes", str(cfg.processes), "--main_process_port", str(cfg.main_process_port),
            "--mixed_precision", mixed_precision, "-m", "components.cli",
            *cli_args(stage, params_path, overrides, args)]


def launch_precision(model_cfg: ModelConfig, *, cuda: bool) -> str:
    """The launcher's ``--mixed_precision``: what the stage's TrainingArguments choose in one process (bf16 on CUDA
    for a bfloat16 model, ``sft.common_args``). Left to the accelerate config it would differ: TrainingArguments
    take the launcher's precision whenever their bf16 is off, and beside a DeepSpeed JSON accelerate refuses to start
    at all when the precision came from its config file (``DeepSpeedPlugin``: "the following accelerate config
    variables will be ignored")."""
    return "bf16" if cuda and model_cfg.dtype == "bfloat16" else "no"


def generated_config(cfg: LaunchConfig) -> dict:
    """The accelerate config written for a launch when ``launch.accelerate_config`` is '': ``processes`` ranks on this
    machine. Written, not left to flags, because without ``--config_file`` accelerate reads the worker's default config
    (``accelerate config``'s leftover in the Hugging Face cache) if there is one. ``MULTI_GPU`` on a CPU-only machine
    too: it is accelerate's one single-machine multi-process launcher (torch's ``torch.distributed.run``); its
    ``MULTI_CPU`` type starts a single process unless MPI is set up. Each rank picks its device itself: the CPU and
    gloo where there is no CUDA (``sft.common_args``' ``use_cpu``), its GPU and NCCL where there is."""
    return {"compute_environment": "LOCAL_MACHINE", "distributed_type": "MULTI_GPU", "num_machines": 1,
            "num_processes": cfg.processes, "machine_rank": 0, "gpu_ids": "all", "mixed_precision": "no",
            "main_training_function": "main", "use_cpu": False, "debug": False}


def stage_deepspeed(params: Params, stage: str) -> tuple[str, str]:
    """The params key naming ``stage``'s DeepSpeed JSON, and its value ('' for none)."""
    fields = {"sft": ("sft.deepspeed", params.sft.deepspeed), "sft-text-only": ("sft.deepspeed", params.sft.deepspeed),
              "p4d": ("p4d.train.deepspeed", params.p4d.train.deepspeed),
              "grpo": ("grpo.deepspeed", params.grpo.deepspeed)}
    if stage not in fields:
        raise ValueError(f"{stage!r} is not a training stage; valid: {', '.join(TRAINING_STAGES)}")
    return fields[stage]


def check_launch(params: Params, stage: str, *, cuda: bool, gpus: int) -> None:
    """What would fail only once every rank has loaded its model, checked before anything starts."""
    cfg = params.launch
    key, deepspeed = stage_deepspeed(params, stage)
    if deepspeed and not Path(deepspeed).is_file():
        raise FileNotFoundError(f"{key}: {deepspeed} not found (relative to {Path.cwd()})")
    if deepspeed and not cuda:
        raise ValueError(f"{key} is {deepspeed}, but this machine has no CUDA device: DeepSpeed runs on the GPU "
                         f"pool (docs/production.md); set {key}='' to launch on the CPU")
    if cuda and cfg.processes > gpus:
        raise ValueError(f"launch.processes is {cfg.processes} but this machine has {gpus} GPU(s): one process per "
                         "GPU, so at most that many")
    if not cfg.accelerate_config:
        return
    config = Path(cfg.accelerate_config)
    if not config.is_file():
        raise FileNotFoundError(f"launch.accelerate_config: {config} not found (relative to {Path.cwd()})")
    accelerate = yaml.safe_load(config.read_text()) or {}
    if accelerate.get("distributed_type") == "DEEPSPEED" and not deepspeed:
        raise ValueError(f"launch.accelerate_config {config} runs DeepSpeed (distributed_type: DEEPSPEED) but {key} "
                         f"is '': set {key} to a DeepSpeed JSON (infra/deepspeed/zero2.json); the DeepSpeed settings "
                         "come from the params, not from the accelerate config")


# A reason in a child's stderr: the CLI's own error line, or the last line of a Python traceback; torch's launcher
# prefixes each rank's lines with "[rankN]: ".
_REASON = re.compile(r"^(?:\[rank\d+\]: )?((?:mllm4d: |\w+(?:Error|Exception): ).*)$")


def run_command(cmd: list[str], what: str) -> None:
    """Run ``cmd`` in a child process (this process's environment and working directory, so an MLflow parent run's
    id travels in ``MLLM4D_PARENT_RUN_ID``); a failure raises with the reasons its stderr gives (``mllm4d: ...``
    lines and exceptions, once each: every rank prints its own) and the tail of its stderr. Under accelerate the
    tail is torch's summary of the failed ranks, which pushes the reasons out of it."""
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        reasons = dict.fromkeys(m.group(1) for line in done.stderr.splitlines() if (m := _REASON.match(line)))
        raise RuntimeError(f"{what} failed (exit {done.returncode}): {' '.join(cmd)}\n" + "".join(
            f"{line}\n" for line in reasons) + f"--- the end of its stderr:\n{done.stderr[-STDERR_TAIL:]}")


def run_launched(stage: str, params_path: str | Path, overrides: list[str] | None, args: list,
                 params: Params) -> None:
    """Run ``stage`` under ``accelerate launch`` as ``params.launch`` says (``params`` are ``params_path`` with
    ``overrides``, already loaded); raises ``RuntimeError`` with the tail of its stderr when a rank fails (rank 0's
    training gate included)."""
    import torch

    cfg, cuda = params.launch, torch.cuda.is_available()
    check_launch(params, stage, cuda=cuda, gpus=torch.cuda.device_count() if cuda else 0)
    with tempfile.TemporaryDirectory(prefix="mllm4d-accelerate-") as tmp:
        config = Path(cfg.accelerate_config) if cfg.accelerate_config else Path(tmp) / "accelerate.yaml"
        if not cfg.accelerate_config:
            config.write_text(yaml.safe_dump(generated_config(cfg), sort_keys=False))
        cmd = launch_command(stage, params_path, overrides, args, cfg, config_file=config,
                             mixed_precision=launch_precision(params.model, cuda=cuda))
        log.info("%s: %s", stage, " ".join(cmd))
        run_command(cmd, f"{stage} under accelerate launch ({cfg.processes} processes)")
