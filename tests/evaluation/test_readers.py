"""The benchmark readers on the real shipped annotation files (shared/benchmarks beside the clone)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from components.evaluation.answers import extract_answer, is_correct, normalise
from components.evaluation.readers import read_ego_st, read_r4d_bench, read_vlm4d

BENCH = Path(__file__).parents[2].parent / "shared" / "benchmarks"
real_records = pytest.mark.skipif(
    not BENCH.is_dir(), reason=f"the shared benchmark records are not beside the clone ({BENCH})"
)
LETTERS = "ABCDE"


def _check_mc(records: list[dict]) -> None:
    for r in records:
        assert r["answer_type"] == "mc" and r["prompt_variant"] in ("name", "region")
        assert r["answer"] in LETTERS[: len(r["options"])], r["id"]
        assert normalise(r["options"][LETTERS.index(r["answer"])]) == normalise(r["answer_text"])
        # The truth, given back as text or as a tagged letter, scores as correct.
        assert is_correct(extract_answer(r["answer_text"], r), r), r["id"]
        assert is_correct(extract_answer(f"<answer>{r['answer']}</answer>", r), r), r["id"]


@real_records
def test_vlm4d_real_records() -> None:
    real = read_vlm4d(BENCH / "vlm4d" / "real_mc.json", None)
    synthetic = read_vlm4d(BENCH / "vlm4d" / "synthetic_mc.json", None)
    assert (len(real), len(synthetic)) == (1371, 445)
    assert len({r["id"] for r in real + synthetic}) == 1816  # both files number from validation_1
    _check_mc(real + synthetic)
    assert Counter(r["category"] for r in real) == {"exocentric": 922, "egocentric": 449}
    assert {r["category"] for r in synthetic} == {"synthetic"}
    raw = json.loads((BENCH / "vlm4d" / "real_mc.json").read_text())
    assert real[0]["answer_text"] == str(raw[0]["answer"]) and real[0]["video"].startswith("videos_real/")


@real_records
def test_ego_st_real_records() -> None:
    records = read_ego_st(BENCH / "ego_st" / "total_test_mcq_630.jsonl", None)
    assert len(records) == 630
    _check_mc(records)
    raw = [
        json.loads(line) for line in (BENCH / "ego_st" / "total_test_mcq_630.jsonl").read_text().splitlines()
    ]
    assert [r["answer"] for r in records] == [row["original_answer"] for row in raw]
    assert set(Counter(r["category"] for r in records)) == {
        "landmark_forward",
        "landmark_reverse",
        "direction_forward",
        "direction_reverse",
        "action_reverse",
    }
    first = records[0]
    assert first["options"] == ["toy birdhouse", "ornamental birdfeeder", "two-story treehouse"]
    assert first["question"].endswith("to reach your destination?") and "Options" not in first["question"]


@real_records
def test_missing_videos_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"630 of 630 records have missing media under") as err:
        read_ego_st(BENCH / "ego_st" / "total_test_mcq_630.jsonl", tmp_path)
    assert "ADT_Lite_release_recognition_BirdHouseToy_seq030_61283_preview_rgb.mp4" in str(err.value)


def test_vlm4d_video_root(tmp_path: Path) -> None:
    rows = [
        {
            "id": f"validation_{i}",
            "video": f"https://huggingface.co/datasets/x/VLM4D/resolve/main/videos_synthetic/synth_{i}.mp4",
            "question_type": "multiple-choice",
            "question": "Which direction is the robot moving?",
            "choices": {"A": "left", "B": "right", "C": 0, "D": "not moving"},
            "answer": "right" if i else 0,
        }
        for i in range(2)
    ]
    path = tmp_path / "synthetic_mc.json"
    path.write_text(json.dumps(rows))
    root = tmp_path / "videos"
    (root / "videos_synthetic").mkdir(parents=True)
    (root / "videos_synthetic" / "synth_0.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=r"1 of 2 .*synth_1\.mp4"):
        read_vlm4d(path, root)
    (root / "videos_synthetic" / "synth_1.mp4").write_bytes(b"")
    records = read_vlm4d(path, root)
    assert [r["answer"] for r in records] == ["C", "B"] and records[0]["answer_text"] == "0"
    assert records[1]["video"] == str(root / "videos_synthetic" / "synth_1.mp4")


R4D_ROWS = [
    {
        "id": 7,
        "video": "videos/a.mp4",
        "som_image": "som/a.png",
        "question": "How far does <obj_1> move?",
        "options": ["1 m", "2 m", "3 m", "4 m", "5 m"],
        "answer": "3 m",
        "task": "Displacement & Path Length",
        "benchmark": "stibench",
    },
    {
        "id": 8,
        "video": "videos/b.mp4",
        "som_image": "som/b.png",
        "question": "Is <obj_1> left of <obj_2>?",
        "options": ["yes", "no", "same place", "cannot tell"],
        "answer": "no",
        "task": "SR",
    },
    {
        "id": 9,
        "video": "videos/c.mp4",
        "som_image": "som/c.png",
        "question": "Where is <obj_1> at 2 s?",
        "options": ["a", "b", "c", "d", "e"],
        "answer": "e",
        "task": "3D Video Grounding",
    },
]


def test_r4d_bench_format(tmp_path: Path) -> None:
    path = tmp_path / "r4d.json"
    path.write_text(json.dumps(R4D_ROWS))
    records = read_r4d_bench(path, None)
    assert [r["category"] for r in records] == [
        "displacement_path_length",
        "spatial_relation",
        "video_grounding",
    ]
    assert [r["answer"] for r in records] == ["C", "B", "E"]
    assert all(r["prompt_variant"] == "region" for r in records) and records[0]["som_image"] == "som/a.png"
    assert records[0]["source_benchmark"] == "stibench" and records[0]["id"] == "r4d_bench/7"
    _check_mc(records)
    media = tmp_path / "media"
    for row in R4D_ROWS:
        for key in ("video", "som_image"):
            (media / row[key]).parent.mkdir(parents=True, exist_ok=True)
            (media / row[key]).write_bytes(b"")
    (media / "som" / "c.png").unlink()
    with pytest.raises(ValueError, match=r"1 of 3 .*som/c\.png"):
        read_r4d_bench(path, media)


@pytest.mark.parametrize(
    ("change", "message"),
    [({"task": "Telepathy"}, "unknown task 'Telepathy'"), ({"answer": "9 m"}, "not one of its options")],
)
def test_r4d_bench_bad_rows(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "r4d.json"
    path.write_text(json.dumps([R4D_ROWS[0] | change]))
    with pytest.raises(ValueError, match=message):
        read_r4d_bench(path, None)
