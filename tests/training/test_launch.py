"""Training stages under ``accelerate launch`` (``components.training.launch``): SFT on two CPU processes (gloo)
trains on both ranks, logs one MLflow run under the parent and saves a model that reloads; the DeepSpeed command
is one accelerate and each rank's TrainingArguments accept (running it needs the GPU pool); bad launch settings
fail before any process starts, naming the field."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow import MlflowClient
from safetensors.torch import load_file

from components.config import load_params
from components.io import read_jsonl
from components.models import load_model
from components.tracking import pipeline_run
from components.training.launch import (
    check_launch,
    cli_args,
    generated_config,
    launch_command,
    launch_precision,
    run_command,
    run_launched,
)

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "presets" / "smoke.yaml"
STEPS, BATCH = 4, 4


@pytest.fixture(scope="module")
def launched(tmp_path_factory, smoke_curated, base):
    """``mllm4d sft`` under ``accelerate launch`` with 2 processes, under an MLflow parent run, in a scratch project."""
    curated, _ = smoke_curated
    project = tmp_path_factory.mktemp("launch")
    out = project / "models" / "sft"
    overrides = ["launch.processes=2", f"sft.max_steps={STEPS}", f"sft.batch_size={BATCH}", "sft.logging_steps=2",
                 f"sft.save_steps={STEPS}", "sft.gate.records=4", "sft.gate.max_new_tokens=8",
                 "sft.gate.min_format_valid=0.0"]  # a 4-step model cannot answer in format yet; the rest is judged
    uri = f"sqlite:///{project / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)  # the children's MLflow artifacts and anything relative land in the scratch project
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        params = load_params(SMOKE, overrides)
        start = time.perf_counter()
        with pipeline_run("launch-test", params.tracking, project) as parent:
            run_launched("sft", SMOKE, overrides, ["--curated", curated, "--base", base, "--out", out], params)
        seconds = time.perf_counter() - start
    print(f"sft under accelerate launch, 2 processes: {seconds:.1f} s")
    return {"out": out, "parent": parent.run_id, "uri": uri, "params": params, "curated": curated}


def test_every_rank_trained_its_share_of_the_batches(launched):
    meta = json.loads((launched["out"] / "meta.json").read_text())
    assert meta["processes"] == [{"rank": 0, "steps": STEPS}, {"rank": 1, "steps": STEPS}]
    # The Trainer's own count: each rank's dataloader holds half an epoch's batches, so STEPS steps are twice the
    # share of an epoch they are in one process.
    records = len(read_jsonl(launched["curated"] / "sft.jsonl"))
    assert meta["train_metrics"]["epoch"] == pytest.approx(STEPS / math.ceil(records / (2 * BATCH)))
    assert meta["losses"][-1] < meta["losses"][0]


def test_rank_zero_alone_logged_one_run_under_the_parent(launched):
    client = MlflowClient(launched["uri"])
    experiment = client.get_experiment_by_name(launched["params"].tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], "tags.`mllm4d.stage` = 'sft'")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == launched["parent"]
    assert run.data.metrics["gate_success"] == 1.0 and "final_loss" in run.data.metrics
    assert "train_loss" in run.data.metrics  # the Trainer's MLflow callback logged into it, from rank 0
    sidecar = json.loads(Path(f"{launched['out']}.run.json").read_text())
    assert sidecar["mlflow_run_id"] == run.info.run_id


def test_the_launched_model_reloads_and_changed(launched, base):
    model_dir = launched["out"] / "model"
    model, processor = load_model(model_dir, launched["params"].model, require_digest=True)  # digest whole
    assert model is not None and processor is not None
    before, after = load_file(str(Path(base) / "model.safetensors")), load_file(str(model_dir / "model.safetensors"))
    assert before.keys() == after.keys()
    assert any(k.startswith("model.layers.") and not torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------------------------ DeepSpeed, unit


@pytest.mark.parametrize("accelerate_config, launcher", [("infra/accelerate.yaml", "deepspeed"), ("", "multi_gpu")])
def test_a_deepspeed_launch_is_accepted_by_accelerate_and_by_each_rank(accelerate_config, launcher, tmp_path,
                                                                       monkeypatch):
    """The GPU pool's command, read by accelerate's own parser and launcher set-up (only the spawning of the ranks
    is replaced), then the TrainingArguments each rank builds, in the environment accelerate gives it."""
    import accelerate.commands.launch as accelerate_launch
    from accelerate.utils import patch_environment
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from components.training.sft import trl_args

    monkeypatch.chdir(ROOT)
    overrides = ["model.dtype=bfloat16", "sft.deepspeed=infra/deepspeed/zero2.json", "launch.processes=8",
                 f"launch.accelerate_config='{accelerate_config}'"]
    params = load_params("params.yaml", overrides)
    config = accelerate_config or tmp_path / "accelerate.yaml"
    if not accelerate_config:
        config.write_text(yaml.safe_dump(generated_config(params.launch)))
    args = ["--curated", "data/curated", "--base", "models/base", "--out", "models/sft"]
    cmd = launch_command("sft", "params.yaml", overrides, args, params.launch, config_file=config,
                         mixed_precision=launch_precision(params.model, cuda=True))
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--mixed_precision") + 1] == "bf16"

    seen = {}
    monkeypatch.setattr(accelerate_launch, "deepspeed_launcher",
                        lambda a: seen.update(launcher="deepspeed", args=a, env=prepare_deepspeed_cmd_env(a)[1]))
    monkeypatch.setattr(accelerate_launch, "multi_gpu_launcher",
                        lambda a: seen.update(launcher="multi_gpu", args=a, env=prepare_multi_gpu_env(a)))
    accelerate_launch.launch_command(accelerate_launch.launch_command_parser().parse_args(cmd[3:]))
    parsed = seen["args"]
    assert seen["launcher"] == launcher and parsed.num_processes == 8
    assert parsed.module and parsed.training_script == "components.cli"
    assert parsed.training_script_args == cli_args("sft", "params.yaml", overrides, args)

    rank_env = {k: v for k, v in seen["env"].items() if k.startswith("ACCELERATE_")}
    try:
        with patch_environment(**rank_env):
            rank_args = trl_args(params.sft, params.model, tmp_path, report_to="none", progress=False)
    finally:
        unset_hf_deepspeed_config()  # TrainingArguments registered the DeepSpeed config process-wide
    assert rank_args.deepspeed_plugin is not None
    assert rank_args.hf_deepspeed_config.config["zero_optimization"]["stage"] == 2


def test_bad_launch_settings_fail_before_any_process_starts_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)

    def params(*overrides):
        return load_params("params.yaml", list(overrides))

    with pytest.raises(ValueError, match=r"sft\.deepspeed is infra/deepspeed/zero2\.json.*no CUDA device"):
        check_launch(params("sft.deepspeed=infra/deepspeed/zero2.json", "launch.processes=2"), "sft", cuda=False,
                     gpus=0)
    with pytest.raises(FileNotFoundError, match=r"p4d\.train\.deepspeed: nowhere\.json not found"):
        check_launch(params("p4d.train.deepspeed=nowhere.json"), "p4d", cuda=True, gpus=8)
    with pytest.raises(ValueError, match=r"launch\.processes is 8 but this machine has 2 GPU"):
        check_launch(params("launch.processes=8"), "grpo", cuda=True, gpus=2)
    with pytest.raises(FileNotFoundError, match=r"launch\.accelerate_config: nowhere\.yaml not found"):
        check_launch(params("launch.accelerate_config=nowhere.yaml"), "sft", cuda=True, gpus=8)
    with pytest.raises(ValueError, match=r"infra/accelerate\.yaml runs DeepSpeed.*grpo\.deepspeed is ''"):
        check_launch(params("launch.accelerate_config=infra/accelerate.yaml"), "grpo", cuda=True, gpus=8)
    with pytest.raises(ValueError, match="'teacher' is not a training stage"):
        launch_command("teacher", "params.yaml", [], [], params().launch, config_file="a.yaml")


def test_a_failed_child_raises_with_its_reasons_once_each_and_the_end_of_its_stderr():
    # Two ranks saying the same, as torch's launcher prints them; the text is built in the child, so that the
    # command itself (which the message holds too) does not contain it.
    say = ("import sys; [(print(f'[rank{r}]: mllm4d:', 'the gate failed', file=sys.stderr), "
           "print(f'[rank{r}]: Runtime' + 'Error:', 'marked ready twice', file=sys.stderr)) for r in (0, 1)]; "
           "print('  File x.py, line 1, in <module>', file=sys.stderr); sys.exit(3)")
    with pytest.raises(RuntimeError, match="exit 3") as info:
        run_command([sys.executable, "-c", say], "the stage")
    reasons, tail = str(info.value).split("--- the end of its stderr:\n")
    assert reasons.splitlines()[1:] == ["mllm4d: the gate failed", "RuntimeError: marked ready twice"]
    assert tail.count("the gate failed") == 2 and "File x.py" in tail
