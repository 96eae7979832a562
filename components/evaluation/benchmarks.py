"""External benchmarks end to end: an annotation file (``readers``) -> a checkpoint's answers or a file of
someone's answers -> the same scores and report as the project's own bench (``harness``, ``metrics``,
``report``: metrics.json with ``model.overall``, report.md, per-category tables, clip-level intervals).

Two sources of answers:

* a checkpoint (``model_dir``): each record's video is sampled as the bench's clips are (first and last
  frame kept, uniform between: ``inputs.frame_indices``, ``model.num_frames`` of them), decoded with
  OpenCV and cached as PNGs under ``out/frames/``; the answers come from the bench's own generation
  (``load_model``, ``make_generate_fn``). The blind and shuffled-video controls run only when asked
  (``controls``), since each one costs a second pass of generation over the whole benchmark.
* a predictions file: a JSON list or JSON lines of ``{"id", "response"}`` (extra fields ignored), the
  format of MLLM-4D's released VLM4D outputs. A prediction's ``id`` may be the record's id
  ("vlm4d/real_mc/validation_1"), its ``source_id`` ("real_mc/validation_1") or the annotation file's own
  id ("validation_1"). A prediction that matches no record, or two for one record, is an error; so is a
  record without a prediction, unless ``missing_as_wrong`` scores it as an empty (wrong) answer, which
  ``metrics.json`` then counts under ``benchmark.missing_predictions``.

Answers are read by ``answers.extract_answer`` (deterministic, no LLM judge). On MLLM-4D's released VLM4D
files this agrees with their Qwen-judge scorer, because their inference already reduced every response
to a bare letter (or to "" when it found none); ``docs/benchmarks.md`` gives the measured numbers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from components.config import EvaluateConfig, ModelConfig
from components.evaluation.harness import GenerateFn
from components.evaluation.harness import evaluate as run_harness
from components.evaluation.readers import (
    read_ego_st,
    read_r4d_bench,
    read_rows,
    read_sti_bench,
    read_vlm4d,
    read_vsi_bench,
    read_vsti_bench,
)
from components.evaluation.report import EvalResult, write_report
from components.io import atomic_path, write_json

log = logging.getLogger(__name__)

Reader = Callable[[Path, Path | None], list[dict]]
# --benchmark name -> reader; "own" (the curated bench) is ``checkpoint.evaluate_checkpoint``'s.
BENCHMARKS: dict[str, Reader] = {
    "vlm4d": read_vlm4d,
    "ego_st": read_ego_st,
    "r4d": read_r4d_bench,
    "sti": read_sti_bench,
    "vsi": read_vsi_bench,
    "vsti": read_vsti_bench,
}
_SHOWN = 5  # ids quoted in an error


def read_predictions(path: Path) -> list[tuple[str, str, str]]:
    """(where, id, response) for every row of a predictions file (JSON list or JSON lines); ``where`` is
    "file:line". A row without an ``id`` or a ``response``, or with a response that is not text (a number
    is taken as its text), is an error naming its line."""
    rows = []
    for where, row in read_rows(Path(path)):
        if row.get("id") is None or "response" not in row:
            raise ValueError(f"{where}: a prediction needs 'id' and 'response' (got fields {sorted(row)})")
        response = row["response"]
        if isinstance(response, bool) or not isinstance(response, (str, int, float)):
            raise ValueError(  # noqa: TRY004 - a bad input file, reported like bad JSON
                f"{where}: 'response' must be text, got {type(response).__name__} {response!r:.60}")
        rows.append((where, str(row["id"]), str(response)))
    return rows


def _names(records: list[dict]) -> dict[str, int]:
    """Every name a prediction may give a record by -> its index; a name two records share is dropped."""
    owners: dict[str, set[int]] = {}
    for i, r in enumerate(records):
        for name in (r["id"], r["source_id"], r["source_id"].rsplit("/", 1)[-1]):
            owners.setdefault(name, set()).add(i)
    return {name: next(iter(who)) for name, who in owners.items() if len(who) == 1}


def match_predictions(records: list[dict], predictions: list[tuple[str, str, str]], *, source: Path,
                      annotations: Path, missing_as_wrong: bool = False) -> tuple[list[str], list[str]]:
    """(one output per record, in order; the ids of the records that had no prediction). Missing ones are
    "" with ``missing_as_wrong``, an error otherwise; unknown and repeated ids are always errors."""
    names = _names(records)
    outputs: list[str | None] = [None] * len(records)
    first: dict[int, str] = {}
    unknown = []
    for where, pid, response in predictions:
        i = names.get(pid)
        if i is None:
            unknown.append(pid)
        elif i in first:
            raise ValueError(f"{where}: a second prediction for {records[i]['id']} (the first is at {first[i]})")
        else:
            outputs[i], first[i] = response, where
    if unknown:
        raise ValueError(
            f"{source}: {len(unknown)} of {len(predictions)} predictions match no record of {annotations} "
            f"({len(records)} records), e.g. {unknown[:_SHOWN]}. An id is the record's id "
            f"({records[0]['id']!r}), its source id ({records[0]['source_id']!r}) or the annotation file's own id")
    missing = [records[i]["id"] for i, o in enumerate(outputs) if o is None]
    if missing and not missing_as_wrong:
        raise ValueError(
            f"{source}: {len(missing)} of {len(records)} records of {annotations} have no prediction, e.g. "
            f"{missing[:_SHOWN]}. Predict them, or score them as wrong with missing_as_wrong (--missing-as-wrong)")
    if missing:
        log.warning("%d of %d records have no prediction: scored as wrong", len(missing), len(records))
    return [o if o is not None else "" for o in outputs], missing


def _decode(video: Path, wanted: list[int] | None) -> tuple[dict[int, object], int]:
    """The frames at ``wanted`` (BGR arrays) and how many frames were decoded; every frame is grabbed in
    order, because seeking lands on the wrong frame in some codecs. ``wanted=None`` only counts."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    targets = set(wanted or ())
    last = max(targets) if wanted is not None else math.inf
    got, n = {}, 0
    try:
        while n <= last and capture.grab():
            if n in targets:
                ok, image = capture.retrieve()
                if not ok:
                    raise ValueError(f"{video}: frame {n} cannot be decoded")
                got[n] = image
            n += 1
    finally:
        capture.release()
    return got, n


def sample_frames(video: Path, num_frames: int, cache: Path) -> dict:
    """``num_frames`` frames of ``video`` picked as the bench's are (``inputs.frame_indices``): their
    indices (``frames``), times in seconds from the stream's frame rate (``timestamps``) and PNG paths
    under ``cache`` (``frame_paths``). The cache is reused while the video's size and modification time and
    ``num_frames`` are unchanged."""
    import cv2

    from components.models.inputs import frame_indices

    video, cache = Path(video), Path(cache)
    stat = video.stat()
    key = {"video": str(video), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "num_frames": num_frames}
    meta_path = cache / "frames.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key and all(Path(p).is_file() for p in meta["frame_paths"]):
            return {k: meta[k] for k in ("frames", "timestamps", "frame_paths")}
    capture = cv2.VideoCapture(str(video))
    opened = capture.isOpened()
    fps, count = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    if not opened:
        raise ValueError(f"{video}: OpenCV cannot open the video")
    if not fps > 0:
        raise ValueError(f"{video}: the stream has no frame rate, so the frames' times are unknown")
    if count < 1:  # no count in the header: count by decoding
        count = _decode(video, None)[1]
    if num_frames > count:
        raise ValueError(f"{video}: {count} frames, fewer than model.num_frames={num_frames}")
    wanted = frame_indices(count, num_frames)
    got, decoded = _decode(video, wanted)
    if len(got) < len(wanted):  # the header over-counted: pick again over the frames that exist
        if num_frames > decoded:
            raise ValueError(f"{video}: {decoded} decodable frames, fewer than model.num_frames={num_frames}")
        wanted = frame_indices(decoded, num_frames)
        got, _ = _decode(video, wanted)
    paths = []
    for index in wanted:
        path = cache / f"{index:06d}.png"
        with atomic_path(path) as tmp:
            if not cv2.imwrite(str(tmp), got[index]):
                raise ValueError(f"{video}: frame {index} could not be written to {path}")
        paths.append(str(path))
    sampled = {"frames": wanted, "timestamps": [round(i / fps, 6) for i in wanted], "frame_paths": paths}
    write_json(meta_path, {"key": key, "fps": fps, "frame_count": count, **sampled})  # last: marks the cache whole
    return sampled


def _cache_dir(video: str, media_root: Path, cache_root: Path) -> Path:
    """The video's frame folder: its path under the media root, so the cache reads like the dataset."""
    try:
        return cache_root / Path(video).relative_to(media_root)
    except ValueError:
        return cache_root / f"{Path(video).name}-{hashlib.sha1(video.encode()).hexdigest()[:10]}"


def attach_frames(records: list[dict], num_frames: int, media_root: Path, cache_root: Path, *,
                  progress: bool = True) -> None:
    """Set ``frames``, ``timestamps`` and ``frame_paths`` on every record from its video (decoded once per
    video); a video that cannot be sampled is an error naming a record that uses it."""
    by_video: dict[str, list[dict]] = {}
    for r in records:
        by_video.setdefault(r["video"], []).append(r)
    for video, group in tqdm(by_video.items(), desc="sample frames", unit="video", disable=not progress):
        try:
            sampled = sample_frames(Path(video), num_frames, _cache_dir(video, Path(media_root), Path(cache_root)))
        except (ValueError, OSError) as exc:
            others = f" and {len(group) - 1} more records" if len(group) > 1 else ""
            raise ValueError(f"record {group[0]['id']}{others}: {exc}") from exc
        for r in group:
            r.update(sampled)


def _recorded(outputs: list[str], records: list[dict]) -> GenerateFn:
    """A ``GenerateFn`` that answers with the given outputs, so predictions files and checkpoints are scored
    and summarised by the same harness call."""
    by_id = {r["id"]: o for r, o in zip(records, outputs, strict=True)}

    def generate(batch: list[dict], blind: bool) -> list[str]:
        return [by_id[r["id"]] for r in batch]

    return generate


def _generate(records: list[dict], model_dir: Path, media_root: Path, out: Path, eval_cfg: EvaluateConfig,
              model_cfg: ModelConfig, *, controls: bool, progress: bool) -> EvalResult:
    from components.evaluation.checkpoint import evenly_spaced
    from components.models import load_model
    from components.models.generation import make_generate_fn

    records = evenly_spaced(records, eval_cfg.max_records)
    attach_frames(records, model_cfg.num_frames, media_root, Path(out) / "frames", progress=progress)
    model, processor = load_model(model_dir, model_cfg)
    generate = make_generate_fn(model, processor, model_cfg, max_new_tokens=eval_cfg.max_new_tokens)
    sees_video = not model_cfg.blank_frames
    result = run_harness(
        records, generate, batch_size=eval_cfg.batch_size,
        blind_baseline=controls and eval_cfg.blind_baseline and sees_video,
        shuffled_baseline=controls and eval_cfg.shuffled_baseline and sees_video,
        shuffle_seed=eval_cfg.shuffle_seed, n_boot=eval_cfg.bootstrap_samples, progress=progress)
    result.metrics["input"] = "video" if sees_video else "blank frames"
    return result


def evaluate_benchmark(benchmark: str, annotations: Path, out: Path, *, eval_cfg: EvaluateConfig,
                       model_cfg: ModelConfig, media_root: Path | None = None, model_dir: Path | None = None,
                       predictions: Path | None = None, missing_as_wrong: bool = False, controls: bool = False,
                       progress: bool = True) -> EvalResult:
    """Score ``model_dir`` or ``predictions`` (exactly one) on ``benchmark``'s ``annotations`` and write the
    report into ``out``. A checkpoint needs ``media_root``, the folder the annotation's videos are under;
    with predictions it is optional (given, every video must be there, as the readers check).
    ``eval_cfg.max_records`` subsamples a checkpoint's run (evenly spaced), never a predictions file."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
    if (model_dir is None) == (predictions is None):
        raise ValueError(f"{benchmark}: give a model folder or a predictions file (exactly one)")
    if model_dir is not None and media_root is None:
        raise ValueError(f"{benchmark}: a model needs the videos: give the media root (--media-root), the folder "
                         f"the video paths of {annotations} are relative to (docs/benchmarks.md)")
    records = BENCHMARKS[benchmark](Path(annotations), Path(media_root) if media_root is not None else None)
    missing: list[str] = []
    if predictions is not None:
        outputs, missing = match_predictions(records, read_predictions(predictions), source=Path(predictions),
                                             annotations=Path(annotations), missing_as_wrong=missing_as_wrong)
        result = run_harness(records, _recorded(outputs, records), batch_size=len(records), blind_baseline=False,
                             shuffled_baseline=False, n_boot=eval_cfg.bootstrap_samples, progress=False)
        result.metrics["input"] = f"predictions from {Path(predictions).name}"
    else:
        result = _generate(records, Path(model_dir), Path(media_root), Path(out), eval_cfg, model_cfg,
                           controls=controls, progress=progress)
    per_category = [a["value"] for a in result.metrics["model"]["per_category"].values() if a is not None]
    result.metrics["benchmark"] = {
        "name": benchmark,
        "annotations": str(annotations),
        "media_root": str(media_root) if media_root is not None else None,
        "model": str(model_dir) if model_dir is not None else None,
        "predictions": str(predictions) if predictions is not None else None,
        "records": len(result.predictions),
        "missing_predictions": len(missing),
        "missing_examples": missing[:_SHOWN],
        # VSI-Bench's published Avg is this unweighted mean over its question types; the others publish the
        # micro average, ``model.overall``.
        "category_macro": {"value": sum(per_category) / len(per_category), "categories": len(per_category)},
    }
    write_report(result, Path(out), title=f"{benchmark} ({Path(annotations).name}): {model_dir or predictions}")
    return result
