"""Exports to the two formats the training code reads.

* TRL conversational: ``{"messages": [...], "images": [...]}`` with one ``{"type": "image"}`` content
  item per frame (TRL 1.16 has no video column; a list of images reaches the loss in both trainers).
* Qwen-VL fine-tuning: ``{"video": [frame paths], "conversations": [{"from": "human", "value":
  "<video>\\n..."}, {"from": "gpt", "value": ...}]}``.

The user turn carries the R4D-Bench prompt ("These images are uniformly sampled from a video of N
seconds"), the question and the lettered options; the assistant turn is the ST-CoT (or only the answer,
a training-time choice made later).
"""

from __future__ import annotations

from pathlib import Path

from components.curation.schema import LETTERS
from components.io import write_json, write_jsonl


def duration_line(record: dict) -> str:
    """R4D-Bench's opening sentence."""
    seconds = record["timestamps"][-1] - record["timestamps"][0]
    return f"These images are uniformly sampled from a video of {seconds:.1f} seconds."


def prompt_text(record: dict, *, time_line: str | None = "") -> str:
    """The question as the benchmarks pose it. ``time_line``: "" for R4D-Bench's duration sentence,
    ``None`` for no time statement, any other text in its place (the models' time cues)."""
    time_line = duration_line(record) if time_line == "" else time_line
    lines = [time_line] if time_line else []
    if record["regions"]:
        lines.append("The first image marks the regions " + ", ".join(r["token"] for r in record["regions"]) + ".")
    lines.append(record["question"])
    if record["options"]:
        lines.append("Options:")
        lines += [f"({LETTERS[i]}) {text}" for i, text in enumerate(record["options"])]
    return "\n".join(lines)


def images_of(record: dict) -> list[str]:
    """The frames, with the Set-of-Marks image first for region-prompted records (R4D-Bench's input)."""
    return ([record["som_image"]] if record["som_image"] else []) + list(record["frame_paths"])


def to_trl(record: dict) -> dict:
    images = images_of(record)
    return {
        "id": record["id"],
        "images": images,
        "messages": [
            {"role": "user", "content": [{"type": "image"} for _ in images] + [{"type": "text", "text": prompt_text(record)}]},
            {"role": "assistant", "content": [{"type": "text", "text": record["cot"]}]},
        ],
    }


def to_qwen(record: dict) -> dict:
    return {
        "id": record["id"],
        "video": images_of(record),
        "conversations": [
            {"from": "human", "value": "<video>\n" + prompt_text(record)},
            {"from": "gpt", "value": record["cot"]},
        ],
    }


def export_all(records: dict[str, list[dict]], out_dir: Path, *, write_to: Path | None = None) -> dict[str, str]:
    """Write both exports of every split; return their paths under ``out_dir``.

    ``write_to``: the folder actually written (curation's temporary folder, renamed to ``out_dir`` once
    everything is written); the returned paths are the final ones either way.
    """
    paths = {}
    for split, rows in records.items():
        trl = Path("exports") / "trl" / f"{split}.jsonl"
        qwen = Path("exports") / "qwen" / f"{split}.json"
        write_jsonl((write_to or out_dir) / trl, (to_trl(r) for r in rows))
        write_json((write_to or out_dir) / qwen, [to_qwen(r) for r in rows])
        paths[f"trl_{split}"], paths[f"qwen_{split}"] = str(out_dir / trl), str(out_dir / qwen)
    return paths
