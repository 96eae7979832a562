"""The data gate on a small, valid curated directory, and on copies of it broken one way at a time.

Each broken copy changes one thing and must fail exactly the expectation that names it, with the count
of offending rows. GX is imported once per process (~4 s); each gate run then takes a fraction of a second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from components.config import Params, QualityConfig
from components.curation.schema import CATEGORIES, LETTERS, SPLITS
from components.quality import GateFailed, GateReport, load_curated_table, run_data_gate

CLIPS_PER_SPLIT, RECORDS_PER_CLIP, FRAMES, FPS, FRAME_STEP = 3, 4, 4, 8.0, 2
OPTIONS = ["moves left", "moves right", "moves closer", "moves away"]
# The first record of each clip is a quantity asked as mc: its answer_value is its option's number.
NUMERIC_OPTIONS = ["1.50 m", "0.75 m", "2.25 m", "3.00 m"]
CFG = QualityConfig(required_categories=list(CATEGORIES))

Records = dict[str, list[dict]]


def _cot(answer: object, object_center: bool = True) -> str:
    state = "Camera Center: [0.00, 1.60, 0.00]" + (
        ", Object Center: [1.20, 0.50, 4.00]" if object_center else ""
    )
    final = "Camera Center: [0.00, 1.60, 1.00]" + (
        ", Object Center: [0.20, 0.50, 4.50]" if object_center else ""
    )
    thinking = f"Spatial State (initial): {state}. Spatial State (final): {final}."
    return f"<thinking>{thinking}</thinking><answer>{answer}</answer>"


def set_mc_answer(record: dict, letter: str) -> None:
    """Change an mc record's answer consistently (answer, answer_text, answer_value, cot, solution)."""
    record["answer"], record["solution"]["answer"] = letter, letter
    record["answer_text"] = record["options"][LETTERS.index(letter)]
    quantity = record["options"] == NUMERIC_OPTIONS
    record["answer_value"] = float(record["answer_text"].split()[0]) if quantity else None
    record["cot"] = _cot(letter, record["solution"]["object_center"] is not None)


def make_record(
    split: str, clip: str, k: int, n: int, letter: str | None, frame_paths: list[str], som: str
) -> dict:
    """One valid record: ``letter`` None makes a numeric question; ``n`` is the record's index overall."""
    category = CATEGORIES[n % len(CATEGORIES)]
    has_object = category != "ego_motion"
    record = {
        "id": f"{clip}-{k}",
        "qid": f"{clip}-q{k // 2}",
        "clip_id": clip,
        "split": split,
        "category": category,
        "answer_type": "mc" if letter else "numeric",
        "prompt_variant": ("name", "region")[k % 2],
        "question": f"Question {k} about {clip}?",
        "options": [],
        "answer": None,
        "answer_text": "",
        "answer_value": None,
        "unit": None,
        "frames": [FRAME_STEP * i for i in range(FRAMES)],
        "timestamps": [FRAME_STEP * i / FPS for i in range(FRAMES)],
        "frame_paths": frame_paths,
        "regions": [
            {
                "token": "<R1>",
                "object_id": 1,
                "label": "red cube",
                "box": [1, 1, 4, 4],
                "mask_rle": {"size": [8, 8], "counts": "0"},
            }
        ]
        if k % 2
        else [],
        "som_image": som if k % 2 else None,
        "cot": "",
        "solution": {
            "answer": None,
            "camera_center": [[0.0, 1.6, 0.0], [0.0, 1.6, 1.0]],
            "object_center": [[1.2, 0.5, 4.0], [0.2, 0.5, 4.5]] if has_object else None,
        },
        "provenance": {"depth_source": "stereo_sgbm", "pose_source": "stereo_vo", "agrees_with_gt": True},
    }
    if letter:
        record["options"] = list(NUMERIC_OPTIONS if k == 0 else OPTIONS)
        set_mc_answer(record, letter)
    else:
        value = 1.5 + k
        record.update(
            answer=value, answer_text=f"{value:g}", answer_value=value, unit="m", cot=_cot(value, has_object)
        )
        record["solution"]["answer"] = value
    return record


def frame_path(root: Path, clip: str, frame: int) -> Path:
    """Where a source frame lies, as in a real clip: ``<clip>/left/NNNNNN.png`` beside ``<clip>/meta.json``."""
    return root / "clips" / clip / "left" / f"{frame:06d}.png"


def write_curated(root: Path, mutate: Callable[[Records], None] | None = None) -> Path:
    """A curated directory with real 8x8 PNG frames: 3 splits x 3 clips x 4 records, letters balanced."""
    curated = root / "curated"
    (curated / "som").mkdir(parents=True)
    records: Records = {}
    n = 0
    for split in SPLITS:
        records[split], mc_seen = [], 0
        for c in range(CLIPS_PER_SPLIT):
            clip = f"{split}_clip{c}"
            frame_path(root, clip, 0).parent.mkdir(parents=True)
            (root / "clips" / clip / "meta.json").write_text(json.dumps({"clip_id": clip, "fps": FPS}))
            paths = []
            for i in range(FRAMES):
                path = frame_path(root, clip, FRAME_STEP * i)
                Image.new("RGB", (8, 8), (i * 40, c * 60, 90)).save(path)
                paths.append(str(path))
            som = curated / "som" / f"{clip}.png"
            Image.new("RGB", (8, 8), (255, 0, 0)).save(som)
            for k in range(RECORDS_PER_CLIP):
                letter = None
                if (n % 3) != 2:  # two in three are mc, letters A B C D in turn: exactly balanced
                    letter, mc_seen = "ABCD"[mc_seen % 4], mc_seen + 1
                records[split].append(make_record(split, clip, k, n, letter, paths, str(som)))
                n += 1
    if mutate:
        mutate(records)
    for split, rows in records.items():
        (curated / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (curated / "stats.json").write_text(json.dumps({split: len(rows) for split, rows in records.items()}))
    return curated


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, GateReport]:
    root = tmp_path_factory.mktemp("valid")
    curated = write_curated(root)
    return curated, run_data_gate(curated, CFG, root / "report")


def _first(records: Records, split: str, answer_type: str, skip: int = 0) -> dict:
    return [r for r in records[split] if r["answer_type"] == answer_type][skip]


def _set(split: str, answer_type: str, **fields: object) -> Callable[[Records], None]:
    return lambda records: _first(records, split, answer_type).update(fields)


def _imbalance(records: Records) -> None:
    # rft's 8 mc answers are A B C D A B C D; turning both Bs into As makes A 4/8 and B 0/8 (uniform: 2/8).
    for r in records["rft"]:
        if r["answer"] == "B":
            set_mc_answer(r, "A")


def _relabel_counting(records: Records) -> None:
    for rows in records.values():
        for r in rows:
            if r["category"] == "counting":
                r["category"] = "dimension"


def _drop_last_option(records: Records) -> None:
    _first(records, "sft", "mc")["options"].pop()  # its answer is A: still inside the 3 options


def _no_object_center(records: Records) -> None:
    r = next(r for r in records["sft"] if r["solution"]["object_center"] is not None)
    r["cot"] = _cot(r["answer"], object_center=False)


def _duplicate_option(records: Records) -> None:
    r = _first(records, "bench", "mc", skip=1)  # text options; the answer's own option stays as it is
    i = LETTERS.index(r["answer"])
    r["options"][(i + 1) % len(r["options"])] = r["options"][i].upper() + "."  # alike to the extractor


def _solution_answer_differs(records: Records) -> None:
    r = _first(records, "rft", "mc")
    r["solution"]["answer"] = "B" if r["answer"] != "B" else "C"


def _times(factor: float, clip_wide: bool = False) -> Callable[[Records], None]:
    def mutate(records: Records) -> None:
        first = records["sft"][0]
        for r in records["sft"] if clip_wide else [first]:
            if r["clip_id"] == first["clip_id"]:
                r["timestamps"] = [t * factor for t in r["timestamps"]]

    return mutate


def _answer_value_x3(answer_type: str) -> Callable[[Records], None]:
    def mutate(records: Records) -> None:
        r = next(r for r in records["sft"] if r["answer_type"] == answer_type and r["answer_value"] is not None)
        r["answer_value"] *= 3

    return mutate


def _frame_not_an_image(content: Callable[[bytes], bytes]) -> Callable[[Records], None]:
    def mutate(records: Records) -> None:
        path = Path(records["bench"][0]["frame_paths"][1])  # shared by the clip's 4 records
        path.write_bytes(content(path.read_bytes()))

    return mutate


CASES: dict[str, tuple[Callable[[Records], None], str, int]] = {
    # Issue 9: corruptions the gate used to let through.
    "unknown extra field": (lambda rs: rs["sft"][1].update(difficulty="easy"), "no_extra_fields", 1),
    "empty question": (_set("rft", "mc", question="  "), "text_not_blank", 1),
    "same option text twice": (_duplicate_option, "mc_options_distinct", 1),
    "frame numbers disagree with frame paths": (
        lambda rs: _first(rs, "sft", "mc").update(frames=[f + 1 for f in _first(rs, "sft", "mc")["frames"]]),
        "frames_match_paths",
        1,
    ),
    "timestamps x10": (_times(10.0), "timestamps_match_fps", 1),
    "timestamps x10 in every record of a clip": (_times(10.0, clip_wide=True), "timestamps_match_fps", 4),
    "timestamps off the frame line": (
        _set("bench", "numeric", timestamps=[0.0, 0.25, 0.6, 0.75]),
        "timestamps_match_fps",
        1,
    ),
    "solution.answer differs from answer": (_solution_answer_differs, "solution_answer_matches", 1),
    "answer_value x3 vs the option text": (_answer_value_x3("mc"), "answer_value_matches_text", 1),
    "answer_value x3 vs the numeric answer_text": (_answer_value_x3("numeric"), "answer_value_matches_text", 1),
    "frame path is not an image": (_frame_not_an_image(lambda _: b'{"not": "a png"}'), "frames_are_images", 4),
    "truncated frame image": (_frame_not_an_image(lambda png: png[:40]), "frames_are_images", 4),
    # Corruptions the gate already caught.
    "duplicate id": (lambda rs: rs["rft"][0].update(id=rs["sft"][0]["id"]), "id_unique", 2),
    "bad letter": (_set("sft", "mc", answer="Z"), "mc_answer_letter", 1),
    "3 options": (_drop_last_option, "mc_num_options", 1),
    "answer letter beyond options": (_set("bench", "mc", answer="E"), "mc_answer_in_options", 1),
    "answer_text not the option": (_set("bench", "mc", answer_text="moves sideways"), "mc_answer_text", 1),
    "non-finite numeric": (_set("sft", "numeric", answer=math.inf), "numeric_answer_positive", 1),
    "negative numeric": (_set("rft", "numeric", answer=-2.0), "numeric_answer_positive", 1),
    "numeric with options": (
        _set("rft", "numeric", options=["1", "2", "3", "4"]),
        "numeric_options_empty",
        1,
    ),
    "letter imbalance": (_imbalance, "letter_balance", 2),
    "missing category": (_relabel_counting, "required_categories", 1),
    "clip in two splits": (
        lambda rs: rs["rft"][0].update(clip_id=rs["sft"][0]["clip_id"]),
        "clip_in_one_split",
        5,
    ),
    "cot with wrong answer": (_set("bench", "numeric", cot=_cot(99.0)), "cot_answer_matches", 1),
    "cot without tags": (_set("sft", "mc", cot="The red cube moves left. A"), "cot_format", 1),
    "cot without object center": (_no_object_center, "cot_spatial_state", 1),
    "missing field": (lambda rs: rs["sft"][3].pop("question"), "fields_present", 1),
    "null field": (lambda rs: rs["sft"][3].update(question=None), "required_not_null", 1),
    "wrong type": (lambda rs: rs["bench"][5].update(answer_text=7), "field_types", 1),
    "unknown split": (lambda rs: rs["bench"][2].update(split="dev"), "split_in_set", 1),
    "unknown category": (lambda rs: rs["bench"][2].update(category="color"), "category_in_set", 1),
    "timestamps not increasing": (
        _set("rft", "mc", timestamps=[0.0, 0.5, 0.25, 0.75]),
        "timestamps_increasing",
        1,
    ),
    "frames length mismatch": (_set("rft", "mc", frames=[0, 2, 4]), "frame_lengths_match", 1),
    "too few records": (lambda rs: rs.update(bench=rs["bench"][:9]), "min_records_per_split", 1),
}


def assert_gate_fails(
    curated: Path, report_dir: Path, gate: str, count: int, cfg: QualityConfig = CFG
) -> GateReport:
    with pytest.raises(GateFailed) as info:
        run_data_gate(curated, cfg, report_dir)
    report = info.value.report
    result = report.result(gate)
    assert not result.success, result
    assert result.unexpected_count == count, result
    assert 0 < len(result.examples) <= cfg.max_examples
    line = next(line for line in str(info.value).splitlines() if line.strip().startswith(f"- {gate}"))
    assert f": {count} unexpected" in line
    return report


def test_valid_directory_passes(valid: tuple[Path, GateReport]) -> None:
    _, report = valid
    assert report.success, report.summary()
    assert report.n_records == len(SPLITS) * CLIPS_PER_SPLIT * RECORDS_PER_CLIP
    assert {r.name for r in report.results} >= {
        "id_unique",
        "letter_balance",
        "required_categories",
        "frames_exist",
    }
    assert all(r.unexpected_count == 0 for r in report.results)


def test_report_json_and_data_docs_exist(valid: tuple[Path, GateReport]) -> None:
    _, report = valid
    saved = json.loads(report.report_json.read_text())
    assert saved["success"] is True and saved["n_records"] == report.n_records
    assert len(saved["results"]) == len(report.results) and saved["failed"] == []
    assert (
        report.data_docs is not None and report.data_docs.name == "index.html" and report.data_docs.is_file()
    )
    assert "data_gate_records" in report.data_docs.read_text()
    assert not list(report.report_json.parent.glob(".data_docs.*"))  # the temp build folder was swapped in


@pytest.mark.parametrize("case", list(CASES))
def test_each_failure_kind_names_its_expectation(case: str, tmp_path: Path) -> None:
    mutate, gate, count = CASES[case]
    assert_gate_fails(write_curated(tmp_path, mutate), tmp_path / "report", gate, count)


def test_frame_file_deleted(tmp_path: Path) -> None:
    curated = write_curated(tmp_path)
    frame_path(tmp_path, "rft_clip1", 4).unlink()  # shared by that clip's 4 records
    report = assert_gate_fails(curated, tmp_path / "report", "frames_exist", RECORDS_PER_CLIP)
    assert report.result("frames_exist").examples == [f"rft_clip1-{k}" for k in range(RECORDS_PER_CLIP)]


def test_failure_message_examples_and_report(tmp_path: Path) -> None:
    curated = write_curated(tmp_path, _imbalance)
    report = assert_gate_fails(curated, tmp_path / "report", "letter_balance", 2)
    assert [r.name for r in report.failed] == ["letter_balance"]
    assert any(e.startswith("rft/A") for e in report.result("letter_balance").examples)
    assert any(e.startswith("rft/B") for e in report.result("letter_balance").examples)
    saved = json.loads((tmp_path / "report" / "gate_report.json").read_text())
    assert saved["success"] is False and saved["failed"] == ["letter_balance"]
    assert (tmp_path / "report" / "data_docs" / "index.html").is_file()


def test_raise_on_failure_false_returns_the_report(tmp_path: Path) -> None:
    curated = write_curated(tmp_path, CASES["duplicate id"][0])
    cfg = QualityConfig(required_categories=list(CATEGORIES), max_examples=1)
    report = run_data_gate(curated, cfg, tmp_path / "report", raise_on_failure=False)
    assert not report.success and report.result("id_unique").examples == ["sft_clip0-0"]


def test_malformed_values_are_reported_not_crashed_on(tmp_path: Path) -> None:
    def malform(records: Records) -> None:
        sft = records["sft"]
        sft[0]["id"], sft[1]["category"], sft[2]["answer"] = ["x"], {"a": 1}, True
        sft[4]["frame_paths"], sft[5]["solution"], sft[6]["timestamps"] = "x.png", [], ["a", "b", "c", "d"]

    report = assert_gate_fails(write_curated(tmp_path, malform), tmp_path / "report", "field_types", 5)
    assert report.result("field_types").examples[0] == "sft.jsonl:1"  # no usable id: file and line instead
    assert report.result("timestamps_increasing").unexpected_count == 1


def test_relative_frame_paths_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def relative(records: Records) -> None:
        for rows in records.values():
            for r in rows:
                r["frame_paths"] = [str(Path(p).relative_to(tmp_path)) for p in r["frame_paths"]]

    curated = write_curated(tmp_path, relative)
    monkeypatch.chdir(tmp_path)
    assert run_data_gate(curated, CFG, tmp_path / "report").success


def test_numeric_cot_answer_compares_as_float(tmp_path: Path) -> None:
    def reformat(records: Records) -> None:
        r = _first(records, "sft", "numeric")
        r["cot"] = _cot(f"{r['answer'] * (1 + 1e-8):.10f}")

    assert run_data_gate(write_curated(tmp_path, reformat), CFG, tmp_path / "report").success


def test_load_curated_table_derives_columns(valid: tuple[Path, GateReport]) -> None:
    table = load_curated_table(valid[0])
    assert len(table) == len(SPLITS) * CLIPS_PER_SPLIT * RECORDS_PER_CLIP
    assert set(table["file_split"]) == set(SPLITS)
    assert table["cot_format_ok"].all() and table["missing_files"].isna().all()
    mc = table[table["answer_type"] == "mc"]
    assert set(mc["mc_answer"]) == set("ABCD") and mc["numeric_answer_ok"].isna().all()


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    curated = write_curated(tmp_path)
    lines = (curated / "rft.jsonl").read_text().splitlines()
    lines[4] = lines[4][:-3]
    (curated / "rft.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"rft\.jsonl:5: not valid JSON"):
        load_curated_table(curated)
    with pytest.raises(ValueError, match=r"rft\.jsonl:5"):
        run_data_gate(curated, CFG, tmp_path / "report")


def test_missing_split_file_and_unknown_required_category(tmp_path: Path) -> None:
    curated = write_curated(tmp_path)
    (curated / "bench.jsonl").unlink()
    with pytest.raises(ValueError, match=r"bench\.jsonl: missing split file"):
        load_curated_table(curated)
    with pytest.raises(ValueError, match="unknown"):
        run_data_gate(curated, QualityConfig(required_categories=["colour"]), tmp_path / "report")


def test_smoke_curation_passes_the_gate(
    smoke_curated: tuple[Path, dict], smoke_params: Params, tmp_path: Path
) -> None:
    # The real curation output (session fixture in tests/conftest.py) must satisfy its own contract.
    curated, _ = smoke_curated
    report = run_data_gate(curated, smoke_params.quality, tmp_path / "report", raise_on_failure=False)
    assert report.success, report.summary()


def _passing_report(tmp_path: Path) -> tuple[Path, Path]:
    curated, report_dir = write_curated(tmp_path), tmp_path / "report"
    assert run_data_gate(curated, CFG, report_dir).success
    assert json.loads((report_dir / "gate_report.json").read_text())["success"] is True
    return curated, report_dir


def test_a_gate_on_a_broken_file_replaces_the_previous_passing_report(tmp_path: Path) -> None:
    curated, report_dir = _passing_report(tmp_path)
    (curated / "rft.jsonl").write_text('{"id": \n')
    with pytest.raises(ValueError, match=r"rft\.jsonl:1"):
        run_data_gate(curated, CFG, report_dir)
    saved = json.loads((report_dir / "gate_report.json").read_text())
    assert saved["success"] is False and "rft.jsonl:1" in saved["error"]
    assert not (report_dir / "data_docs").exists()  # the old docs explained the old verdict


def test_a_gate_killed_mid_run_leaves_a_failing_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from components.quality import gate

    curated, report_dir = _passing_report(tmp_path)

    def killed(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(gate, "_validate", killed)
    with pytest.raises(KeyboardInterrupt):
        run_data_gate(curated, CFG, report_dir)
    saved = json.loads((report_dir / "gate_report.json").read_text())
    assert saved["success"] is False and "did not finish" in saved["error"]
    assert not list(report_dir.glob(".gate_report.json.*"))  # written atomically: no temp file left


def _label_set_answers(answers: list[str]) -> Callable[[Records], None]:
    """Every sft mc question answered from ``answers`` in turn, options from the rotation label set."""
    from components.curation.questions import LABEL_SETS

    def mutate(records: Records) -> None:
        labels = list(LABEL_SETS["rotational"])
        mc = [r for r in records["sft"] if r["answer_type"] == "mc" and r["options"] != NUMERIC_OPTIONS]
        for i, r in enumerate(mc):
            answer = answers[i % len(answers)]
            others = [t for t in labels if t != answer]
            options = others[: i % 3] + [answer] + others[i % 3 :]  # the answer's letter cycles A, B, C
            r.update(category="rotational", qid=f"{r['clip_id']}-rot{i}", options=options)
            set_mc_answer(r, LETTERS[i % 3])

    return mutate


def test_answer_text_shortcut_fails_answer_balance(tmp_path: Path) -> None:
    from components.curation.questions import LABEL_SETS

    rotations = LABEL_SETS["rotational"]
    # Letters can stay balanced while one text is the answer to every question: the gate checks texts.
    curated = write_curated(tmp_path, _label_set_answers([rotations[2]]))
    report = assert_gate_fails(curated, tmp_path / "report", "answer_balance", 3, QualityConfig())
    assert report.result("letter_balance").success  # the letters alone would not have shown it
    balanced = write_curated(tmp_path / "ok", _label_set_answers(list(rotations)))
    assert run_data_gate(balanced, QualityConfig(), tmp_path / "ok_report").result("answer_balance").success
