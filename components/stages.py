"""Stage entry points: params in, component called, results logged, ``metrics.json``-style files out.

This is the thin layer between the plain components and the orchestrators: the CLI (and so
``dvc repro``) and the Prefect flows both call these functions, so the two can never disagree about what
a stage does. Only this layer (through ``components.tracking``) talks to MLflow. Each stage imports its
components inside its function, so the code a stage runs is its function's import closure, which
``tests/test_dvc_deps.py`` checks against the stage's ``deps`` in ``dvc.yaml``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from components.config import Params, ScenesConfig, TrainingGateConfig, flatten
from components.io import write_json
from components.tracking import RunHandle, stage_run

if TYPE_CHECKING:
    from components.curation.clip import ClipResult
    from components.quality import GateReport

log = logging.getLogger(__name__)


def log_scenes(run: RunHandle, params: Params, clips: list[Path], seconds: float) -> dict:
    from components.sources.clip import frame_name, read_meta, read_rgb

    frames = sum(read_meta(clip).num_frames for clip in clips)
    metrics = {"clips": len(clips), "stereo_frames": frames, "render_s": seconds,
               "render_frames_per_s": frames / seconds if seconds else 0.0}
    run.log_metrics(metrics)
    for clip in clips[: params.tracking.example_frames]:
        run.log_image(read_rgb(clip, f"left/{frame_name(0)}"), f"examples/{clip.name}_left_000000.png")
    return metrics


def scenes(params: Params, out: Path, *, root: Path, metrics_file: Path | None = None, progress: bool = True,
           render: Callable[[ScenesConfig, Path], list[Path]] | None = None) -> list[Path]:
    """The clips every later stage reads, into ``out``: rendered (``source.format: synthetic``, the embedded
    default; ``render`` lets a flow fan the clips out as tasks) or cut from a real stereo dataset
    (``source.root``, read by ``components.sources``), which then replace ``out`` whole."""
    from components.scenes import render_scenes

    source = params.source
    with stage_run("scenes", params.tracking, root,
                   params={"source": asdict(source), "scenes": asdict(params.scenes)}) as run:
        start = time.perf_counter()
        if source.format != "synthetic":
            from components.io import atomic_dir
            from components.sources.clip import list_clips
            from components.sources.ingest import ingest

            with atomic_dir(out) as tmp:
                ingest(source.format, Path(source.root), tmp, window=source.window, stride=source.stride,
                       poses=source.poses)
            clips = list_clips(out)
        elif render is None:
            clips = render_scenes(params.scenes, out, workers=params.curation.workers, progress=progress)
        else:
            clips = render(params.scenes, out)
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
    from components.curation.schema import SPLITS

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
    from components.curation.run import curate_clips, finalize
    from components.sources.clip import list_clips

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
    from components.quality import GateFailed, run_data_gate

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


def prior_gate(params: Params, curated: Path, report_dir: Path, *, root: Path):
    """The language-prior gate: text-only guessers fitted on sft must not beat random on the bench by more
    than ``params.prior`` allows; raises ``PriorGateFailed`` (after writing and logging its report)."""
    from components.quality.prior import PriorGateFailed, run_prior_gate

    with stage_run("prior_gate", params.tracking, root, params={"prior": asdict(params.prior)}) as run:
        report = run_prior_gate(curated, params.prior, report_dir, raise_on_failure=False)
        metrics = {"gate_success": float(report.success), "gate_failures": float(len(report.failures)),
                   "macro_gap": report.macro_gap if report.macro_gap is not None else float("nan")}
        for c in report.categories:
            metrics |= {f"gap.{c.category}": c.gap, f"random.{c.category}": c.random,
                        **{f"accuracy.{c.category}.{g}": v for g, v in c.accuracy.items()}}
        run.log_metrics(metrics)
        run.log_artifact(report.report_json, "prior_gate")
        run.log_artifact(report.report_md, "prior_gate")
        if not report.success:
            raise PriorGateFailed(report)
    return report


def base_model(params: Params, curated: Path, out: Path, *, root: Path) -> Path:
    """Build the tiny model (tokenizer trained on the curated text) or validate a checkpoint source."""
    from components.curation.schema import read_records
    from components.models import build_base_model, tokenizer_corpus

    with stage_run("base_model", params.tracking, root, params={"model": asdict(params.model)}) as run:
        texts = tokenizer_corpus(read_records(Path(curated) / "sft.jsonl", split="sft"), params.model)
        model_dir = build_base_model(params.model, texts, out)
        run.log_artifact(model_dir / "meta.json", "base_model")
        meta = json.loads((model_dir / "meta.json").read_text())
        run.log_metrics({f"params.{k}": float(v) for k, v in meta.get("parameters", {}).items()
                         if isinstance(v, (int, float))})
    return model_dir


def sft(params: Params, curated: Path, base: Path, out: Path, *, root: Path, progress: bool = True,
        stage: str = "sft"):
    """SFT on the sft split, then the training gate on a few bench records."""
    from components.training.sft import run_sft

    with stage_run(stage, params.tracking, root, params={"sft": asdict(params.sft), "model": asdict(params.model)}) as run:
        run.log_dataset(Path(curated) / "sft.jsonl", name="curated-sft", context="training")
        result = run_sft(params.sft, params.model, curated, base, out, report_to="mlflow", progress=progress)
        run.log_metrics({"train_seconds": result.seconds, "train_samples_per_s": result.samples_per_s,
                         "final_loss": result.losses[-1] if result.losses else float("nan")})
        run.log_artifact(Path(out) / "meta.json", "sft")
        gate(run, params, curated, result.losses, result.model_dir, params.sft.gate, Path(out), stage)
    return result


def text_only_params(params: Params) -> Params:
    """The text-only-trained control's params: the same recipe with every frame blanked."""
    return replace(params, model=replace(params.model, blank_frames=True))


def sft_text_only(params: Params, curated: Path, base: Path, out: Path, *, root: Path, progress: bool = True):
    """The text-only-trained control: SFT with the same recipe on blank frames (time cue kept)."""
    return sft(text_only_params(params), curated, base, out, root=root, progress=progress, stage="sft_text_only")


def gate(run: RunHandle, params: Params, curated: Path, losses: list[float], model_dir: Path,
         gate_cfg: TrainingGateConfig, out: Path, stage: str, *, rewards: list[float] | None = None,
         reward_tolerance: float | None = None) -> dict:
    """The training gate after a training stage: report logged, ``TrainingGateFailed`` when it fails.
    ``rewards`` (GRPO) replaces "the loss fell" by "the mean reward held"."""
    from components.curation.schema import read_records
    from components.training.gate import TrainingGateFailed, training_gate

    bench = read_records(Path(curated) / "bench.jsonl", split="bench")
    report = training_gate(losses, model_dir, gate_cfg, params.model, bench, out / "gate.json", raise_on_failure=False,
                           rewards=rewards, reward_tolerance=reward_tolerance)
    run.log_artifact(out / "gate.json", stage)
    run.log_metrics({"gate_success": float(report["success"]),
                     "gate_format_valid": report["checks"]["answers_parse"].get("format_valid_rate", 0.0)})
    if not report["success"]:
        raise TrainingGateFailed(report)
    return report


def evaluate(params: Params, curated: Path, model_dir: Path, out: Path, *, name: str, root: Path,
             register: bool = False, progress: bool = True, text_only: Path | None = None) -> dict:
    """Evaluate a checkpoint on the bench split with its controls (blank frames, shuffled video and, given
    the text-only-trained checkpoint's ``predictions.jsonl`` as ``text_only``, that one and the headline);
    optionally register it as ``challenger``. ``params.model.blank_frames`` evaluates on blank frames."""
    from components.evaluation.checkpoint import evaluate_checkpoint
    from components.tracking.registry import register_model

    with stage_run(f"evaluate_{name}", params.tracking, root, params={"evaluate": asdict(params.evaluate)},
                   tags={"mllm4d.checkpoint": name}) as run:
        run.log_dataset(Path(curated) / "bench.jsonl", name="curated-bench", context="evaluation")
        result = evaluate_checkpoint(params.evaluate, params.model, curated, model_dir, out, name=name,
                                     progress=progress, text_only=text_only)
        # {"model": {"overall": {"value": .., "n": .., "ci": ..}, ...}, "blind": ..} -> "model.overall": ..
        metrics = {k.removesuffix(".value"): float(v) for k, v in flatten(result.metrics).items()
                   if k.endswith(".value") and isinstance(v, (int, float))}
        run.log_metrics(metrics)
        run.log_artifacts(Path(out), "evaluation")
        if register and params.evaluate.register:
            headline = {k: f"{v:.4f}" for k, v in metrics.items() if k.startswith("model.") and k.count(".") == 1}
            version = register_model(run, Path(model_dir), name=params.evaluate.registered_model,
                                     alias="challenger", tags=headline)
            run.set_tags({"mllm4d.registered_version": str(version)})
    return result.metrics


def teacher(params: Params, curated: Path, out: Path, *, root: Path, metrics_file: Path | None = None,
            progress: bool = True) -> Path:
    """Train the embedded 4D perception teacher (held-out metrics logged), or check an external one."""
    from components.teacher import load_teacher, train_teacher

    with stage_run("teacher", params.tracking, root, params={"teacher": asdict(params.teacher)}) as run:
        if params.teacher.source != "embedded":
            # An external teacher (L4P) is used as it is: loading it checks the weights and the grid.
            load_teacher(params.teacher.source, params.teacher, params.model)
            run.set_tags({"mllm4d.teacher": params.teacher.source})
            return Path(params.teacher.source)
        result = train_teacher(params.teacher, params.model, curated, out, progress=progress,
                               stereo=params.curation.stereo)
        run.log_metrics({**{f"heldout.{k}": v for k, v in result.metrics.items()},
                         **{f"baseline.{k}": v for k, v in result.baselines.items()},
                         **{f"train.{k}": v for k, v in result.train_metrics.items()},
                         "train_seconds": result.seconds, "parameters": float(result.parameters)})
        for point in result.loss_curve:
            step = int(point.get("step", 0))
            run.log_metrics({f"loss.{k}": v for k, v in point.items() if k != "step"}, step=step)
        run.log_artifact(Path(out) / "teacher.json", "teacher")
    if metrics_file:
        write_json(metrics_file, {"heldout": result.metrics, "baselines": result.baselines})
    return Path(out)


def teacher_targets(params: Params, curated: Path, teacher_dir: Path, out: Path, *, root: Path) -> dict:
    """Run the frozen teacher once over the training records' frames; cache ``F_4D`` and ``P_m`` on disk."""
    from components.curation.schema import read_records
    from components.teacher import load_teacher, write_targets

    with stage_run("teacher_targets", params.tracking, root, params={"teacher": asdict(params.teacher)}) as run:
        model = load_teacher(teacher_dir, params.teacher, params.model)
        records = read_records(Path(curated) / "sft.jsonl", split="sft")
        stats = write_targets(model, records, params.model, out)
        run.log_metrics({k: float(v) for k, v in stats.items() if isinstance(v, (int, float))})
        run.log_artifact(Path(out) / "index.json", "teacher_targets")
    return stats


def p4d(params: Params, curated: Path, sft_model: Path, teacher_dir: Path, targets: Path, out: Path, *,
        root: Path, progress: bool = True):
    """P4D from the SFT checkpoint, then the training gate; logs the distillation losses and, as 4D-RGPT's
    Fig. 5, the student's predicted depth beside the teacher's at a few steps."""
    import numpy as np

    from components.teacher import depth_image
    from components.training.p4d import run_p4d

    with stage_run("p4d", params.tracking, root, params={"p4d": asdict(params.p4d), "model": asdict(params.model),
                                                         "teacher": asdict(params.teacher)}) as run:
        run.log_dataset(Path(curated) / "sft.jsonl", name="curated-sft", context="training")
        result = run_p4d(params.p4d, params.teacher, params.model, curated, sft_model, teacher_dir, targets, out,
                         report_to="mlflow", progress=progress)
        run.log_metrics({"train_seconds": result.seconds, "train_samples_per_s": result.samples_per_s,
                         "final_loss": result.losses[-1] if result.losses else float("nan")})
        for snap in result.depth_snapshots:
            maps = np.load(snap)
            student, teacher_depth = maps["student"][:, 0], maps["teacher"][:, 0]  # (N, S, S) per frame
            scale = {"near": float(teacher_depth.min()), "far": float(teacher_depth.max())}
            rows = [np.concatenate([depth_image(f, **scale) for f in d], axis=1) for d in (student, teacher_depth)]
            run.log_image(np.concatenate(rows, axis=0), f"depth/{snap.stem}.png")  # student above, teacher below
        run.log_artifact(Path(out) / "meta.json", "p4d")
        gate(run, params, curated, result.losses, result.model_dir, params.p4d.train.gate, Path(out), "p4d")
    return result


def grpo_init(params: Params, models: Path) -> Path:
    """GRPO's starting model folder under ``models`` (``grpo.init``: ``p4d`` or ``sft``); ``dvc.yaml`` spells the
    same path as ``models/${grpo.init}/model`` (``tests/flows/test_wiring.py`` checks that they agree)."""
    return Path(models) / params.grpo.init / "model"


def grpo(params: Params, curated: Path, init_model: Path, out: Path, *, root: Path, progress: bool = True):
    """GRPO with the ST-reward on the rft split, from the P4D (or SFT) checkpoint, then the training gate."""
    from components.training.grpo import run_grpo

    with stage_run("grpo", params.tracking, root, params={"grpo": asdict(params.grpo), "rewards": asdict(params.rewards),
                                                          "model": asdict(params.model)}) as run:
        run.log_dataset(Path(curated) / "rft.jsonl", name="curated-rft", context="training")
        result = run_grpo(params.grpo, params.rewards, params.model, curated, init_model, out, report_to="mlflow",
                          progress=progress)
        run.log_metrics({"train_seconds": result.seconds,
                         "reward_first": result.reward_curve[0] if result.reward_curve else float("nan"),
                         "reward_last": result.reward_curve[-1] if result.reward_curve else float("nan"),
                         **{f"unscorable.{k}": float(v) for k, v in result.unscorable.items()}})
        run.log_artifacts(Path(out) / "completions", "grpo/completions")
        run.log_artifact(Path(out) / "meta.json", "grpo")
        gate(run, params, curated, result.losses, result.model_dir, params.grpo.gate, Path(out), "grpo",
             rewards=result.reward_curve, reward_tolerance=params.grpo.reward_tolerance)
    return result
