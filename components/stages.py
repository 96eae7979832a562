"""Stage entry points: params in, component called, results logged, ``metrics.json``-style files out.

This is the thin layer between the plain components and the orchestrators: the CLI (and so
``dvc repro``) and the Prefect flows both call these functions, so the two can never disagree about what
a stage does. Only this layer (through ``components.tracking``) talks to MLflow.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

from components.config import Params, flatten
from components.curation.clip import ClipResult
from components.curation.run import curate_clips, finalize
from components.curation.schema import SPLITS
from components.io import write_json
from components.quality import GateFailed, GateReport, run_data_gate
from components.scenes import render_scenes
from components.sources.clip import frame_name, list_clips, read_rgb
from components.tracking import RunHandle, stage_run

log = logging.getLogger(__name__)


def log_scenes(run: RunHandle, params: Params, clips: list[Path], seconds: float) -> dict:
    frames = len(clips) * params.scenes.num_frames
    metrics = {"clips": len(clips), "stereo_frames": frames, "render_s": seconds,
               "render_frames_per_s": frames / seconds if seconds else 0.0}
    run.log_metrics(metrics)
    for clip in clips[: params.tracking.example_frames]:
        run.log_image(read_rgb(clip, f"left/{frame_name(0)}"), f"examples/{clip.name}_left_000000.png")
    return metrics


def scenes(params: Params, out: Path, *, root: Path, metrics_file: Path | None = None, progress: bool = True) -> list[Path]:
    """Render the synthetic stereo clips into ``out``."""
    with stage_run("scenes", params.tracking, root, params={"scenes": asdict(params.scenes)}) as run:
        start = time.perf_counter()
        clips = render_scenes(params.scenes, out, workers=params.curation.workers, progress=progress)
        metrics = log_scenes(run, params, clips, time.perf_counter() - start)
    if metrics_file:
        write_json(metrics_file, metrics)
    return clips


def curation_metrics(stats: dict) -> dict[str, float]:
    """The headline numbers of ``stats.json`` as flat MLflow metrics."""
    keep = {k: stats[k] for k in ("n_clips", "n_curated_clips", "n_quarantined", "records", "questions",
                                   "label_agreement", "object_center_error_m", "performance")}
    return {k: float(v) for k, v in flatten(keep).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def log_curation(run: RunHandle, params: Params, clips_root: Path, out: Path, stats: dict) -> None:
    run.log_metrics(curation_metrics(stats))
    run.set_tags({"mllm4d.clips_root": str(clips_root)})
    for split in SPLITS:
        run.log_dataset(out / f"{split}.jsonl", name=f"curated-{split}", context=split, role="output")
    for name in ("stats.json", "quarantine.json"):
        run.log_artifact(out / name)
    for som in sorted((out / "som").glob("*.png"))[: params.tracking.example_frames]:
        run.log_artifact(som, "examples/set_of_marks")


def curate(params: Params, clips_root: Path, out: Path, *, root: Path, metrics_file: Path | None = None,
           progress: bool = True, results: list[ClipResult] | None = None) -> dict:
    """Curate ``clips_root`` into ``out``; ``results`` lets a flow pass clips it already mapped as tasks."""
    with stage_run("curate", params.tracking, root, params={"curation": asdict(params.curation)}) as run:
        start = time.perf_counter()
        if results is None:
            clips = list_clips(clips_root)
            if not clips:
                raise ValueError(f"no clips found under {clips_root} (a clip is a folder with meta.json and left/)")
            results = curate_clips(clips, params.curation, out, progress=progress)
        stats = finalize(results, params.curation, out, seconds=time.perf_counter() - start)
        log_curation(run, params, clips_root, out, stats)
    if metrics_file:
        write_json(metrics_file, curation_metrics(stats))
    return stats


def validate(params: Params, curated: Path, report_dir: Path, *, root: Path) -> GateReport:
    """The data gate: a Great Expectations suite on the curated table; raises ``GateFailed`` on failure."""
    with stage_run("validate_data", params.tracking, root, params={"quality": asdict(params.quality)}) as run:
        report = run_data_gate(curated, params.quality, report_dir, raise_on_failure=False)
        run.log_metrics({"gate_success": float(report.success), "gate_failed_expectations": float(len(report.failed)),
                         "gate_records": float(report.n_records)})
        run.log_artifact(report.report_json, "data_gate")
        if report.data_docs is not None:
            run.log_artifacts(report.data_docs.parent if report.data_docs.is_file() else report.data_docs,
                              "data_gate/data_docs")
        if not report.success:
            raise GateFailed(report)
    return report
