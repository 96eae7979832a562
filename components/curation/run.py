"""The curation component: clips -> curated splits, exports, stats and a quarantine report.

``curate_clip`` (per clip, in ``clip.py``) is the fan-out unit and writes nothing; ``finalize`` gathers the
results and writes every output into a temporary folder that replaces the output folder whole. ``curate``
chains the two with a process pool for the CLI and DVC; the Prefect flow maps ``curate_clip`` as tasks and
calls the same ``finalize``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from components.config import CurationConfig
from components.curation.assemble import (
    build_records,
    check_no_leakage,
    label_agreement,
    label_questions,
    letter_counts,
)
from components.curation.clip import ClipResult, curate_clip
from components.curation.exports import export_all
from components.curation.regions import som_relpath
from components.curation.schema import SPLITS
from components.io import atomic_dir, remove_stale_temporaries, write_bytes, write_json, write_jsonl
from components.sources.clip import ClipError, list_clips

log = logging.getLogger(__name__)


def _single_threaded() -> None:
    """Pool workers: one OpenCV thread each, so two workers on two cores do not oversubscribe."""
    import cv2

    cv2.setNumThreads(1)


def curate_clips(clips: list[Path], cfg: CurationConfig, out_dir: Path, *, progress: bool = True) -> list[ClipResult]:
    work = partial(curate_clip, cfg=cfg, out_dir=out_dir)
    bar = partial(tqdm, total=len(clips), desc="curate", unit="clip", disable=not progress)
    if cfg.workers <= 1 or len(clips) <= 1:
        return [work(c) for c in bar(clips)]
    # spawn, not fork: forking a process whose OpenCV/BLAS threads are running can deadlock the children.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(cfg.workers, os.cpu_count() or 1), mp_context=context,
                             initializer=_single_threaded) as pool:
        return list(bar(pool.map(work, clips)))


def finalize(results: list[ClipResult], cfg: CurationConfig, out_dir: Path, *, seconds: float | None = None) -> dict:
    """Write the splits, the exports, the Set-of-Marks images, ``quarantine.json`` and ``stats.json``; return
    the stats plus ``performance`` (timings, frames/s), which is not written here.

    Everything is written into a temporary folder beside ``out_dir`` that then replaces ``out_dir`` whole,
    so a kill at any moment leaves either the previous output or the new one, never a mix, and a failure
    (every clip quarantined included) leaves the previous output untouched.
    """
    out_dir = Path(out_dir)
    remove_stale_temporaries(out_dir)  # a killed run's folder, even when this run fails below
    results = _refuse_duplicate_ids(results)
    good = [r for r in results if r.error is None]
    bad = [r for r in results if r.error is not None]
    if not good:
        raise ValueError(_nothing_curated(bad, out_dir))
    records = build_records(label_questions(good, cfg), cfg)
    check_no_leakage(records)
    with atomic_dir(out_dir) as tmp:
        for r in good:
            if r.som_png is not None:
                write_bytes(tmp / som_relpath(r.clip_id), r.som_png)
        write_json(tmp / "quarantine.json", {
            "n_skipped": len(bad),
            "clips": [{"clip_id": r.clip_id, "clip_dir": r.clip_dir, "reason": r.error} for r in bad],
        })
        for split in SPLITS:
            write_jsonl(tmp / f"{split}.jsonl", records[split])
        exports = export_all(records, out_dir, write_to=tmp)
        stats = _stats(results, good, records, exports)
        write_json(tmp / "stats.json", stats)
    return stats | {"performance": _performance(good, seconds)}


def _refuse_duplicate_ids(results: list[ClipResult]) -> list[ClipResult]:
    """Quarantine every clip whose id an earlier clip already has: the two would share record ids and
    one Set-of-Marks file."""
    first: dict[str, str] = {}
    for r in results:
        if r.error is not None:
            continue
        if r.clip_id in first:
            r.error = str(ClipError(r.clip_dir, "meta.json", f"clip_id {r.clip_id!r} is already the id of "
                                    f"{first[r.clip_id]}"))
            log.warning("quarantined %s", r.error)
        else:
            first[r.clip_id] = r.clip_dir
    return results


def _nothing_curated(bad: list[ClipResult], out_dir: Path, shown: int = 5) -> str:
    """The error when every clip was quarantined: the first reasons, so nothing needs to be written."""
    reasons = "\n".join(f"  {r.error}" for r in bad[:shown])
    more = f"\n  ... and {len(bad) - shown} more (logged above)" if len(bad) > shown else ""
    return (f"no clip could be curated ({len(bad)} quarantined); {out_dir} was left as it was:\n"
            f"{reasons}{more}")


def _stats(results: list[ClipResult], good: list[ClipResult], records: dict[str, list[dict]],
           exports: dict[str, str]) -> dict:
    errors = np.array([e for r in good for e in r.center_errors_m])
    all_records = [r for rs in records.values() for r in rs]
    return {
        "n_clips": len(results),
        "n_curated_clips": len(good),
        "n_quarantined": len(results) - len(good),
        "records": {s: len(records[s]) for s in SPLITS},
        "questions": {s: len({r["qid"] for r in records[s]}) for s in SPLITS},
        "clips_per_split": {s: len({r["clip_id"] for r in records[s]}) for s in SPLITS},
        "by_category": dict(sorted(Counter(r["category"] for r in all_records).items())),
        "by_answer_type": dict(Counter(r["answer_type"] for r in all_records)),
        "by_prompt_variant": dict(Counter(r["prompt_variant"] for r in all_records)),
        "letters": {s: letter_counts(records[s]) for s in SPLITS},
        "label_agreement": label_agreement(good),
        "object_center_error_m": {
            "median": float(np.median(errors)) if errors.size else None,
            "p90": float(np.percentile(errors, 90)) if errors.size else None,
        },
        "exports": exports,
    }


def _performance(good: list[ClipResult], seconds: float | None) -> dict:
    # Timings vary run to run: they stay out of stats.json so the curated folder is byte-reproducible
    # (``dvc repro`` on a fresh clone gives the hashes in dvc.lock); the stage writes them as metrics.
    timings = Counter()
    for r in good:
        timings.update(r.timings)
    frames = sum(r.stereo_frames for r in good)
    return {
        "timing_s": {k: round(v, 3) for k, v in sorted(timings.items())},
        "stereo_frames": frames,
        # Per-clip time summed over workers: frames per second of one core.
        "frames_per_s_per_core": frames / timings["total"] if timings["total"] else None,
        "stereo_only_frames_per_s": frames / timings["stereo"] if timings["stereo"] else None,
        "wall_s": seconds,
    }


def curate(clips_root: Path, cfg: CurationConfig, out_dir: Path, *, progress: bool = True) -> dict:
    start = time.perf_counter()
    clips = list_clips(clips_root)
    if not clips:
        raise ValueError(f"no clips found under {clips_root} (a clip is a folder with meta.json and left/)")
    results = curate_clips(clips, cfg, Path(out_dir), progress=progress)
    return finalize(results, cfg, Path(out_dir), seconds=time.perf_counter() - start)
