"""The curation component: clips -> curated splits, exports, stats and a quarantine report.

``curate_clip`` (per clip, in ``clip.py``) is the fan-out unit; ``finalize`` gathers the results and
writes every output atomically. ``curate`` chains the two with a process pool for the CLI and DVC; the
Prefect flow maps ``curate_clip`` as tasks and calls the same ``finalize``.
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
from components.curation.schema import SPLITS
from components.io import write_json, write_jsonl
from components.sources.clip import list_clips

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
    """Write the splits, the exports, ``quarantine.json`` and ``stats.json``; return the stats plus
    ``performance`` (timings, frames/s), which is not written here."""
    out_dir = Path(out_dir)
    good = [r for r in results if r.error is None]
    bad = [r for r in results if r.error is not None]
    write_json(out_dir / "quarantine.json", {
        "n_skipped": len(bad),
        "clips": [{"clip_id": r.clip_id, "clip_dir": r.clip_dir, "reason": r.error} for r in bad],
    })
    if not good:
        raise ValueError(f"no clip could be curated ({len(bad)} quarantined): see {out_dir / 'quarantine.json'}")
    records = build_records(label_questions(good, cfg), cfg)
    check_no_leakage(records)
    for split in SPLITS:
        write_jsonl(out_dir / f"{split}.jsonl", records[split])
    exports = export_all(records, out_dir)

    timings = Counter()
    for r in good:
        timings.update(r.timings)
    frames = sum(r.stereo_frames for r in good)
    errors = np.array([e for r in good for e in r.center_errors_m])
    all_records = [r for rs in records.values() for r in rs]
    stats = {
        "n_clips": len(results),
        "n_curated_clips": len(good),
        "n_quarantined": len(bad),
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
    # Timings vary run to run: they stay out of stats.json so the curated folder is byte-reproducible
    # (``dvc repro`` on a fresh clone gives the hashes in dvc.lock); the stage writes them as metrics.
    performance = {
        "timing_s": {k: round(v, 3) for k, v in sorted(timings.items())},
        "stereo_frames": frames,
        # Per-clip time summed over workers: frames per second of one core.
        "frames_per_s_per_core": frames / timings["total"] if timings["total"] else None,
        "stereo_only_frames_per_s": frames / timings["stereo"] if timings["stereo"] else None,
        "wall_s": seconds,
    }
    write_json(out_dir / "stats.json", stats)
    return stats | {"performance": performance}


def curate(clips_root: Path, cfg: CurationConfig, out_dir: Path, *, progress: bool = True) -> dict:
    start = time.perf_counter()
    clips = list_clips(clips_root)
    if not clips:
        raise ValueError(f"no clips found under {clips_root} (a clip is a folder with meta.json and left/)")
    results = curate_clips(clips, cfg, Path(out_dir), progress=progress)
    return finalize(results, cfg, Path(out_dir), seconds=time.perf_counter() - start)
