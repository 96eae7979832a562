"""The registry, name checks, the TRL binder and the weighted total (None handling) on literal inputs."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest

from components.config import RewardsConfig, RewardTerm, load_params
from components.io import read_jsonl
from components.rewards import REGISTRY, BoundReward, check_terms, get_reward, score

from .test_spatiotemporal import CAMERA_ONLY, GOOD, OPTIONS, SOLUTION, cot

ROOT = Path(__file__).resolve().parents[2]
MC_RECORD = {"id": "q1", "answer_type": "mc", "options": OPTIONS, "answer": "B", "solution": SOLUTION}
CAMERA_RECORD = {**MC_RECORD, "id": "q2", "solution": CAMERA_ONLY}
NUMERIC_RECORD = {"id": "q3", "answer_type": "numeric", "options": [], "answer": 4.0, "solution": SOLUTION}
WITH_VALID = RewardsConfig(terms=[*RewardsConfig().terms, RewardTerm("format_valid", 0.0)])


def test_registry_holds_the_st_reward_terms() -> None:
    assert {"format", "accuracy", "camera", "object", "format_valid"} <= set(REGISTRY)
    assert get_reward("camera") is REGISTRY["camera"]


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown reward 'acc'") as err:
        get_reward("acc")
    for name in REGISTRY:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        check_terms(RewardsConfig(terms=[RewardTerm("format", 1.0), RewardTerm("nope", 1.0)]))
    with pytest.raises(ValueError, match="unknown reward"):
        score([GOOD], [MC_RECORD], RewardsConfig(terms=[RewardTerm("nope", 1.0)]))


def test_a_term_named_twice_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"\['format'\] more than once"):
        check_terms(RewardsConfig(terms=[RewardTerm("format", 0.5), RewardTerm("format", 0.5)]))


@pytest.mark.parametrize("path", [ROOT / "params.yaml", *sorted((ROOT / "presets").glob("*.yaml"))], ids=lambda p: p.name)
def test_every_shipped_config_names_registered_rewards(path: Path) -> None:
    check_terms(load_params(path).rewards)


def test_total_is_the_weighted_sum() -> None:
    batch = score([GOOD, "<answer>A</answer>"], [MC_RECORD, MC_RECORD], RewardsConfig())
    assert batch.total[0] == pytest.approx(0.2 + 0.6 + 0.1 + 0.1)
    assert batch.total[1] == pytest.approx(0.0)  # tags need a thinking block; wrong letter; no centers
    assert batch.terms["accuracy"] == [1.0, 0.0]
    assert batch.weights == {"format": 0.2, "accuracy": 0.6, "camera": 0.1, "object": 0.1}
    assert batch.n_none == {"format": 0, "accuracy": 0, "camera": 0, "object": 0}


def test_unscorable_terms_count_as_zero_and_are_counted() -> None:
    camera_only = cot(obj="", obj_final="")
    batch = score([camera_only, camera_only], [CAMERA_RECORD, MC_RECORD], RewardsConfig())
    assert batch.terms["object"] == [None, 0.0]
    assert batch.n_none["object"] == 1
    assert batch.total[0] == pytest.approx(0.2 + 0.6 + 0.1)  # object's 0.1 is not renormalised away
    assert batch.total[1] == pytest.approx(0.2 * 0.6 + 0.6 + 0.1)  # the object question needs Object Center


def test_a_completion_with_no_scorable_term_has_no_total() -> None:
    batch = score([GOOD], [CAMERA_RECORD], RewardsConfig(terms=[RewardTerm("object", 1.0)]))
    assert batch.total == [None]
    assert batch.summary() == {"reward": None, "rewards/object/mean": None, "rewards/object/n_none": 1}


def test_summary_means_skip_unscorable_values() -> None:
    batch = score([GOOD, GOOD], [MC_RECORD, CAMERA_RECORD], RewardsConfig())
    summary = batch.summary()
    assert summary["rewards/object/mean"] == pytest.approx(1.0)
    assert summary["rewards/object/n_none"] == 1
    assert summary["rewards/camera/mean"] == pytest.approx(1.0)


def test_numeric_records_score_mra() -> None:
    batch = score(["<answer>3.0</answer>"], [NUMERIC_RECORD], WITH_VALID)
    assert batch.terms["accuracy"] == [pytest.approx(0.5)]
    assert batch.terms["format_valid"] == [1.0]


WEIRD = [None, "", 42, b"bytes", [], [{"role": "assistant"}], ["junk"], "<answer>", "</answer><answer>",
         "<thinking><answer>B</answer>", "<answer>B</answer><answer>C</answer>", "Camera Center: [", "\x00" * 10,
         "Camera Center: [1e999, 0, 0] Object Center: [-1e999, 0, 0]", "Camera Center: [" + "9" * 400 + ", 0, 0]",
         "<thinking>" * 1000, "B" * 10_000, "\u00e9\u4e2d\U0001f600 <answer>\u0411</answer>"]


@pytest.mark.parametrize("record", [MC_RECORD, CAMERA_RECORD, NUMERIC_RECORD], ids=lambda r: r["id"])
def test_score_never_raises_on_a_completion(record: dict) -> None:
    batch = score(WEIRD, [record] * len(WEIRD), WITH_VALID)
    for name, values in batch.terms.items():
        for v in values:
            assert v is None or (isinstance(v, float) and 0.0 <= v <= 1.0 and math.isfinite(v)), (name, v)
    assert all(t is not None and math.isfinite(t) for t in batch.total)


def test_score_rejects_mismatched_lengths_and_handles_empty() -> None:
    with pytest.raises(ValueError, match="2 completions for 1 records"):
        score([GOOD, GOOD], [MC_RECORD], RewardsConfig())
    assert score([], [], RewardsConfig()).total == []


def test_score_names_a_missing_column() -> None:
    with pytest.raises(ValueError, match="'answer_type'"):
        score([GOOD], [{"options": OPTIONS, "answer": "B", "solution": SOLUTION}], RewardsConfig())


def test_bound_rewards_are_trl_named_picklable_functions() -> None:
    funcs = [BoundReward(t.name, RewardsConfig()) for t in RewardsConfig().terms]
    assert [f.__name__ for f in funcs] == ["format", "accuracy", "camera", "object"]
    # TRL's call: prompts, completions, completion_ids and every dataset column, per completion; GRPO's
    # dataset has one column, the record as JSON.
    trl = {"prompts": ["p"], "completion_ids": [[1]], "trainer_state": None}
    got = [f(completions=[GOOD], record=[json.dumps(MC_RECORD)], **trl)[0] for f in funcs]
    assert got == [pytest.approx(1.0)] * 4
    columns = {k: [v] for k, v in MC_RECORD.items()}
    clone = pickle.loads(pickle.dumps(funcs[1]))
    assert clone.__name__ == "accuracy" and clone([GOOD], **columns) == [1.0]
    with pytest.raises(ValueError, match="unknown reward"):
        BoundReward("nope", RewardsConfig())


def test_reference_cots_of_curated_records_score_full_marks(smoke_curated: tuple[Path, dict]) -> None:
    records = [r for split in ("sft", "rft", "bench") for r in read_jsonl(smoke_curated[0] / f"{split}.jsonl")]
    batch = score([r["cot"] for r in records], records, WITH_VALID)
    assert batch.terms["format"] == [1.0] * len(records)
    assert batch.terms["accuracy"] == [1.0] * len(records)
    assert batch.terms["format_valid"] == [1.0] * len(records)
    assert batch.n_none["camera"] == 0
    # The CoT prints centers to 0.01 m, so the distance terms are exp(-few mm), not exactly 1.
    assert min(v for v in batch.terms["camera"] + batch.terms["object"] if v is not None) > 0.99
    assert batch.n_none["object"] == sum(r["solution"]["object_center"] is None for r in records)
