"""evaluate(), write_report() and comparison_table() with deterministic generators as the input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.evaluation.harness import evaluate
from components.evaluation.report import comparison_table, write_report

LETTERS = "ABCDE"


def _records() -> list[dict]:
    """Ten literal records: answers cycle B, C, D, A, ...; one numeric; option counts 4 and 5."""
    cats = ["dimension", "spatial_relation", "translational", "rotational", "ego_motion"]
    records = []
    for i in range(9):
        n_options = 5 if i % 3 == 0 else 4
        records.append(
            {
                "id": f"r{i}",
                "category": cats[i % 5],
                "answer_type": "mc",
                "options": [f"option {k}" for k in range(n_options)],
                "answer": LETTERS[(i + 1) % 4],
                "prompt_variant": "region" if i % 2 else "name",
            }
        )
    records.append(
        {
            "id": "n0",
            "category": "object_camera_distance",
            "answer_type": "numeric",
            "options": [],
            "answer": 2.5,
            "prompt_variant": "name",
        }
    )
    return records


class Oracle:
    """Answers the truth when it sees the frames and "A" when blind; records the batches it got."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, batch: list[dict], blind: bool) -> list[str]:
        self.calls.append((len(batch), blind))
        if blind:
            return ["<answer>A</answer>" for _ in batch]
        return [f"<answer>{r['answer']}</answer>" for r in batch]


def always_a(batch: list[dict], blind: bool) -> list[str]:
    return ["A" for _ in batch]


def test_evaluate_batches_and_rows() -> None:
    records, oracle = _records(), Oracle()
    result = evaluate(records, oracle, batch_size=3, progress=False)
    assert oracle.calls == [
        (3, False),
        (3, False),
        (3, False),
        (1, False),
        (3, True),
        (3, True),
        (3, True),
        (1, True),
        (3, False),  # shuffled video: the frames change, the blind flag does not
        (3, False),
        (3, False),
        (1, False),
    ]
    model, blind, rand = result.metrics["model"], result.metrics["blind"], result.metrics["random"]
    assert model["overall"]["value"] == 1.0 and model["format_valid"]["value"] == 1.0
    # Blind "A" is right on the two records whose answer is A (r3, r7) and the numeric one gets no number.
    assert blind["mc_accuracy"]["value"] == pytest.approx(2 / 9)
    assert blind["numeric_mra"]["value"] == 0.0
    assert rand["overall"]["value"] == pytest.approx((3 * 0.2 + 6 * 0.25) / 10)
    assert model["overall"]["value"] > blind["overall"]["value"] > 0
    assert [p["id"] for p in result.predictions] == [r["id"] for r in records]
    first = result.predictions[0]
    assert (
        first["correct"]
        and first["blind"]["output"] == "<answer>A</answer>"
        and not first["blind"]["correct"]
    )
    assert set(first) >= {"id", "clip_id", "category", "output", "extracted", "correct", "mra", "shuffled"}
    # the oracle ignores the frames, so another clip's video changes nothing
    assert result.metrics["shuffled"]["overall"]["value"] == 1.0


def test_evaluate_without_blind_and_bad_generators(tmp_path: Path) -> None:
    oracle = Oracle()
    result = evaluate(_records(), oracle, batch_size=4, blind_baseline=False, shuffled_baseline=False,
                      progress=False)
    assert result.metrics["blind"] is None and all(not blind for _, blind in oracle.calls)
    assert result.metrics["shuffled"] is None and len(oracle.calls) == 3
    assert "blind" not in result.predictions[0] and "shuffled" not in result.predictions[0]
    report = write_report(result, tmp_path, title="no blind")["report"].read_text()
    assert "| model | 100.0 |" in report and "| blind |" not in report and "| shuffled video |" not in report
    with pytest.raises(ValueError, match="returned 1 completions for a batch of 2"):
        evaluate(_records(), lambda batch, blind: ["A"], batch_size=2, progress=False)
    with pytest.raises(TypeError, match="must return strings"):
        evaluate(_records(), lambda batch, blind: [None] * len(batch), batch_size=2, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(_records(), oracle, batch_size=0)


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    out = tmp_path_factory.mktemp("reports")
    runs = {"zero-shot": always_a, "sft": Oracle()}
    return {
        name: write_report(evaluate(_records(), gen, batch_size=4, progress=False), out / name, title=name)
        for name, gen in runs.items()
    }


def test_write_report(reports: dict[str, dict[str, Path]]) -> None:
    paths = reports["sft"]
    assert set(paths) == {"metrics", "predictions", "report", "chart"}
    assert all(p.is_file() for p in paths.values())
    metrics = json.loads(paths["metrics"].read_text())
    assert metrics["title"] == "sft" and set(metrics) >= {"model", "blind", "shuffled", "random"}
    assert len(paths["predictions"].read_text().splitlines()) == 10
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = paths["report"].read_text()
    header = (
        "| | Avg | Static | Dynamic | Dyn MC macro | dimension (S) | spatial_relation (S) | translational (D) | rotational (D) "
        "| object_camera_distance (D) | ego_motion (D) | MC acc | Numeric MRA | Format valid |"
    )
    assert header in report
    assert "| model | 100.0 | 100.0 | 100.0 | 100.0 |" in report
    assert "| shuffled video | 100.0 |" in report
    assert "| blind | 20.0 |" in report and "| random | 21.0 |" in report  # (3 * 20 + 6 * 25 + 0) / 10


def test_comparison_table(reports: dict[str, dict[str, Path]]) -> None:
    table = comparison_table({name: paths["metrics"] for name, paths in reports.items()})
    lines = table.split("\n\n")[0].strip().splitlines()  # the first table
    assert lines[0].startswith("| | Avg | Static | Dynamic | Dyn MC macro | dimension (S)") and "MC acc" not in lines[0]
    rows = [line.split(" | ")[0].lstrip("| ") for line in lines[2:]]
    assert rows == ["zero-shot", "sft", "shuffled (zero-shot)", "shuffled (sft)", "blind (zero-shot)", "blind (sft)",
                    "random"]
    assert lines[3].startswith("| sft | 100.0 |")
    assert "95% clip-level bootstrap intervals" in table
