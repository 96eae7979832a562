"""The ablation tables: every row is a valid config, paired differences on literal scores, the markdown."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.config import load_params
from components.evaluation.ablation import (
    SEED_KEYS,
    TABLES,
    clips_by_id,
    dynamic_mc_macro,
    paired_difference,
    pool_reports,
    pool_seeds,
    render_pooled,
    render_table,
    scores_by_id,
    seed_overrides,
)
from components.io import write_json, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("key", sorted(TABLES))
def test_every_row_is_a_valid_config_and_the_reference_exists(key):
    table = TABLES[key]
    assert table.reference in {r.name for r in table.rows}
    for row in table.rows:
        load_params(ROOT / "presets" / "small.yaml", row.overrides)  # raises on a misspelled key or value


def test_table5_rows_are_the_papers_settings():
    params = {r.name: load_params(ROOT / "params.yaml", r.overrides).p4d for r in TABLES["5"].rows}
    assert params["LD only"].latent_weight == 1 and params["LD only"].explicit_weights.depth == 0
    assert params["ED only"].latent_weight == 0 and params["ED only"].explicit_weights.camray == 1
    ld_d_f = params["LD+D+F"].explicit_weights
    assert (ld_d_f.depth, ld_d_f.flow, ld_d_f.motion, ld_d_f.camray) == (1, 1, 0, 0)


def test_paired_difference_on_literals():
    a = {"r1": 1.0, "r2": 1.0, "r3": 0.0, "r4": 1.0}
    b = {"r1": 0.0, "r2": 1.0, "r3": 0.0, "r5": 1.0}  # r4 / r5 are not shared: left out
    d = paired_difference(a, b)
    assert d["n"] == 3 and d["value"] == pytest.approx(1 / 3)
    lo, hi = d["ci"]
    assert lo <= d["value"] <= hi and d["shown"] == (lo > 0 or hi < 0)
    same = paired_difference(a, a)
    assert same["value"] == 0 and same["ci"] == [0.0, 0.0] and not same["shown"]
    assert paired_difference(a, {"x": 1.0}) is None


def test_paired_difference_resamples_clips():
    """Records of one clip move together: with two clips of 10 records each, the clip-level interval is as
    wide as two draws allow, the record-level one pretends to 20 independent ones."""
    a = {f"r{i}": 1.0 if i < 10 else 0.0 for i in range(20)}
    b = dict.fromkeys(a, 0.0)
    clips = {f"r{i}": f"c{i // 10}" for i in range(20)}
    by_clip, by_record = paired_difference(a, b, clips=clips), paired_difference(a, b)
    assert by_clip["value"] == by_record["value"] == 0.5
    assert by_clip["ci"] == [0.0, 1.0] and by_record["ci"][1] - by_record["ci"][0] < 0.6
    assert clips_by_id([{"id": "x", "clip_id": "c"}, {"id": "y"}]) == {"x": "c", "y": "y"}


def test_scores_by_subset():
    preds = [{"id": "a", "category": "dimension", "score": 1.0}, {"id": "b", "category": "speed_acceleration", "score": 0.5}]
    static = frozenset({"dimension"})
    assert scores_by_id(preds, dynamic=True, static_categories=static) == {"b": 0.5}
    assert scores_by_id(preds, dynamic=False, static_categories=static) == {"a": 1.0}
    assert scores_by_id(preds, category="dimension") == {"a": 1.0}


def test_render_table_marks_the_reference_and_real_differences():
    agg = {"value": 0.5, "n": 10, "ci": [0.3, 0.7]}
    metrics = {"overall": agg, "static": agg, "dynamic": agg, "per_category": {"speed_acceleration": agg}}
    diff = {"value": 0.2, "ci": [0.1, 0.3], "n": 10, "shown": True}
    text = render_table(TABLES["6"], {"no time cue": {"metrics": metrics},
                                      "TPE": {"metrics": metrics, "diff": {"dynamic": diff, "speed_acceleration": diff}}})
    lines = text.splitlines()
    assert lines[0].startswith("### 4D-RGPT Tab. 6")
    assert "| no time cue | 50.0 [30.0, 70.0] |" in text and "| ref |" in text
    assert "+20.0 [+10.0, +30.0] *" in lines[-1]


def test_seed_overrides_set_every_seed_key_and_leave_the_data_and_teacher_alone():
    base, seeded = load_params(ROOT / "presets" / "small.yaml"), load_params(ROOT / "presets" / "small.yaml",
                                                                            seed_overrides(7))
    assert (seeded.model.seed, seeded.sft.seed, seeded.p4d.train.seed, seeded.grpo.seed) == (7, 7, 7, 7)
    assert len(SEED_KEYS) == 4
    assert (seeded.scenes, seeded.curation, seeded.teacher) == (base.scenes, base.curation, base.teacher)


def _preds(scores: dict[str, float], clip_of=lambda i: i[0], category="translational") -> list[dict]:
    return [{"id": i, "clip_id": clip_of(i), "category": category, "answer_type": "mc", "score": s}
            for i, s in scores.items()]


def test_dynamic_mc_macro_weighs_categories_equally_and_leaves_static_and_numeric_out():
    preds = (_preds({"a1": 1, "a2": 1, "a3": 1, "a4": 0}) + _preds({"b1": 0}, category="rotational")
             + _preds({"c1": 0}, category="dimension")
             + [{"id": "n", "category": "rotational", "answer_type": "numeric", "score": 1.0}])
    assert dynamic_mc_macro(preds) == pytest.approx((0.75 + 0.0) / 2)
    assert dynamic_mc_macro([]) is None


GRPO = TABLES["grpo"]


def test_pool_seeds_pairs_by_record_within_a_seed_and_counts_the_seeds_that_agree():
    # seed 0: GRPO right on 2 of 4 records where its start was right on 1; seed 1: one worse, one better.
    seeds = {
        0: {"start (P4D)": _preds({"a1": 0, "a2": 1, "b1": 0, "b2": 0}),
            "GRPO, ST-reward": _preds({"a1": 1, "a2": 1, "b1": 0, "b2": 0})},
        1: {"start (P4D)": _preds({"a1": 1, "a2": 0, "b1": 0, "b2": 0}),
            "GRPO, ST-reward": _preds({"a1": 0, "a2": 1, "b1": 0, "b2": 0})},
    }
    pooled = pool_seeds(GRPO, seeds)
    assert set(pooled) == {"start (P4D)", "GRPO, ST-reward"}  # rows missing in a seed are left out
    grpo = pooled["GRPO, ST-reward"]
    assert grpo["per_seed"] == {0: 0.5, 1: 0.25}
    d = grpo["diff"]["dynamic_mc"]
    assert d["n"] == 8 and d["value"] == pytest.approx(1 / 8)
    assert grpo["agreeing_seeds"]["dynamic_mc"] == 1  # seed 0 up, seed 1 level
    assert grpo["tied_seeds"]["dynamic_mc"] == 1
    # a clip's records of both seeds are one cluster: clips a and b, so at most two distinct draws
    assert d["ci"][0] <= d["value"] <= d["ci"][1] and d["ci"] == [0.0, 0.25]
    assert "diff" in pooled["start (P4D)"] and not pooled["start (P4D)"]["diff"]
    text = render_pooled(GRPO, pooled, [0, 1])
    assert "| start (P4D) | 25.0 | 25.0 | 25.0 | ref |" in text
    assert "| GRPO, ST-reward | 50.0 | 25.0 | 37.5 | +12.5 [+0.0, +25.0] | 1 of 2 (1 no change) |" in text


def test_pool_reports_reads_the_seed_folders_and_names_a_missing_one(tmp_path):
    for seed in (0, 1):
        rows = {"start (P4D)": {"slug": "p4d-x"}, "GRPO, ST-reward": {"slug": "grpo-y"}}
        write_json(tmp_path / f"seed-{seed}" / "tablegrpo.json", rows)
        write_jsonl(tmp_path / f"seed-{seed}" / "runs" / "p4d-x" / "predictions.jsonl", _preds({"a1": 0, "b1": 0}))
        write_jsonl(tmp_path / f"seed-{seed}" / "runs" / "grpo-y" / "predictions.jsonl", _preds({"a1": 1, "b1": 0}))
    text = pool_reports(tmp_path, ["grpo"], [0, 1])
    assert "+50.0" in text and "2 of 2" in text
    assert (tmp_path / "tables_pooled.md").read_text() == text
    assert (tmp_path / "tables_pooled.json").exists()
    with pytest.raises(FileNotFoundError, match="seed-2/tablegrpo.json: seed 2 has no table grpo"):
        pool_reports(tmp_path, ["grpo"], [0, 2])
