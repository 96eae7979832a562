"""The gates and controls are wired the same way in dvc.yaml, the CLI and the flows (fast: nothing runs)."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
import yaml

from components.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _cmd_args(stage: dict) -> list[str]:
    """The stage's `mllm4d` arguments, with ${...} interpolations replaced by a placeholder."""
    argv = shlex.split(stage["cmd"] if "cmd" in stage else stage["do"]["cmd"])
    assert argv[0] == "mllm4d"
    return [a.replace("${", "").replace("}", "") for a in argv[1:]]


def _deps(stage: dict) -> list[str]:
    return [d if isinstance(d, str) else next(iter(d)) for d in (stage.get("deps") or stage["do"].get("deps"))]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_dvc_stage_is_a_valid_cli_command(name):
    _parser().parse_args(_cmd_args(STAGES[name]))  # exits (SystemExit) on an unknown command or option


def test_the_prior_gate_runs_after_the_data_gate_and_before_training():
    prior = STAGES["prior_gate"]
    assert _cmd_args(prior)[1] == "prior-gate"
    assert "reports/quality/gate_report.json" in _deps(prior)
    assert prior["params"] == ["prior"]  # the whole section (tests/test_dvc_deps.py checks sections against the code)
    assert "reports/quality/prior_report.json" in _deps(STAGES["base_model"])
    assert any("reports/quality/prior_report.json" in m for m in prior["metrics"])


def test_the_text_only_control_is_the_sft_recipe_on_blank_frames():
    sft, text_only = STAGES["sft"], STAGES["sft_text_only"]
    assert _cmd_args(text_only)[1] == "sft-text-only"
    assert text_only["params"] == sft["params"]  # the same sections; model.blank_frames is forced on
    assert _deps(text_only) == _deps(sft)
    evaluate_text_only = _cmd_args(STAGES["evaluate_text_only"])
    assert "--blank-frames" in evaluate_text_only and "models/sft_text_only/model" in evaluate_text_only


def test_every_evaluation_reads_the_text_only_predictions_and_compare_shows_them():
    predictions = "reports/eval/sft_text_only/predictions.jsonl"
    evaluate = STAGES["evaluate"]
    assert predictions in _deps(evaluate) and predictions in _cmd_args(evaluate)
    assert {"evaluate", "model"} == set(evaluate["do"]["params"])
    compare = _cmd_args(STAGES["compare"])
    assert "sft_text_only=reports/eval/sft_text_only/metrics.json" in compare
    assert "reports/eval/sft_text_only/metrics.json" in _deps(STAGES["compare"])


@pytest.mark.parametrize("init", ["p4d", "sft"])
def test_grpo_starts_where_the_stage_layer_says(init, smoke_params):
    """``dvc.yaml`` spells GRPO's starting folder with ``${grpo.init}``; the CLI and the flow ask
    ``stages.grpo_init``: the two agree."""
    from components import stages

    params = dataclasses.replace(smoke_params, grpo=dataclasses.replace(smoke_params.grpo, init=init))
    argv = shlex.split(STAGES["grpo"]["cmd"].replace("${grpo.init}", init))
    assert argv[argv.index("--init") + 1] == str(stages.grpo_init(params, Path("models")))
    assert str(stages.grpo_init(params, Path("models"))) in [d.replace("${grpo.init}", init) for d in _deps(STAGES["grpo"])]


def test_the_flows_call_the_same_stages():
    import flows.curation
    import flows.evaluation
    import flows.training

    assert flows.curation.prior_gate_task.fn.__code__.co_names.count("prior_gate") == 1
    assert "sft-text-only" in flows.training.sft_text_only_task.fn.__code__.co_consts  # the CLI's stage, in a child
    assert flows.evaluation.TEXT_ONLY == "sft_text_only"
