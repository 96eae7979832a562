"""The curated directory as one pandas table, with the derived columns the data gate expects on.

Great Expectations checks columns, not nested JSON: whatever a record-level rule needs (a field's type,
whether an mc letter indexes into its options, whether the ST-CoT parses, whether a frame exists on disk)
is computed here, once per record, into a plain scalar column. Rules about groups of records (letter
balance per split, records per split) get their own small tables. Each derived value is ``None`` where the
rule does not apply (an mc rule on a numeric record), and GX skips nulls, so a record is counted only by
the rules that concern it.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from components.curation.questions import LABEL_SETS, answer_class
from components.curation.schema import LETTERS, RECORD_FIELDS, SPLITS
from components.quality import consistency as cc

# The scalar columns handed to GX (lists and dicts stay in the pandas table only).
GX_RECORD_COLUMNS: tuple[str, ...] = (
    "example",
    "id",
    "clip_id",
    "split",
    "file_split",
    "category",
    "answer_type",
    "prompt_variant",
    "missing_fields",
    "null_fields",
    "bad_type_fields",
    "extra_fields",
    "blank_fields",
    "mc_n_options",
    "mc_n_options_ok",
    "mc_answer",
    "mc_answer_in_options",
    "mc_answer_text_ok",
    "mc_options_distinct",
    "numeric_answer_ok",
    "numeric_n_options",
    "solution_answer_ok",
    "answer_value_ok",
    "missing_files",
    "unreadable_images",
    "frame_lengths_ok",
    "frames_match_paths",
    "timestamps_increasing",
    "timestamps_match_fps",
    "clip_n_splits",
    "cot_format_ok",
    "cot_spatial_state_ok",
    "cot_answer",
    "cot_answer_ok",
)

# Intermediate columns of the pandas table that no expectation reads directly.
_HELPER_COLUMNS: tuple[str, ...] = ("implied_fps", "timestamps_linear", "meta_fps")

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_VEC = rf"\[\s*{_NUM}\s*,\s*{_NUM}\s*,\s*{_NUM}\s*\]"
_COT = re.compile(
    r"^\s*<thinking>(?P<thinking>.*?)</thinking>\s*<answer>(?P<answer>.*?)</answer>\s*$", re.DOTALL
)
_CAMERA = re.compile(rf"Camera Center:\s*{_VEC}")
_OBJECT = re.compile(rf"Object Center:\s*{_VEC}")


def _read_split(path: Path, split: str) -> list[dict[str, Any]]:
    """One split file -> records tagged with where they came from; errors name the file and the line."""
    if not path.is_file():
        raise ValueError(
            f"{path}: missing split file (a curated directory holds "
            f"{', '.join(s + '.jsonl' for s in SPLITS)})"
        )
    rows: list[dict[str, Any]] = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(  # noqa: TRY004 - a bad input file, reported like bad JSON
                    f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}"
                )
            rows.append({"raw": record, "source_file": path.name, "source_line": lineno, "file_split": split})
    return rows


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _schema_problems(record: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(missing fields, null non-nullable fields, fields of a wrong type), each comma-joined or None."""
    missing, nulls, bad = [], [], []
    for name, (types, nullable) in RECORD_FIELDS.items():
        if name not in record:
            missing.append(name)
        elif record[name] is None:
            if not nullable:
                nulls.append(name)
        elif isinstance(record[name], bool) and bool not in types or not isinstance(record[name], types):
            bad.append(f"{name}:{type(record[name]).__name__}")
    return (", ".join(missing) or None, ", ".join(nulls) or None, ", ".join(bad) or None)


def _option_count_ok(record: dict[str, Any], n: int | None) -> bool | None:
    """4-5 options, or the whole label set when a categorical question's is smaller (three rotations): the
    curation never pads options with answers that cannot be true (they would leak which ones can)."""
    if n is None:
        return None
    category, text = record.get("category"), record.get("answer_text")
    labels = LABEL_SETS.get(category, ()) if isinstance(category, str) else ()
    k = len(labels) if isinstance(text, str) and answer_class(category, text) in labels else 5
    return min(4, k) <= n <= min(5, k)


def _mc_checks(record: dict[str, Any]) -> dict[str, Any]:
    options = record.get("options")
    n = len(options) if isinstance(options, list) else None
    answer = record.get("answer")
    letter_ok = isinstance(answer, str) and len(answer) == 1 and answer in LETTERS
    in_options = LETTERS.index(answer) < n if letter_ok and n is not None else None
    text_ok = options[LETTERS.index(answer)] == record.get("answer_text") if in_options else None
    return {
        "mc_n_options": n,
        "mc_n_options_ok": _option_count_ok(record, n),
        "mc_answer": answer if isinstance(answer, str) else repr(answer),
        "mc_answer_in_options": in_options,
        "mc_answer_text_ok": text_ok,
        "mc_options_distinct": cc.mc_options_distinct(options),
    }


def _numeric_checks(record: dict[str, Any]) -> dict[str, Any]:
    answer, options = record.get("answer"), record.get("options")
    ok = _is_number(answer) and math.isfinite(answer) and answer > 0
    return {"numeric_answer_ok": ok, "numeric_n_options": len(options) if isinstance(options, list) else None}


def _missing_files(record: dict[str, Any], exists: dict[str, bool]) -> str | None:
    """Frame paths (and the SoM image) as written: relative to the working directory, or absolute."""
    frame_paths = record.get("frame_paths")
    paths = [p for p in frame_paths if isinstance(p, str)] if isinstance(frame_paths, list) else []
    if isinstance(record.get("som_image"), str):
        paths.append(record["som_image"])
    missing = []
    for p in paths:
        if p not in exists:
            exists[p] = os.path.isfile(p)
        if not exists[p]:
            missing.append(p)
    return ", ".join(missing) or None


def _frame_checks(record: dict[str, Any]) -> dict[str, Any]:
    paths, frames, times = record.get("frame_paths"), record.get("frames"), record.get("timestamps")
    lists = all(isinstance(x, list) for x in (paths, frames, times))
    lengths_ok = lists and len(paths) > 0 and len(paths) == len(frames) == len(times)
    increasing = None
    if isinstance(times, list) and times:
        increasing = all(_is_number(t) for t in times) and all(a < b for a, b in itertools.pairwise(times))
    fps, linear = cc.implied_fps(frames, times)
    return {
        "frame_lengths_ok": lengths_ok,
        "frames_match_paths": cc.frames_match_paths(frames, paths),
        "timestamps_increasing": increasing,
        "implied_fps": fps,
        "timestamps_linear": linear,
    }


def _answers_equal(cot_answer: str, answer: Any, answer_type: Any) -> bool:
    if answer_type == "numeric" and _is_number(answer):
        try:
            value = float(cot_answer)
        except ValueError:
            return False
        return math.isclose(value, float(answer), rel_tol=1e-6)
    return cot_answer == str(answer)


def _cot_checks(record: dict[str, Any]) -> dict[str, Any]:
    cot = record.get("cot")
    match = _COT.match(cot) if isinstance(cot, str) else None
    if match is None:
        return {
            "cot_format_ok": False,
            "cot_spatial_state_ok": None,
            "cot_answer": None,
            "cot_answer_ok": None,
        }
    thinking, cot_answer = match["thinking"], match["answer"].strip()
    solution = record.get("solution") if isinstance(record.get("solution"), dict) else {}
    spatial_ok = _CAMERA.search(thinking) is not None
    if solution.get("object_center") is not None:
        spatial_ok = spatial_ok and _OBJECT.search(thinking) is not None
    return {
        "cot_format_ok": True,
        "cot_spatial_state_ok": spatial_ok,
        "cot_answer": cot_answer,
        "cot_answer_ok": _answers_equal(cot_answer, record.get("answer"), record.get("answer_type")),
    }


@dataclass
class _FileCache:
    """Records of one clip share frames and a meta.json: stat, decode and read each file once."""

    exists: dict[str, bool] = field(default_factory=dict)
    readable: dict[str, bool] = field(default_factory=dict)
    fps: dict[Path, float | None] = field(default_factory=dict)


def _derive(row: dict[str, Any], files: _FileCache) -> dict[str, Any]:
    record = row["raw"]
    record_id = record.get("id")
    out: dict[str, Any] = {
        "example": record_id if isinstance(record_id, str) else f"{row['source_file']}:{row['source_line']}",
        "source_file": row["source_file"],
        "source_line": row["source_line"],
        "file_split": row["file_split"],
    }
    out["missing_fields"], out["null_fields"], out["bad_type_fields"] = _schema_problems(record)
    out["extra_fields"], out["blank_fields"] = cc.extra_fields(record), cc.blank_fields(record)
    mc = dict.fromkeys(
        ("mc_n_options", "mc_n_options_ok", "mc_answer", "mc_answer_in_options", "mc_answer_text_ok",
         "mc_options_distinct")
    )
    numeric = dict.fromkeys(("numeric_answer_ok", "numeric_n_options"))
    if record.get("answer_type") == "mc":
        mc = _mc_checks(record)
    elif record.get("answer_type") == "numeric":
        numeric = _numeric_checks(record)
    out.update(mc)
    out.update(numeric)
    out["solution_answer_ok"] = cc.solution_answer_ok(record)
    out["answer_value_ok"] = cc.answer_value_ok(record)
    out["missing_files"] = _missing_files(record, files.exists)
    out["unreadable_images"] = cc.unreadable_images(record, files.readable)
    out["meta_fps"] = cc.source_fps(record.get("frame_paths"), files.fps)
    out.update(_frame_checks(record))
    out.update(_cot_checks(record))
    return out


def load_curated_table(curated_dir: Path) -> pd.DataFrame:
    """All splits of ``curated_dir``, one row per record: every schema field plus the derived check columns.

    Raises ``ValueError`` naming the file (and line) for a missing split file, bad JSON or a non-object line.
    """
    curated_dir = Path(curated_dir)
    rows = [row for split in SPLITS for row in _read_split(curated_dir / f"{split}.jsonl", split)]
    files = _FileCache()
    records = [{name: row["raw"].get(name) for name in RECORD_FIELDS} | _derive(row, files) for row in rows]
    derived = ["source_file", "source_line", *_HELPER_COLUMNS]
    derived += [c for c in GX_RECORD_COLUMNS if c not in RECORD_FIELDS and c != "timestamps_match_fps"]
    table = pd.DataFrame(records, columns=list(RECORD_FIELDS) + derived).astype(object)
    hashable_clip = table["clip_id"].map(lambda c: c if isinstance(c, str) else None)
    # Where a record really is (its file) is what training and evaluation read; the ``split`` field is
    # checked against the file separately.
    clip_splits = (
        pd.DataFrame({"clip": hashable_clip, "split": table["file_split"]}).groupby("clip")["split"].nunique()
    )
    table["clip_n_splits"] = hashable_clip.map(clip_splits).astype(object)
    table = table.where(table.notna(), None)
    # The frame rate is a clip's: a record is compared with its clip's meta.json or its sibling records.
    table["timestamps_match_fps"] = cc.timestamps_match_fps(
        hashable_clip, table["implied_fps"], table["timestamps_linear"], table["meta_fps"]
    )
    return table


def _scalar(value: Any) -> Any:
    """A value GX can hash and compare: lists or dicts in a scalar field become their repr."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else repr(value)


def gx_records_table(table: pd.DataFrame) -> pd.DataFrame:
    """The scalar columns of ``table`` that the records suite checks (a wrongly typed field, say a list
    as ``id``, is reported by ``field_types``; here it only must not crash the other expectations)."""
    return table[list(GX_RECORD_COLUMNS)].map(_scalar)


def split_summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per split in ``SPLITS`` (present or not): record, clip and answer-type counts."""
    rows = []
    for split in SPLITS:
        part = table[table["file_split"] == split]
        rows.append(
            {
                "split": split,
                "n_records": len(part),
                "n_clips": part["clip_id"].map(str).nunique(),
                "n_mc": int((part["answer_type"] == "mc").sum()),
                "n_numeric": int((part["answer_type"] == "numeric").sum()),
            }
        )
    summary = pd.DataFrame(rows)
    summary["example"] = [f"{r.split} ({r.n_records} records)" for r in summary.itertuples()]
    return summary


def letter_balance_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (split, letter): the letter's share of the split's valid mc answers vs uniform.

    Uniform is what answering each question with a random one of *its* options would give, so a split
    mixing 4- and 5-option questions expects E only on the 5-option ones.
    """
    rows = []
    mc = table[table["mc_answer_in_options"].map(lambda v: v is True).astype(bool)]
    for split in SPLITS:
        part = mc[mc["file_split"] == split]
        if part.empty:
            continue
        n_opts = part["mc_n_options"].astype(int)
        for i, letter in enumerate(LETTERS[: n_opts.max()]):
            expected = float(((i < n_opts) / n_opts).mean())
            count = int((part["mc_answer"] == letter).sum())
            share = count / len(part)
            rows.append(
                {
                    "key": f"{split}/{letter}",
                    "split": split,
                    "letter": letter,
                    "n_mc": len(part),
                    "count": count,
                    "share": share,
                    "expected_share": expected,
                    "deviation": abs(share - expected),
                    "example": f"{split}/{letter} (share {share:.2f}, uniform {expected:.2f}, "
                    f"{count}/{len(part)})",
                }
            )
    columns = ["key", "split", "letter", "n_mc", "count", "share", "expected_share", "deviation", "example"]
    return pd.DataFrame(rows, columns=columns)


def answer_balance_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per (split, category, answer class of the category's label set): the class's share of the
    split's questions of that category (each question once, whichever prompt variants it has) against
    uniform, as a relative deviation. A class with no question has share 0: a guesser that ruled it out
    would beat random without looking. Letters can be balanced while texts are not; this checks texts."""
    rows = []
    mc = table[table["mc_answer_in_options"].map(lambda v: v is True).astype(bool)]
    for (split, category), part in mc.groupby(["file_split", mc["category"].map(str)]):
        labels = LABEL_SETS.get(category)
        if not labels:
            continue
        questions = part[part["qid"].map(lambda q: isinstance(q, str))].drop_duplicates("qid")
        classes = questions["answer_text"].map(lambda t, c=category: answer_class(c, t))
        classes = classes[classes.isin(labels)]
        if classes.empty:
            continue  # quantity questions with number options only
        counts = classes.value_counts()
        for label in labels:
            count, total = int(counts.get(label, 0)), len(classes)
            share = count / total
            rows.append({
                "key": f"{split}/{category}/{label}", "split": split, "category": category, "answer": label,
                "n_questions": total, "count": count, "share": share, "expected_share": 1 / len(labels),
                "deviation": abs(share * len(labels) - 1),
                "example": f"{split}/{category}: '{label}' {count}/{total} (uniform {1 / len(labels):.2f})",
            })
    columns = ["key", "split", "category", "answer", "n_questions", "count", "share", "expected_share",
               "deviation", "example"]
    return pd.DataFrame(rows, columns=columns)
