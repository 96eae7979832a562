"""Clip-level intervals, the shuffled-video derangement, the text-only-trained join and the learning headline,
on literal inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.evaluation.controls import (
    add_headline,
    clip_derangement,
    headline_text,
    learning_headline,
    shuffled_video,
)
from components.evaluation.harness import evaluate
from components.evaluation.metrics import bootstrap_ci, macro_aggregate, score
from components.evaluation.report import comparison_table, write_report

# ---------------------------------------------------------------- clip-level bootstrap

SCORES = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1]
CLIPS = [f"c{i}" for i in range(len(SCORES))]


def test_duplicating_records_within_a_clip_does_not_narrow_a_clip_interval():
    """Ten copies of each record in its own clip add no evidence: the clip-level interval stays as it was,
    while a record-level bootstrap of the copies pretends to know ten times more (its interval narrows)."""
    copies = 10
    values = np.repeat(np.array(SCORES, dtype=float), copies)
    clips = np.repeat(CLIPS, copies)
    clip_level = bootstrap_ci(values, clusters=list(clips))
    record_level = bootstrap_ci(values)
    assert clip_level == pytest.approx(bootstrap_ci(np.array(SCORES, dtype=float), clusters=CLIPS))
    assert clip_level[1] - clip_level[0] > 2 * (record_level[1] - record_level[0])
    assert clip_level[0] < np.mean(SCORES) < clip_level[1]


def test_a_clip_interval_of_identical_clips_is_a_point():
    """Clips that all score the same mean leave nothing to resample, however their records differ."""
    values = [1.0, 0.0] * 6
    assert bootstrap_ci(np.array(values), clusters=[f"c{i // 2}" for i in range(12)]) == (0.5, 0.5)


def test_macro_over_categories_is_clip_level():
    # translational: clips a, b (1, 0); rotational: clip a only (1, 1): macro = mean(0.5, 1.0)
    got = macro_aggregate([1, 0, 1, 1], ["a", "b", "a", "a"], ["translational", "translational", "rotational",
                                                               "rotational"])
    assert got["value"] == pytest.approx(0.75) and got["n"] == 4
    assert got["ci"][0] <= 0.75 <= got["ci"][1] and got["ci"][1] <= 1.0
    assert macro_aggregate([], [], []) is None


def _record(rid: str, clip: str, category: str, answer: str, som: bool = False) -> dict:
    return {"id": rid, "clip_id": clip, "category": category, "answer_type": "mc", "prompt_variant": "name",
            "question": f"q {rid}", "options": ["left", "right", "up", "down"], "answer": answer,
            "frames": [0, 5], "timestamps": [0.0, 1.0 if clip != "c2" else 2.0],
            "frame_paths": [f"{clip}/0.png", f"{clip}/5.png"], "som_image": f"{clip}/som.png" if som else None}


def test_score_reports_clip_level_intervals():
    records = [_record(f"r{i}", f"c{i // 4}", "translational", "A") for i in range(8)]
    got = score(records, ["A"] * 4 + ["B"] * 4)  # clip c0 all right, c1 all wrong
    assert [p["clip_id"] for p in got["per_record"]] == ["c0"] * 4 + ["c1"] * 4
    assert got["overall"]["value"] == 0.5 and got["overall"]["ci"] == [0.0, 1.0]  # two clips: 0, 1/2 or 1
    assert got["dynamic_mc_macro"]["value"] == 0.5


# ---------------------------------------------------------------- shuffled video


def test_clip_derangement_moves_every_clip_and_is_fixed():
    clips = [f"c{i}" for i in range(7)]
    mapping = clip_derangement(clips * 3, seed=0)
    assert set(mapping) == set(clips) and sorted(mapping.values()) == sorted(clips)  # a permutation
    assert all(donor != clip for clip, donor in mapping.items())
    assert clip_derangement(list(reversed(clips)), seed=0) == mapping  # depends on the clips, not their order
    assert clip_derangement(["a", "b"], seed=3) == {"a": "b", "b": "a"}
    with pytest.raises(ValueError, match="at least 2 clips"):
        clip_derangement(["a", "a"])


def test_shuffled_video_gives_every_record_another_clips_video():
    records = [_record(f"r{i}", f"c{i % 3}", "translational", "A", som=(i % 2 == 1)) for i in range(9)]
    shuffled = shuffled_video(records, seed=0)
    assert shuffled == shuffled_video(records, seed=0)  # deterministic
    for before, after in zip(records, shuffled):
        own = before["clip_id"]
        assert all(not p.startswith(own + "/") for p in after["frame_paths"])
        donor = after["frame_paths"][0].split("/")[0]
        assert after["timestamps"] == next(r["timestamps"] for r in records if r["clip_id"] == donor)
        # the Set-of-Marks image moves with the video; records without one keep none
        assert after["som_image"] == (f"{donor}/som.png" if before["som_image"] else None)
        assert {k: after[k] for k in ("id", "clip_id", "question", "options", "answer")} == \
               {k: before[k] for k in ("id", "clip_id", "question", "options", "answer")}
    assert records[0]["frame_paths"] == ["c0/0.png", "c0/5.png"]  # the originals are untouched


def test_the_harness_scores_the_shuffled_video_against_the_original_answers():
    """A model that reads its frames: right when the frames are the record's own clip's, "D" otherwise."""
    records = [_record(f"r{i}", f"c{i % 4}", "translational", "ABC"[i % 3]) for i in range(12)]

    def sees(batch: list[dict], blind: bool) -> list[str]:  # a shuffled record keeps its clip_id, not its frames
        return ["D" if blind or not r["frame_paths"][0].startswith(r["clip_id"] + "/") else r["answer"] for r in batch]

    result = evaluate(records, sees, batch_size=5, progress=False)
    assert result.metrics["model"]["overall"]["value"] == 1.0
    assert result.metrics["shuffled"]["overall"]["value"] == 0.0
    assert all(p["shuffled"]["output"] == "D" for p in result.predictions)
    one_clip = [_record(f"s{i}", "c0", "translational", "A") for i in range(3)]
    assert evaluate(one_clip, sees, batch_size=5, progress=False).metrics["shuffled"] is None  # nothing to swap


def test_the_text_only_model_config_blanks_every_frame():
    from dataclasses import replace

    from components.config import ModelConfig
    from components.models.inputs import frames_for

    record = {**_record("r", "c9", "translational", "A"), "frame_paths": ["missing/0.png", "missing/1.png"]}
    cfg = replace(ModelConfig(), blank_frames=True, time_cue="none", num_frames=2)
    frames = frames_for(record, cfg)  # no file is read: the frames are black, as in training
    assert len(frames) == 2 and all(f.getextrema() == ((0, 0), (0, 0), (0, 0)) for f in frames)


# ---------------------------------------------------------------- the headline


def _rows(model: list[float], shuffled: list[float]) -> list[dict]:
    """Dynamic mc rows over two categories and four clips (the static row never counts)."""
    cats = ["translational", "rotational"] * (len(model) // 2)
    rows = [{"id": f"r{i}", "clip_id": f"c{i // 2}", "category": c, "answer_type": "mc", "prompt_variant": "name",
             "score": m, "extracted": {"format_valid": True}, "shuffled": {"score": s}}
            for i, (c, m, s) in enumerate(zip(cats, model, shuffled))]
    rows.append({"id": "static", "clip_id": "c0", "category": "dimension", "answer_type": "mc", "prompt_variant": "name",
                 "score": 0.0, "extracted": {"format_valid": True}, "shuffled": {"score": 1.0}})
    return rows


def _text_only(scores: list[float]) -> list[dict]:
    return [{"id": f"r{i}", "clip_id": f"c{i // 2}", "category": ["translational", "rotational"][i % 2],
             "answer_type": "mc", "prompt_variant": "name", "score": s, "output": "x", "correct": bool(s),
             "extracted": {"format_valid": True}} for i, s in enumerate(scores)] + \
           [{"id": "static", "clip_id": "c0", "category": "dimension", "answer_type": "mc", "prompt_variant": "name",
             "score": 1.0, "output": "x", "correct": True, "extracted": {"format_valid": True}}]


def test_headline_is_the_model_minus_the_stronger_control():
    # model: translational 4/4, rotational 2/4 -> macro 0.75; shuffled: 1/4, 1/4 -> 0.25;
    # text-only: translational 2/4, rotational 2/4 -> 0.5 (the stronger control)
    model = [1, 1, 1, 0, 1, 1, 1, 0]
    shuffled = [1, 0, 0, 1, 0, 0, 0, 0]
    text_only = [1, 1, 1, 0, 0, 1, 0, 0]
    got = learning_headline(_rows(model, shuffled), _text_only(text_only))
    assert got["model"] == pytest.approx(0.75)
    assert got["controls"] == pytest.approx({"shuffled": 0.25, "text_only": 0.5})
    assert got["stronger_control"] == "text_only" and got["value"] == pytest.approx(0.25)
    assert got["differences"]["shuffled"]["value"] == pytest.approx(0.5)
    assert got["n_records"] == 8 and got["n_clips"] == 4
    lo, hi = got["ci"]
    assert lo <= 0.25 <= hi
    # each replicate takes its own stronger control, so the interval sits below the one against shuffled alone
    assert hi <= got["differences"]["shuffled"]["ci"][1]
    assert "text-only trained" in headline_text(got) and "+25.0 points" in headline_text(got)


def test_headline_with_one_control_and_without_any():
    rows = _rows([1, 1, 0, 0], [0, 0, 0, 0])
    got = learning_headline(rows, None)
    assert got["stronger_control"] == "shuffled" and got["value"] == pytest.approx(0.5)
    for row in rows:
        del row["shuffled"]
    assert learning_headline(rows, None) is None


def test_add_headline_joins_the_text_only_checkpoint_by_record_id():
    rows, metrics = _rows([1, 1, 1, 0, 1, 1, 1, 0], [0] * 8), {}
    add_headline(metrics, rows, list(reversed(_text_only([1, 1, 1, 0, 0, 1, 0, 0]))))
    assert metrics["text_only"]["dynamic_mc_macro"]["value"] == pytest.approx(0.5)
    assert metrics["text_only"]["overall"]["n"] == 9 and rows[0]["text_only"]["score"] == 1
    assert metrics["headline"]["stronger_control"] == "text_only"
    with pytest.raises(ValueError, match="lack 1 of the 9"):
        add_headline({}, rows, _text_only([1] * 8)[1:])


def test_reports_and_the_comparison_show_the_controls_and_the_headline(tmp_path: Path):
    records = [_record(f"r{i}", f"c{i % 4}", ["translational", "rotational"][i % 2], "ABCD"[i % 4]) for i in range(16)]

    def sees(batch, blind):
        return ["A" if blind or not r["frame_paths"][0].startswith(r["clip_id"] + "/") else r["answer"] for r in batch]

    def prior(batch, blind):  # the text-only control always answers B
        return ["B" for _ in batch]

    text_only = evaluate(records, prior, batch_size=8, blind_baseline=False, shuffled_baseline=False, progress=False)
    text_only.metrics["input"] = "blank frames"
    to_paths = write_report(text_only, tmp_path / "sft_text_only", title="text only")
    sft = evaluate(records, sees, batch_size=8, progress=False)
    add_headline(sft.metrics, sft.predictions, [json.loads(line) for line in to_paths["predictions"].read_text().splitlines()])
    sft_paths = write_report(sft, tmp_path / "sft", title="sft")
    report = sft_paths["report"].read_text()
    for row in ("| model |", "| shuffled video |", "| text-only trained |", "| blind |", "| random |"):
        assert row in report, row
    assert "**Headline**: +" in report
    table = comparison_table({"sft": sft_paths["metrics"], "sft_text_only": to_paths["metrics"]})
    names = [line.split(" | ")[0].lstrip("| ") for line in table.split("\n\n")[0].splitlines()[2:]]
    assert names == ["sft", "text-only trained (sft_text_only)", "shuffled (sft)", "blind (sft)", "random"]
    assert "- **sft**: +75.0 points" in table  # 100% vs text-only 25% (B right on a quarter), shuffled 25%
