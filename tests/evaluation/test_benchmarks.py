"""External benchmarks end to end: predictions files in MLLM-4D's released format scored on real VLM4D
records, their errors, frame sampling from a real video file, a checkpoint through the CLI's code path."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from components.config import EvaluateConfig, ModelConfig, load_params
from components.evaluation.benchmarks import BENCHMARKS, evaluate_benchmark, sample_frames
from tests.conftest import SMOKE

BENCH = Path(__file__).parents[2].parent / "shared" / "benchmarks"
REAL_MC = BENCH / "vlm4d" / "real_mc.json"
real_records = pytest.mark.skipif(not REAL_MC.is_file(), reason=f"the shared VLM4D records are not at {REAL_MC}")
EVAL = EvaluateConfig(bootstrap_samples=200)


def _letter(row: dict) -> str:
    return next(k for k, v in row["choices"].items() if str(v) == str(row["answer"]))


def _wrong(row: dict) -> str:
    return next(k for k, v in row["choices"].items() if str(v) != str(row["answer"]))


def _released(rows: list[dict], responses: dict[str, str], path: Path) -> Path:
    """A predictions file as MLLM-4D's evaluation/main.py writes one: the query, every field kept, plus
    ``response``, dumped with ``indent=4``."""
    path.write_text(json.dumps([row | {"response": responses[row["id"]]} for row in rows if row["id"] in responses],
                               indent=4, ensure_ascii=False))
    return path


@pytest.fixture(scope="module")
def real_rows() -> list[dict]:
    return json.loads(REAL_MC.read_text())


@real_records
def test_released_format_scores_known_answers(real_rows: list[dict], tmp_path: Path) -> None:
    rows = real_rows[:10]
    annotations = tmp_path / "real_mc.json"
    annotations.write_text(json.dumps(rows))
    # right: a bare letter (MLLM-4D's extracted option key), a tagged letter, the option text;
    # wrong: a wrong letter, "" (their extractor found nothing)
    responses = {r["id"]: _letter(r) for r in rows[:5]}
    responses[rows[5]["id"]] = f"<answer>{_letter(rows[5])}</answer>"
    responses[rows[6]["id"]] = str(rows[6]["answer"])
    responses[rows[7]["id"]] = _wrong(rows[7])
    responses[rows[8]["id"]] = ""
    responses[rows[9]["id"]] = _wrong(rows[9])
    result = evaluate_benchmark("vlm4d", annotations, tmp_path / "out", eval_cfg=EVAL, model_cfg=ModelConfig(),
                                predictions=_released(rows, responses, tmp_path / "MLLM-4D-RFT-1.0.json"))
    assert [p["correct"] for p in result.predictions] == [True] * 7 + [False] * 3
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["model"]["overall"]["value"] == pytest.approx(0.7) and metrics["model"]["n"] == 10
    assert metrics["model"]["overall"]["ci"][0] <= 0.7 <= metrics["model"]["overall"]["ci"][1]
    assert metrics["random"]["overall"]["value"] == pytest.approx(0.25)
    assert set(metrics["model"]["per_category"]) == {"exocentric"}  # the first ten are DAVIS clips
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| model | 70.0 |" in report and "exocentric (D)" in report


@real_records
def test_every_id_form_and_missing_as_wrong_on_the_whole_file(real_rows: list[dict], tmp_path: Path) -> None:
    # the file's own id, the source id and the record id all name the same records
    responses = {real_rows[0]["id"]: _letter(real_rows[0]), real_rows[1]["id"]: _letter(real_rows[1]),
                 real_rows[2]["id"]: _wrong(real_rows[2])}
    ids = [real_rows[0]["id"], f"real_mc/{real_rows[1]['id']}", f"vlm4d/real_mc/{real_rows[2]['id']}"]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"id": i, "response": responses[r["id"]]}) + "\n"
                            for i, r in zip(ids, real_rows)))
    with pytest.raises(ValueError, match=r"1368 of 1371 records of .*real_mc\.json have no prediction, e\.g\. "
                                         r"\['vlm4d/real_mc/validation_4'"):
        evaluate_benchmark("vlm4d", REAL_MC, tmp_path / "out", eval_cfg=EVAL, model_cfg=ModelConfig(), predictions=path)
    assert not (tmp_path / "out").exists()  # nothing written before the inputs are whole
    result = evaluate_benchmark("vlm4d", REAL_MC, tmp_path / "out", eval_cfg=EVAL, model_cfg=ModelConfig(),
                                predictions=path, missing_as_wrong=True)
    assert result.metrics["model"]["overall"]["value"] == pytest.approx(2 / 1371)
    assert result.metrics["benchmark"]["missing_predictions"] == 1368
    assert [p["correct"] for p in result.predictions[:3]] == [True, True, False]


@real_records
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[\n  {"id": "validation_1", "response": "B"},\n  {"id": "validation_2" "response": "C"}\n]',
         r"p\.json:3: not valid JSON"),
        ('[\n  {"id": "validation_1", "response": "B"},\n\n  {"id": "validation_2"}\n]',
         r"p\.json:4: a prediction needs 'id' and 'response'"),
        ('[{"id": "validation_1", "response": ["B"]}]', r"p\.json:1: 'response' must be text"),
        ('{"id": "validation_1", "response": "B"}\n{"id": "validation_2", "response": "C"\n',
         r"p\.json:2: not valid JSON"),
        ('[{"id": "validation_1", "response": "B"}, {"id": "real_mc/validation_1", "response": "C"}]',
         r"p\.json:1: a second prediction for vlm4d/real_mc/validation_1 \(the first is at .*p\.json:1\)"),
        (('[{"id": "validation_1", "response": "B"}, {"id": "validation_9999", "response": "C"}, '
          '{"id": "synthetic_mc/validation_1", "response": "C"}]'),
         r"2 of 3 predictions match no record of .*\['validation_9999', 'synthetic_mc/validation_1'\]"),
    ],
)
def test_bad_predictions_files_name_the_line_or_the_ids(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        evaluate_benchmark("vlm4d", REAL_MC, tmp_path / "out", eval_cfg=EVAL, model_cfg=ModelConfig(),
                           predictions=path, missing_as_wrong=True)


@real_records
def test_the_cli_scores_a_predictions_file(real_rows: list[dict], tmp_path: Path, monkeypatch, capsys) -> None:
    from components.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLLM4D_PARENT_RUN_ID", raising=False)
    predictions = _released(real_rows, {r["id"]: _letter(r) if i % 2 else "" for i, r in enumerate(real_rows)},
                            tmp_path / "half.json")
    base = ["--params", str(SMOKE), "--quiet", "evaluate", "--benchmark", "vlm4d", "--annotations", str(REAL_MC)]
    assert main(base + ["--predictions", str(predictions), "--out", "x"]) == 0
    assert "half: vlm4d score 0.4996 over 1371 records -> x/report.md" in capsys.readouterr().out
    assert json.loads((tmp_path / "x" / "metrics.json").read_text())["model"]["overall"]["value"] == 685 / 1371
    assert (tmp_path / "mlflow.db").is_file()
    # flags of the other mode, or no answers at all, are errors rather than ignored
    assert main(base + ["--predictions", str(predictions), "--register"]) == 1
    assert "--register only apply to --benchmark own" in capsys.readouterr().err
    assert main(base) == 1
    assert "needs --annotations FILE and --model DIR or --predictions FILE" in capsys.readouterr().err
    assert main(["--params", str(SMOKE), "evaluate", "--predictions", str(predictions), "--name", "x"]) == 1
    assert "--predictions only apply to external benchmarks" in capsys.readouterr().err


def test_the_cli_offers_every_benchmark() -> None:
    from components.cli import _parser

    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    benchmark = next(a for a in sub.choices["evaluate"]._actions if a.dest == "benchmark")
    assert list(benchmark.choices) == ["own", *BENCHMARKS]


def _video(path: Path, levels: list[int], fps: float = 5.0, size: tuple[int, int] = (64, 48)) -> Path:
    """A real encoded video whose frame i is a flat grey of ``levels[i]``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for level in levels:
        writer.write(np.full((size[1], size[0], 3), level, dtype=np.uint8))
    writer.release()
    return path


def test_sample_frames_keeps_first_and_last_and_caches(tmp_path: Path) -> None:
    video = _video(tmp_path / "v.mp4", [20 * i for i in range(10)])
    sampled = sample_frames(video, 4, tmp_path / "cache")
    assert sampled["frames"] == [0, 3, 6, 9]
    assert sampled["timestamps"] == pytest.approx([0.0, 0.6, 1.2, 1.8])
    levels = [float(cv2.imread(p).mean()) for p in sampled["frame_paths"]]
    assert levels == pytest.approx([0, 60, 120, 180], abs=6)  # the picked frames, not their neighbours (+-20)
    # a second call reads the cache; a changed video is decoded again
    first = Path(sampled["frame_paths"][1]).stat().st_mtime_ns
    assert sample_frames(video, 4, tmp_path / "cache") == sampled
    assert Path(sampled["frame_paths"][1]).stat().st_mtime_ns == first
    _video(video, [200 - 20 * i for i in range(10)])
    again = sample_frames(video, 4, tmp_path / "cache")
    assert float(cv2.imread(again["frame_paths"][0]).mean()) == pytest.approx(200, abs=6)
    with pytest.raises(ValueError, match=r"v\.mp4: 10 frames, fewer than model\.num_frames=11"):
        sample_frames(video, 11, tmp_path / "cache")


def test_a_checkpoint_on_a_benchmark_from_its_videos(tmp_path: Path) -> None:
    """The --model path end to end with the smoke model: frames sampled from the videos and cached, the
    bench's generation, the same report. The random-init model's answers are not the point; that every
    record was asked, with the frames of its own video, is."""
    from components.models import build_base_model

    params = load_params(SMOKE)
    rows = [{"id": f"validation_{i}", "video": f"videos_synthetic/clip_{i % 2}.mp4", "question_type": "multiple-choice",
             "question": "Which direction is the cube moving?",
             "choices": {"A": "left", "B": "right", "C": "up", "D": "not moving"}, "answer": "left"}
            for i in range(3)]
    annotations = tmp_path / "synthetic_mc.json"
    annotations.write_text(json.dumps(rows))
    media = tmp_path / "media"
    _video(media / "videos_synthetic" / "clip_0.mp4", [10 * i for i in range(12)], fps=6.0)
    model_dir = build_base_model(params.model, [r["question"] + " left right up not moving" for r in rows],
                                 tmp_path / "base")
    with pytest.raises(ValueError, match=r"1 of 3 records have missing media .*vlm4d/synthetic_mc/validation_1: "
                                         r"\S*videos_synthetic/clip_1\.mp4"):
        evaluate_benchmark("vlm4d", annotations, tmp_path / "out", eval_cfg=EVAL, model_cfg=params.model,
                           media_root=media, model_dir=model_dir)
    with pytest.raises(ValueError, match="a model needs the videos"):
        evaluate_benchmark("vlm4d", annotations, tmp_path / "out", eval_cfg=EVAL, model_cfg=params.model,
                           model_dir=model_dir)
    _video(media / "videos_synthetic" / "clip_1.mp4", [250 - 10 * i for i in range(12)], fps=6.0)
    result = evaluate_benchmark("vlm4d", annotations, tmp_path / "out", eval_cfg=EVAL, model_cfg=params.model,
                                media_root=media, model_dir=model_dir)
    assert [p["id"] for p in result.predictions] == [f"vlm4d/synthetic_mc/validation_{i}" for i in range(3)]
    assert all(isinstance(p["output"], str) for p in result.predictions)
    cached = tmp_path / "out" / "frames" / "videos_synthetic"
    assert sorted(p.name for p in (cached / "clip_1.mp4").glob("*.png")) == ["000000.png", "000011.png"]
    assert json.loads((cached / "clip_1.mp4" / "frames.json").read_text())["timestamps"] == [0.0, pytest.approx(11 / 6)]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["input"] == "video" and metrics["model"]["n"] == 3 and metrics["shuffled"] is None
    assert metrics["benchmark"]["model"] == str(model_dir)
