"""Benchmark readers: external annotation files -> the project's evaluation record shape.

Every reader returns dicts with ``id`` (prefixed by the benchmark, unique across its files),
``benchmark``, ``source_id`` (the file's own id), ``category``, ``answer_type``, ``question``,
``options`` (texts), ``answer``, ``answer_text``, ``video``, ``frame_paths`` ([]: frames are sampled
from ``video`` by the caller, ``benchmarks.sample_frames``), ``som_image``, ``regions`` ([]) and
``prompt_variant``. Multiple choice: ``answer_type`` "mc", ``answer`` the letter, ``answer_text`` its
option. Numeric (VSI-Bench / VSTI-Bench's numeric-answer questions, scored by mean relative accuracy):
``answer_type`` "numeric", ``options`` [], ``answer`` the number, ``answer_text`` the number as written,
as the curated numeric records have them (``curation.schema``).

Media: with a root given, ``video`` (and ``som_image``) become paths under it and every one must
exist, or the reader raises a ``ValueError`` that says how many are missing and names the first few
records and paths: a benchmark scored on the videos that happened to be downloaded is a different
benchmark. With ``None`` the records are read for text-only use (``video`` keeps the file's own reference).

Where the records carry no category of the kind the reports group by, it is derived, documented here:

* VLM4D: ``question_type`` is "multiple-choice" for every shipped record, so the category is VLM4D's
  reporting perspective, read from the video's path: ``egocentric`` (Ego4D), ``exocentric`` (DAVIS,
  YouTube-VOS), ``synthetic``. ``question_type`` is kept on the record.
* Ego-ST: the question family and direction, from the question text: ``landmark_forward``,
  ``landmark_reverse``, ``direction_forward``, ``direction_reverse``, ``action_reverse`` (forward =
  "to reach your destination", reverse = "to ... starting point").
* R4D-Bench: its task, by name or abbreviation, onto the schema's categories (``TASKS``).
* STI-Bench: its task (``Task`` / ``task_type``) onto the schema's categories where R4D-Bench shares
  it, STI-Bench's own name otherwise (``STI_TASKS``). The question gets STI-Bench's time-window prefix,
  "From {time_start} s to {time_end} s. ", as its own prompt builds it; ``scene`` is kept (the file's,
  else inferred from the video name as STI-Bench's analysis does).
* VSI-Bench: ``question_type``, the three ``object_rel_direction_{easy,medium,hard}`` merged into
  ``object_rel_direction`` as VSI-Bench reports them (``question_type`` is kept).
* VSTI-Bench: ``question_type`` as it is.

Table files (STI-Bench, VSI-Bench, VSTI-Bench) are read by ``read_rows``: a JSON list, JSON lines,
tab-separated (VLMEvalKit) or parquet (the model hub's), so a bad row is named by its line.
"""

from __future__ import annotations

import ast
import csv
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from components.curation.schema import LETTERS
from components.evaluation.answers import normalise

log = logging.getLogger(__name__)

# R4D-Bench task (full name or abbreviation, compared after normalise()) -> category.
TASKS = {
    "3d video grounding": "video_grounding",
    "vg": "video_grounding",
    "dimensional measurement": "dimension",
    "dimension measurement": "dimension",
    "dm": "dimension",
    "spatial relation": "spatial_relation",
    "spatial relationship": "spatial_relation",
    "sr": "spatial_relation",
    "rotational": "rotational",
    "r": "rotational",
    "counting": "counting",
    "c": "counting",
    "translational": "translational",
    "t": "translational",
    "false positive": "false_positive",
    "false positives": "false_positive",
    "fp": "false_positive",
    "speed acceleration": "speed_acceleration",
    "sa": "speed_acceleration",
    "displacement path length": "displacement_path_length",
    "dp": "displacement_path_length",
}
_MISSING_SHOWN = 5
# STI-Bench task (compared after normalise()) -> category: R4D-Bench's where R4D-Bench took the task from
# STI-Bench, STI-Bench's own name for the three it did not (counted dynamic, as STI-Bench groups them).
STI_TASKS = {
    "3d video grounding": "video_grounding",
    "dimensional measurement": "dimension",
    "spatial relation": "spatial_relation",
    "displacement path length": "displacement_path_length",
    "speed acceleration": "speed_acceleration",
    "ego centric orientation": "ego_orientation",
    "trajectory description": "trajectory_description",
    "pose estimation": "pose_estimation",
}
# VSI-Bench's and VSTI-Bench's question types by answer kind (lmms-eval vsibench, VLM-3R vstibench task code).
VSI_MC_TYPES = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard",
                "object_rel_distance", "route_planning", "obj_appearance_order")
VSI_NUMERIC_TYPES = ("object_abs_distance", "object_counting", "object_size_estimation", "room_size_estimation")
VSTI_MC_TYPES = ("obj_obj_relative_pos_nf", "obj_obj_relative_pos_ud", "obj_obj_relative_pos_lr",
                 "camera_obj_rel_dist_v1", "camera_obj_rel_dist_v2", "camera_obj_rel_dist_v3",
                 "camera_movement_direction")
VSTI_NUMERIC_TYPES = ("camera_obj_abs_dist", "camera_displacement", "camera_obj_dist_change")


def _record(
    benchmark: str,
    source_id: str,
    category: str,
    question: str,
    options: list[str],
    answer_index: int,
    video: str,
    *,
    som_image: str | None = None,
    **extra: object,
) -> dict:
    return {
        "id": f"{benchmark}/{source_id}",
        "benchmark": benchmark,
        "source_id": source_id,
        "category": category,
        "answer_type": "mc",
        "question": question,
        "options": options,
        "answer": LETTERS[answer_index],
        "answer_text": options[answer_index],
        "video": video,
        "frame_paths": [],
        "som_image": som_image,
        "regions": [],
        "prompt_variant": "region" if som_image else "name",
        **extra,
    }


def _numeric_record(benchmark: str, source_id: str, category: str, question: str, value: object, video: str,
                    where: str, **extra: object) -> dict:
    """A numeric-answer record (no options), shaped as the curated numeric records are."""
    try:
        number = float(str(value).strip())
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise ValueError(f"{where}: the numeric answer {value!r} is not a finite number")
    return {
        "id": f"{benchmark}/{source_id}",
        "benchmark": benchmark,
        "source_id": source_id,
        "category": category,
        "answer_type": "numeric",
        "question": question,
        "options": [],
        "answer": number,
        "answer_text": str(value).strip(),
        "video": video,
        "frame_paths": [],
        "som_image": None,
        "regions": [],
        "prompt_variant": "name",
        **extra,
    }


def _answer_index(options: list[str], answer: str, where: str) -> int:
    """The answer text's option index: exact first, then after ``normalise``."""
    for texts, target in ((options, answer), ([normalise(o) for o in options], normalise(answer))):
        if target in texts:
            if texts.count(target) > 1:
                log.warning(
                    "%s: the answer %r is listed %d times; either letter scores",
                    where,
                    answer,
                    texts.count(target),
                )
            return texts.index(target)
    raise ValueError(f"{where}: the answer {answer!r} is not one of its options {options}")


def _resolve_media(records: list[dict], root: Path | None, fields: tuple[str, ...], name: str) -> list[dict]:
    """Point the media fields under ``root`` and require the files (see the module docstring)."""
    if root is None:
        return records
    root = Path(root)
    missing, affected = [], 0
    for record in records:
        before = len(missing)
        for field in fields:
            if record.get(field):
                path = root / record[field]
                record[field] = str(path)
                if not path.is_file():
                    missing.append(f"{record['id']}: {path}")
        affected += len(missing) > before
    if missing:
        shown = ", ".join(missing[:_MISSING_SHOWN])
        raise ValueError(
            f"{name}: {affected} of {len(records)} records have missing media under {root} "
            f"({len(missing)} files, e.g. {shown}). Download them there, or read with a root of None "
            "for text-only use."
        )
    return records


def _vlm4d_video(url: str) -> tuple[str, str]:
    """(path relative to the dataset root, perspective category) of a VLM4D video reference."""
    relative = url.split("/resolve/main/", 1)[-1] if "://" in url else url.lstrip("/")
    if "videos_synthetic/" in relative:
        return relative, "synthetic"
    if "videos_real/ego4d/" in relative:
        return relative, "egocentric"
    if "videos_real/" in relative:
        return relative, "exocentric"
    raise ValueError(f"VLM4D video {url!r} is neither under videos_real/ nor videos_synthetic/")


def read_vlm4d(path: Path, video_root: Path | None) -> list[dict]:
    """VLM4D ``real_mc.json`` / ``synthetic_mc.json``: ``choices`` {A-D}, the answer as option text."""
    path = Path(path)
    records = []
    for row in json.loads(path.read_text()):
        where = f"{path.name} {row['id']}"
        letters = sorted(row["choices"])
        if letters != list(LETTERS[: len(letters)]):
            raise ValueError(f"{where}: choices must be lettered A, B, ... (got {letters})")
        options = [str(row["choices"][k]) for k in letters]
        video, category = _vlm4d_video(row["video"])
        records.append(
            _record(
                "vlm4d",
                f"{path.stem}/{row['id']}",
                category,
                row["question"],
                options,
                _answer_index(options, str(row["answer"]), where),
                video,
                question_type=row["question_type"],
            )
        )
    return _resolve_media(records, video_root, ("video",), str(path))


def _split_options(body: str, where: str) -> list[str]:
    """Split "A. x, B. y, C. z" into [x, y, z]; a letter's marker is only looked for after the previous one."""
    first = re.match(r"\s*A\.\s+", body)
    if first is None:
        raise ValueError(f"{where}: the options do not start with 'A. '")
    bounds, pos = [(first.start(), first.end())], first.end()
    for letter in LETTERS[1:]:
        marker = re.compile(rf",\s*{letter}\.\s+").search(body, pos)
        if marker is None:
            break
        bounds.append((marker.start(), marker.end()))
        pos = marker.end()
    ends = [start for start, _ in bounds[1:]] + [len(body)]
    return [body[content:end].strip() for (_, content), end in zip(bounds, ends)]


def _ego_st_category(question: str, where: str) -> str:
    q = question.lower()
    family = next((f for f in ("landmark", "direction", "action") if f in q), None)
    direction = "forward" if "destination" in q else "reverse" if "starting point" in q else None
    if family is None or direction is None:
        raise ValueError(f"{where}: cannot tell the question family/direction of {question!r}")
    return f"{family}_{direction}"


def read_ego_st(path: Path, video_root: Path | None) -> list[dict]:
    """Ego-ST Bench (ST-R1 ``total_test_mcq_630.jsonl``): options inside ``problem``, the letter inside
    ``solution``'s ``<answer>``. Videos resolve by file name under ``video_root``."""
    path = Path(path)
    records = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        row, where = json.loads(line), f"{path.name}:{i + 1}"
        head, sep, rest = row["problem"].partition("Options:")
        body = re.split(r"\n\s*\n", rest, maxsplit=1)[0]
        answer = re.search(r"<answer>\s*([A-E])\s*</answer>", row["solution"])
        if not sep or answer is None:
            raise ValueError(f"{where}: no 'Options:' in problem or no <answer>X</answer> in solution")
        options = _split_options(body, where)
        index = LETTERS.index(answer.group(1))
        if index >= len(options):
            raise ValueError(f"{where}: answer {answer.group(1)} but only {len(options)} options")
        question = head.strip()
        video = Path(row["video"]).name if video_root is not None else row["video"]
        records.append(
            _record("ego_st", str(i), _ego_st_category(question, where), question, options, index, video)
        )
    return _resolve_media(records, video_root, ("video",), str(path))


def read_r4d_bench(path: Path, media_root: Path | None) -> list[dict]:
    """R4D-Bench eval JSON (a list): ``options`` list, ``answer`` as option text, ``task`` -> category,
    ``video`` and ``som_image`` relative to the media folder (``FORMAT.md`` in shared/benchmarks)."""
    path = Path(path)
    records = []
    for row in json.loads(path.read_text()):
        where = f"{path.name} {row['id']}"
        task = normalise(row["task"])
        if task not in TASKS:
            raise ValueError(f"{where}: unknown task {row['task']!r}; known: {', '.join(sorted(TASKS))}")
        options = [str(o) for o in row["options"]]
        extra = {"source_benchmark": row["benchmark"]} if "benchmark" in row else {}
        records.append(
            _record(
                "r4d_bench",
                str(row["id"]),
                TASKS[task],
                row["question"],
                options,
                _answer_index(options, str(row["answer"]), where),
                row["video"],
                som_image=row.get("som_image") or None,
                task=row["task"],
                **extra,
            )
        )
    return _resolve_media(records, media_root, ("video", "som_image"), str(path))


def _json_list(text: str, name: str) -> list[tuple[str, object]]:
    """(where, value) of each element of a JSON list, ``where`` naming the line it starts on: ``json.loads``
    would tell the line of a syntax error but not of a well-formed record that lacks a field."""
    decoder, space = json.JSONDecoder(), re.compile(r"\s*")
    pos = space.match(text).end()
    if text[pos : pos + 1] != "[":
        raise ValueError(f"{name}: expected a JSON list")
    items: list[tuple[str, object]] = []
    line, counted = 1, 0
    pos = space.match(text, pos + 1).end()
    while text[pos : pos + 1] != "]":
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{name}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        line, counted = line + text.count("\n", counted, pos), pos
        items.append((f"{name}:{line}", value))
        pos = space.match(text, end).end()
        if text[pos : pos + 1] == ",":
            pos = space.match(text, pos + 1).end()
        elif text[pos : pos + 1] != "]":
            at = text.count("\n", 0, pos) + 1
            raise ValueError(f"{name}:{at}: expected ',' or ']' after the element that starts on line {line}")
    if text[pos + 1 :].strip():
        raise ValueError(f"{name}:{text.count(chr(10), 0, pos) + 1}: text after the end of the JSON list")
    return items


def _plain(value: object) -> object:
    """A parquet cell as plain Python: arrays to lists, NaN (a missing cell) to None."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def read_rows(path: Path) -> list[tuple[str, dict]]:
    """Every row of a table file as (where, row): a JSON list, JSON lines, tab-separated (``.tsv``) or
    parquet (``.parquet``, through pandas). ``where`` is "file:line" ("file row N" for parquet, 1-based), for
    errors that point at the row. Every row must be a JSON object."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    name = str(path)
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        rows = [(f"{name} row {i + 1}", {k: _plain(v) for k, v in row.items()})
                for i, row in enumerate(frame.to_dict(orient="records"))]
    elif path.suffix == ".tsv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter="\t")
            rows = [(f"{name}:{reader.line_num}", dict(row)) for row in reader]
    else:
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            rows = _json_list(text, name)
        else:
            rows = []
            for i, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append((f"{name}:{i}", json.loads(line)))
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{name}:{i}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    for where, row in rows:
        if not isinstance(row, dict):
            raise ValueError(  # noqa: TRY004 - a bad input file, reported like bad JSON
                f"{where}: expected a JSON object, got {type(row).__name__}")
    if not rows:
        raise ValueError(f"{name}: no rows")
    return rows


def _field(row: dict, where: str, *names: str) -> object:
    """The first of ``names`` the row has (the formats differ in case: ``Question`` / ``question``)."""
    for name in names:
        if row.get(name) is not None:
            return row[name]
    raise ValueError(f"{where}: no {' or '.join(repr(n) for n in names)} field")


_LETTERED = re.compile(r"\s*\(?([A-E])[.):]\s*(.*)", re.DOTALL)


def _unletter(options: list, where: str) -> list[str]:
    """Option texts without their "A. " / "(A) " prefixes, which must run A, B, ... when present."""
    texts = [str(o).strip() for o in options]
    matches = [_LETTERED.fullmatch(t) for t in texts]
    if not any(matches):
        return texts
    letters = [m.group(1) if m else None for m in matches]
    if letters != list(LETTERS[: len(texts)]):
        raise ValueError(f"{where}: options must all be lettered A, B, ... in order, or none (got {texts})")
    return [m.group(2).strip() for m in matches]


def _mc_answer(options: list[str], answer: object, where: str) -> int:
    """The answer's option index: a letter within the options, else the option's text."""
    text = str(answer).strip()
    if len(text) == 1 and text in LETTERS:
        if LETTERS.index(text) >= len(options):
            raise ValueError(f"{where}: answer {text} but only {len(options)} options")
        return LETTERS.index(text)
    return _answer_index(options, text, where)


def _unique_ids(records: list[dict], name: str) -> None:
    repeated = [i for i, n in Counter(r["id"] for r in records).items() if n > 1]
    if repeated:
        raise ValueError(f"{name}: {len(repeated)} ids are used by more than one record, "
                         f"e.g. {repeated[:_MISSING_SHOWN]}")


def _sti_scene(video: str) -> str:
    """STI-Bench's scene of a video with no scene column, as its analysis script infers it."""
    stem = Path(video).stem
    if "camera" in video:
        return "outdoor"
    if video.startswith("scene"):
        return "indoor"
    return "desktop" if stem.isdigit() and len(stem) == 6 else "unknown"


def _sti_candidates(row: dict, where: str) -> tuple[list[str], object]:
    """(option texts, answer) from either layout: qa.parquet's ``Candidates`` {letter: text} (a dict, a JSON
    string, or parquet's list of pairs) with ``Answer``, or VLMEvalKit's ``options`` list (a Python-literal
    string in the TSV) with ``answer``."""
    if row.get("Candidates") is not None:
        candidates = row["Candidates"]
        if isinstance(candidates, str):
            try:
                candidates = json.loads(candidates)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: Candidates is not JSON ({exc.msg})") from None
        if isinstance(candidates, list):
            candidates = dict(candidates)
        candidates = {k: v for k, v in candidates.items() if v is not None}
        letters = sorted(candidates)
        if letters != list(LETTERS[: len(letters)]) or not letters:
            raise ValueError(f"{where}: Candidates must be lettered A, B, ... (got {letters})")
        return [str(candidates[k]) for k in letters], _field(row, where, "Answer")
    options = _field(row, where, "options")
    if isinstance(options, str):
        try:
            options = ast.literal_eval(options)
        except (ValueError, SyntaxError):
            raise ValueError(f"{where}: options {options[:80]!r} is not a Python list literal") from None
    if not isinstance(options, (list, tuple)) or not options:
        raise ValueError(f"{where}: options must be a non-empty list")
    return _unletter(list(options), where), _field(row, where, "answer")


def read_sti_bench(path: Path, video_root: Path | None) -> list[dict]:
    """STI-Bench: ``qa.parquet`` (``Video``, ``ID``, ``Question``, ``Candidates``, ``Answer``, ``Task``,
    ``time_start``, ``time_end``, optional ``scene``) or VLMEvalKit's ``STIBench.tsv`` (lower-case
    ``video``, ``question``, ``options``, ``answer``, ``task_type``, ``time_start``, ``time_end``, ``index``).
    Videos are file names under ``video_root`` (STI-Bench's ``video/`` folder). The id is ``ID`` (``index``);
    where a file repeats one, STI-Bench's own key, the video and the id, is used instead."""
    path = Path(path)
    records = []
    for i, (where, row) in enumerate(read_rows(path)):
        video = str(_field(row, where, "Video", "video"))
        task = str(_field(row, where, "Task", "task_type"))
        if normalise(task) not in STI_TASKS:
            raise ValueError(f"{where}: unknown task {task!r}; known: {', '.join(sorted(STI_TASKS))}")
        options, answer = _sti_candidates(row, where)
        start, end = _field(row, where, "time_start"), _field(row, where, "time_end")
        question = f"From {start} s to {end} s. {_field(row, where, 'Question', 'question')}"
        file_id = row.get("ID", row.get("index"))
        records.append(
            _record(
                "sti_bench",
                str(file_id if file_id is not None else i),
                STI_TASKS[normalise(task)],
                question,
                options,
                _mc_answer(options, answer, where),
                video,
                task=task,
                scene=row.get("scene") or row.get("Scene") or _sti_scene(video),
                time_start=start,
                time_end=end,
            )
        )
    if len({r["id"] for r in records}) < len(records):
        for r in records:
            r["source_id"] = f"{r['video']}/{r['source_id']}"
            r["id"] = f"sti_bench/{r['source_id']}"
    _unique_ids(records, str(path))
    return _resolve_media(records, video_root, ("video",), str(path))


def _vsi_style(where: str, row: dict, index: int, *, benchmark: str, mc_types: tuple[str, ...],
               numeric_types: tuple[str, ...], video: str, letter: object,
               category_of: Callable[[str], str] = str) -> dict:
    """One VSI-Bench / VSTI-Bench row (they share the layout): numeric or multiple choice by question type."""
    qtype = str(_field(row, where, "question_type"))
    category = category_of(qtype)
    source_id = str(row["id"]) if row.get("id") is not None else str(index)
    question = str(_field(row, where, "question"))
    truth = _field(row, where, "ground_truth")
    extra = {"question_type": qtype, **({"scene_name": row["scene_name"]} if row.get("scene_name") else {})}
    if qtype in numeric_types:
        return _numeric_record(benchmark, source_id, category, question, truth, video, where, **extra)
    if qtype not in mc_types:
        raise ValueError(f"{where}: unknown question_type {qtype!r}; known: {', '.join(mc_types + numeric_types)}")
    options = _unletter(list(_field(row, where, "options")), where)
    return _record(benchmark, source_id, category, question, options,
                   _mc_answer(options, letter if letter is not None else truth, where), video,
                   ground_truth=truth, **extra)


def _vsi_category(question_type: str) -> str:
    """VSI-Bench reports the three direction difficulties as one type."""
    return "object_rel_direction" if question_type.startswith("object_rel_direction_") else question_type


def read_vsi_bench(path: Path, video_root: Path | None) -> list[dict]:
    """VSI-Bench's test split (``id``, ``dataset``, ``scene_name``, ``question_type``, ``question``,
    ``options`` "A. ...", ``ground_truth``: the letter for multiple choice, the number otherwise), as JSON
    lines or parquet. The video is ``{dataset}/{scene_name}.mp4`` under ``video_root``."""
    path = Path(path)
    records = []
    for i, (where, row) in enumerate(read_rows(path)):
        video = f"{_field(row, where, 'dataset')}/{_field(row, where, 'scene_name')}.mp4"
        records.append(_vsi_style(where, row, i, benchmark="vsi_bench", mc_types=VSI_MC_TYPES,
                                  numeric_types=VSI_NUMERIC_TYPES, video=video, letter=None,
                                  category_of=_vsi_category))
    _unique_ids(records, str(path))
    return _resolve_media(records, video_root, ("video",), str(path))


def read_vsti_bench(path: Path, video_root: Path | None) -> list[dict]:
    """VSTI-Bench's test split (``video_path``, ``question_type``, ``question``, ``options`` "A. ...",
    ``ground_truth``: the number, or the option's text for multiple choice, whose letter is ``mc_answer``),
    as JSON lines or parquet. Records without an ``id`` are numbered by their row (0-based)."""
    path = Path(path)
    records = []
    for i, (where, row) in enumerate(read_rows(path)):
        records.append(_vsi_style(where, row, i, benchmark="vsti_bench", mc_types=VSTI_MC_TYPES,
                                  numeric_types=VSTI_NUMERIC_TYPES, video=str(_field(row, where, "video_path")),
                                  letter=row.get("mc_answer")))
    _unique_ids(records, str(path))
    return _resolve_media(records, video_root, ("video",), str(path))
