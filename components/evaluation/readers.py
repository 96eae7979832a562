"""Benchmark readers: external annotation files -> the project's evaluation record shape.

Every reader returns dicts with ``id`` (prefixed by the benchmark, unique across its files),
``benchmark``, ``source_id`` (the file's own id), ``category``, ``answer_type`` ("mc"), ``question``,
``options`` (texts), ``answer`` (letter), ``answer_text``, ``video``, ``frame_paths`` ([]: frames are
sampled from ``video`` by the caller), ``som_image``, ``regions`` ([]) and ``prompt_variant``.

Media: with a root given, ``video`` (and ``som_image``) become paths under it and every one must
exist, or the reader raises a ``ValueError`` that says how many are missing and lists the first
few: a benchmark scored on the videos that happened to be downloaded is a different benchmark. With
``None`` the records are read for text-only use (``video`` keeps the file's own reference).

Where the records carry no category of the kind the reports group by, it is derived, documented here:

* VLM4D: ``question_type`` is "multiple-choice" for every shipped record, so the category is VLM4D's
  reporting perspective, read from the video's path: ``egocentric`` (Ego4D), ``exocentric`` (DAVIS,
  YouTube-VOS), ``synthetic``. ``question_type`` is kept on the record.
* Ego-ST: the question family and direction, from the question text: ``landmark_forward``,
  ``landmark_reverse``, ``direction_forward``, ``direction_reverse``, ``action_reverse`` (forward =
  "to reach your destination", reverse = "to ... starting point").
* R4D-Bench: its task, by name or abbreviation, onto the schema's categories (``TASKS``).
"""

from __future__ import annotations

import json
import logging
import re
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
                    missing.append(str(path))
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
