"""Curation on the rendered smoke clips: the record contract, splits, balance, ST-CoT, exports, stats."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from components.curation.cot import parse_cot
from components.curation.regions import rle_decode
from components.curation.schema import CATEGORIES, LETTERS, RECORD_FIELDS, SPLITS
from components.io import read_jsonl


@pytest.fixture(scope="module")
def records(smoke_curated) -> dict[str, list[dict]]:
    out, _ = smoke_curated
    return {s: read_jsonl(out / f"{s}.jsonl") for s in SPLITS}


def test_every_split_has_records_with_the_contract_fields(records):
    for split, rows in records.items():
        assert rows, split
        for r in rows:
            assert set(r) == set(RECORD_FIELDS), r["id"]
            assert r["split"] == split and r["category"] in CATEGORIES


def test_ids_unique_and_no_clip_in_two_splits(records):
    ids = [r["id"] for rows in records.values() for r in rows]
    assert len(ids) == len(set(ids))
    clips = {s: {r["clip_id"] for r in rows} for s, rows in records.items()}
    assert not (clips["sft"] & clips["rft"]) and not (clips["sft"] & clips["bench"]) and not (clips["rft"] & clips["bench"])


def test_multiple_choice_is_well_formed_and_letters_balanced(records):
    for split, rows in records.items():
        mc = {r["qid"]: r for r in rows if r["answer_type"] == "mc"}
        for r in mc.values():
            # 4-5 options, or the whole label set when it is smaller (three rotations)
            assert 3 <= len(r["options"]) <= 5 and len(set(r["options"])) == len(r["options"])
            assert r["options"][LETTERS.index(r["answer"])] == r["answer_text"]
        for n in {len(r["options"]) for r in mc.values()}:  # balanced by construction per option count
            letters = Counter(r["answer"] for r in mc.values() if len(r["options"]) == n)
            if sum(letters.values()) >= 2 * n:  # counts differ by at most one
                assert len(letters) == n and max(letters.values()) - min(letters.values()) <= 1, (split, n, letters)


def test_numeric_answers_positive_and_finite(records):
    numeric = [r for rows in records.values() for r in rows if r["answer_type"] == "numeric"]
    assert numeric
    assert all(r["answer"] > 0 and r["options"] == [] and r["unit"] for r in numeric)


def test_cot_parses_and_ends_in_the_answer(records):
    for r in (r for rows in records.values() for r in rows):
        parsed = parse_cot(r["cot"])
        assert parsed is not None, r["id"]
        assert parsed.answer == str(r["answer"])
        assert len(parsed.camera_centers) == 2
        assert (len(parsed.object_centers) == 2) == (r["solution"]["object_center"] is not None)
        flat = [x for c in r["solution"]["camera_center"] for x in c]
        assert [x for c in parsed.camera_centers for x in c] == pytest.approx(flat, abs=0.006)


def test_two_phrasings_share_a_question(records):
    rows = [r for rs in records.values() for r in rs]
    by_qid: dict[str, list[dict]] = {}
    for r in rows:
        by_qid.setdefault(r["qid"], []).append(r)
    region = [r for r in rows if r["prompt_variant"] == "region"]
    assert region, "no region-prompted records"
    for r in region:
        twin = next(x for x in by_qid[r["qid"]] if x["prompt_variant"] == "name")
        assert twin["answer"] == r["answer"] and twin["options"] == r["options"]
        assert "<R" in r["question"] and "<R" not in twin["question"]
        for reg in r["regions"]:
            assert reg["token"] in r["question"]
            mask = rle_decode(reg["mask_rle"])
            x0, y0, x1, y1 = reg["box"]
            assert mask.any() and mask[y0:y1, x0:x1].sum() == mask.sum()
        assert Path(r["som_image"]).is_file()


def test_bench_is_labelled_from_ground_truth_others_from_estimates(records):
    assert all(r["provenance"]["label_source"] == "ground_truth" for r in records["bench"])
    assert all(r["provenance"]["label_source"] == "estimated" for r in records["sft"] + records["rft"])
    assert all(r["provenance"]["gt_answer"] is not None for rs in records.values() for r in rs)


def test_frames_and_timestamps(records):
    for r in (r for rows in records.values() for r in rows):
        assert len(r["frames"]) == len(r["timestamps"]) == len(r["frame_paths"])
        assert r["timestamps"] == sorted(r["timestamps"]) and r["frames"][0] == 0
        assert all(Path(p).is_file() for p in r["frame_paths"])


def test_stats_and_exports(smoke_curated, records):
    out, _ = smoke_curated
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk["records"] == {s: len(records[s]) for s in SPLITS}
    assert on_disk["label_agreement"]["overall"]["mc_n"] > 0
    assert on_disk["n_quarantined"] == 0
    trl = read_jsonl(out / "exports" / "trl" / "sft.jsonl")
    assert len(trl) == len(records["sft"])
    first = trl[0]
    n_images = sum(1 for c in first["messages"][0]["content"] if c["type"] == "image")
    assert n_images == len(first["images"]) and first["messages"][1]["role"] == "assistant"
    qwen = json.loads((out / "exports" / "qwen" / "bench.json").read_text())
    assert qwen[0]["conversations"][0]["value"].startswith("<video>\n")
    assert qwen[0]["conversations"][1]["value"] == records["bench"][0]["cot"]


def test_curation_is_deterministic(smoke_params, smoke_scenes, smoke_curated, tmp_path):
    from components.curation.run import curate

    out, _ = smoke_curated
    curate(smoke_scenes, smoke_params.curation, tmp_path, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "som_image"} for r in rows]
    assert strip(read_jsonl(tmp_path / "bench.jsonl")) == strip(read_jsonl(out / "bench.jsonl"))
