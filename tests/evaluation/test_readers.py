"""The benchmark readers on the real shipped annotation files (shared/benchmarks beside the clone)."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from components.evaluation.answers import extract_answer, is_correct, normalise
from components.evaluation.readers import (
    read_ego_st,
    read_r4d_bench,
    read_sti_bench,
    read_vlm4d,
    read_vsi_bench,
    read_vsti_bench,
)

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


# STI-Bench, in its two layouts (sti_bench/FORMAT.md): qa.parquet's columns and VLMEvalKit's TSV.
STI_ROWS = [
    {"Video": "scene0001_00.mp4", "ID": 1, "Question": "How far does the chair move?",
     "Candidates": {"A": "1 m", "B": "2 m", "C": "3 m", "D": "4 m", "E": "5 m"}, "Answer": "B",
     "Task": "Displacement & Path Length", "time_start": 0.0, "time_end": 4.5},
    {"Video": "123456.mp4", "ID": 2, "Question": "Which way does the camera turn?",
     "Candidates": {"A": "left", "B": "right", "C": "up", "D": "down"}, "Answer": "A",
     "Task": "Ego-Centric Orientation", "time_start": 1.0, "time_end": 2.0},
    {"Video": "camera_03.mp4", "ID": 3, "Question": "Where is the car at the end?",
     "Candidates": {"A": "a", "B": "b", "C": "c", "D": "d"}, "Answer": "D",
     "Task": "3D Video Grounding", "time_start": 2, "time_end": 3},
]


def _sti_check(records: list[dict]) -> None:
    assert [r["category"] for r in records] == ["displacement_path_length", "ego_orientation", "video_grounding"]
    assert [r["answer"] for r in records] == ["B", "A", "D"] and len(records[0]["options"]) == 5
    assert [r["scene"] for r in records] == ["indoor", "desktop", "outdoor"]  # inferred as STI-Bench does
    _check_mc(records)


def test_sti_bench_parquet(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    # Candidates as a JSON string (the card's layout) and as a nested struct, which parquet stores with
    # every letter and None where a question has fewer options
    for i, candidates in enumerate((json.dumps, lambda c: c)):
        rows = [row | {"Candidates": candidates(row["Candidates"])} for row in STI_ROWS]
        path = tmp_path / f"qa{i}.parquet"
        pd.DataFrame(rows).to_parquet(path)
        records = read_sti_bench(path, None)
        _sti_check(records)
        assert records[0]["question"] == "From 0.0 s to 4.5 s. How far does the chair move?"
        # a float column, as pandas gives it to STI-Bench's own f-string: "2.0", not "2"
        assert records[2]["question"].startswith("From 2.0 s to 3.0 s. ")
        assert records[1]["id"] == "sti_bench/2" and records[1]["video"] == "123456.mp4"


def test_sti_bench_vlmevalkit_tsv(tmp_path: Path) -> None:
    lines = ["index\tvideo\tquestion\toptions\ttime_start\ttime_end\ttask_type\tanswer"]
    for row in STI_ROWS:
        options = repr([f"{k}. {v}" for k, v in row["Candidates"].items()])
        lines.append(f"{row['ID']}\t{row['Video']}\t{row['Question']}\t{options}\t{row['time_start']}\t"
                     f"{row['time_end']}\t{row['Task']}\t{row['Answer']}")
    path = tmp_path / "STIBench.tsv"
    path.write_text("\n".join(lines) + "\n")
    records = read_sti_bench(path, None)
    _sti_check(records)
    assert records[0]["options"][:2] == ["1 m", "2 m"]  # the "A. " markers are not part of the option
    assert records[0]["question"] == "From 0.0 s to 4.5 s. How far does the chair move?"
    path.write_text("\n".join(lines[:2] + [lines[2].replace("Ego-Centric Orientation", "Telepathy")]) + "\n")
    with pytest.raises(ValueError, match=r"STIBench\.tsv:3: unknown task 'Telepathy'"):
        read_sti_bench(path, None)


def test_sti_bench_ids_repeated_per_video_use_the_video(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(row | {"ID": 1}) + "\n" for row in STI_ROWS))
    assert [r["id"] for r in read_sti_bench(path, None)] == [
        "sti_bench/scene0001_00.mp4/1", "sti_bench/123456.mp4/1", "sti_bench/camera_03.mp4/1"]


VSI_ROWS = [
    {"id": 0, "dataset": "scannet", "scene_name": "scene0011_00", "question_type": "object_rel_direction_hard",
     "question": "Standing by the fridge facing the sink, is the stove to my front-left or back-right?",
     "options": ["A. front-left", "B. back-right", "C. back-left", "D. front-right"], "ground_truth": "C"},
    {"id": 1, "dataset": "arkitscenes", "scene_name": "41069025", "question_type": "object_abs_distance",
     "question": "What is the distance between the sofa and the TV (in meters)?", "options": None,
     "ground_truth": "2.4"},
    {"id": 2, "dataset": "scannetpp", "scene_name": "0a5c013435", "question_type": "object_counting",
     "question": "How many chairs are in this room?", "options": [], "ground_truth": 4},
]


def _vsi_check(records: list[dict]) -> None:
    from components.evaluation.metrics import score

    assert [r["category"] for r in records] == ["object_rel_direction", "object_abs_distance", "object_counting"]
    assert records[0]["question_type"] == "object_rel_direction_hard"
    assert records[0]["options"] == ["front-left", "back-right", "back-left", "front-right"]
    assert records[0]["answer"] == "C" and records[0]["answer_text"] == "back-left"
    numeric = records[1]
    assert (numeric["answer_type"], numeric["answer"], numeric["answer_text"], numeric["options"]) == (
        "numeric", 2.4, "2.4", [])
    assert records[2]["answer"] == 4.0 and records[2]["video"] == "scannetpp/0a5c013435.mp4"
    # scored as the bench scores its numeric records: MRA; 3.0 is 25% off 2.4 (MRA 0.5), 4 is exact
    per = score(records, ["<answer>C</answer>", "about 3.0 m", "4 chairs"], n_boot=100)["per_record"]
    assert [p["score"] for p in per] == [1.0, pytest.approx(0.5), 1.0]


def test_vsi_bench_jsonl_and_parquet(tmp_path: Path) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in VSI_ROWS))
    _vsi_check(read_vsi_bench(path, None))
    if importlib.util.find_spec("pyarrow"):  # the model hub's layout: options come back as arrays
        import pandas as pd

        pd.DataFrame(VSI_ROWS).astype({"ground_truth": str}).to_parquet(tmp_path / "test.parquet")
        _vsi_check(read_vsi_bench(tmp_path / "test.parquet", None))
    root = tmp_path / "videos"
    (root / "scannet").mkdir(parents=True)
    (root / "scannet" / "scene0011_00.mp4").write_bytes(b"")
    with pytest.raises(ValueError, match=r"2 of 3 records have missing media .*arkitscenes/41069025\.mp4"):
        read_vsi_bench(path, root)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"question_type": "object_weight"}, r"test\.jsonl:2: unknown question_type 'object_weight'"),
        ({"ground_truth": "two"}, r"test\.jsonl:2: the numeric answer 'two' is not a finite number"),
        ({"question_type": "route_planning", "options": ["A. left", "C. right"]},
         r"test\.jsonl:2: options must all be lettered A, B, \.\.\. in order"),
    ],
)
def test_vsi_bench_bad_rows_name_the_line(tmp_path: Path, change: dict, message: str) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(VSI_ROWS[0]) + "\n" + json.dumps(VSI_ROWS[1] | change) + "\n")
    with pytest.raises(ValueError, match=message):
        read_vsi_bench(path, None)


def test_vsti_bench(tmp_path: Path) -> None:
    rows = [
        {"video_path": "scannet/scene0050_00.mp4", "question_type": "camera_movement_direction",
         "question": "Which way does the camera move between frame 3 and frame 9?",
         "options": ["A. forward", "B. backward", "C. left", "D. right"], "ground_truth": "left", "mc_answer": "C"},
        {"video_path": "scannet/scene0050_00.mp4", "question_type": "camera_displacement",
         "question": "How far does the camera travel (in meters)?", "options": [], "ground_truth": 1.75},
    ]
    path = tmp_path / "vstibench.json"
    path.write_text(json.dumps(rows, indent=2))
    records = read_vsti_bench(path, None)
    assert [r["id"] for r in records] == ["vsti_bench/0", "vsti_bench/1"]  # no id column: the row number
    assert [r["category"] for r in records] == ["camera_movement_direction", "camera_displacement"]
    assert records[0]["answer"] == "C" and records[0]["answer_text"] == "left"
    assert (records[1]["answer_type"], records[1]["answer"]) == ("numeric", 1.75)
    _check_mc(records[:1])
    rows[1]["question_type"] = "camera_speed"
    path.write_text(json.dumps(rows, indent=2))
    with pytest.raises(ValueError, match=r"vstibench\.json:15: unknown question_type 'camera_speed'"):
        read_vsti_bench(path, None)
