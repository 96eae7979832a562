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
    (``source.root``, a folder or an ``s3://`` prefix mirrored locally first, read by ``components.sources``),
    which then replace ``out`` whole."""
    from components.scenes import render_scenes

    source = params.source
    with stage_run("scenes", params.tracking, root,
                   params={"source": asdict(source), "scenes": asdict(params.scenes)}) as run:
        start = time.perf_counter()
        if source.format != "synthetic":
            from components.io import atomic_dir
            from components.sources.clip import list_clips
            from components.sources.ingest import ingest
            from components.storage import local_dir

            dataset = local_dir(source.root, root)  # before the output is touched: a bad URI leaves it as it was
            with atomic_dir(out) as tmp:
                ingest(source.format, dataset, tmp, window=source.window, stride=source.stride, poses=source.poses)
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


def curate(params: Params, clips_root: Path | str, out: Path | str, *, root: Path, metrics_file: Path | None = None,
           progress: bool = True, map_clips: Callable[[list[Path], Path], list[ClipResult]] | None = None) -> dict:
    """Curate ``clips_root`` into ``out``; ``map_clips(clips, out_dir)`` lets a flow curate the clips as tasks
    (``curate_clips`` in this process if None), inside the stage so that its wall time counts them.

    Either may be an ``s3://bucket/prefix`` (a string: ``Path`` would turn ``//`` into ``/``): clips are read
    from their local mirror, which the records' frame paths then name, and the output is written to the out
    URI's mirror, whose paths the records' Set-of-Marks images name, then published (``components.storage``)."""
    from components.curation.run import curate_clips, finalize
    from components.sources.clip import list_clips
    from components.storage import check_output, is_s3, local_dir, mirror_dir, upload

    out_dir = mirror_dir(out, root) if is_s3(out) else Path(out)
    with stage_run("curate", params.tracking, root, params={"curation": asdict(params.curation)}) as run:
        start = time.perf_counter()
        if is_s3(out):
            check_output(out)  # a wrong bucket fails now, not after the clips are curated
        clips = list_clips(local_dir(clips_root, root))
        if not clips:
            raise ValueError(f"no clips found under {clips_root} (a clip is a folder with meta.json and left/)")
        if map_clips is None:
            results = curate_clips(clips, params.curation, out_dir, progress=progress)
        else:
            results = map_clips(clips, out_dir)
        stats = finalize(results, params.curation, out_dir, seconds=time.perf_counter() - start)
        if is_s3(out):
            upload(out_dir, out)
        log_curation(run, params, clips_root, out_dir, stats)
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
        run.write_sidecar(model_dir)
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
        run.write_sidecar(Path(out))
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
    from components.tracking.runs import launch_rank
    from components.training.gate import TrainingGateFailed, training_gate

    if launch_rank() != 0:  # under `accelerate launch` rank 0 alone checks (and writes) the one saved model
        return {"success": True, "skipped": f"rank {launch_rank()}"}
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
            version = register_model(run, Path(model_dir), model_cfg=params.model,
                                     max_new_tokens=params.evaluate.max_new_tokens,
                                     batch_size=params.evaluate.batch_size,
                                     name=params.evaluate.registered_model, alias="challenger", tags=headline)
            run.set_tags({"mllm4d.registered_version": str(version)})
    return result.metrics


def teacher(params: Params, curated: Path, out: Path, *, root: Path, metrics_file: Path | None = None,
            progress: bool = True) -> Path:
    """Train the embedded 4D perception teacher (held-out metrics logged), or check an external one."""
    from components.models.factory import apply_cpu_threads
    from components.teacher import load_teacher, train_teacher

    apply_cpu_threads(params.model)
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
        run.write_sidecar(Path(out))
    if metrics_file:
        write_json(metrics_file, {"heldout": result.metrics, "baselines": result.baselines})
    return Path(out)


def teacher_targets(params: Params, curated: Path, teacher_dir: Path, out: Path, *, root: Path) -> dict:
    """Run the frozen teacher once over the training records' frames; cache ``F_4D`` and ``P_m`` on disk."""
    from components.curation.schema import read_records
    from components.models.factory import apply_cpu_threads
    from components.teacher import load_teacher, write_targets

    apply_cpu_threads(params.model)
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
        run.write_sidecar(Path(out))
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
        run.write_sidecar(Path(out))
        gate(run, params, curated, result.losses, result.model_dir, params.grpo.gate, Path(out), "grpo",
             rewards=result.reward_curve, reward_tolerance=params.grpo.reward_tolerance)
    return result


def promote(params: Params, curated: Path, out: Path, *, root: Path, model_dir: Path | None = None,
            evaluation: Path | None = None, dry_run: bool = False):
    """The promotion gate: ``@challenger`` vs ``@champion`` on the same bench records (``promote`` params);
    writes ``out/decision.json`` and ``out/decision.md``. With ``model_dir`` and its ``evaluation`` folder
    (``dvc repro``, where the evaluate stage registers nothing), that checkpoint is registered as
    ``@challenger`` first, in this stage's run, with its evaluation beside it. ``dry_run``: decide and
    report, change nothing in the registry."""
    from components.io import read_jsonl
    from components.tracking.promotion import promote_challenger
    from components.tracking.registry import register_model

    name = params.evaluate.registered_model
    with stage_run("promote", params.tracking, root, params={"promote": asdict(params.promote)},
                   tags={"mllm4d.dry_run": str(dry_run).lower()}) as run:
        rows = None
        if model_dir is not None:
            if evaluation is None:
                raise ValueError("promote: a model folder to register needs its evaluation folder (metrics.json, "
                                 "predictions.jsonl)")
            rows = (read_jsonl(Path(evaluation) / "predictions.jsonl"),
                    json.loads((Path(evaluation) / "metrics.json").read_text()))
            if not dry_run:
                run.log_artifacts(Path(evaluation), "evaluation")
                version = register_model(run, Path(model_dir), model_cfg=params.model,
                                         max_new_tokens=params.evaluate.max_new_tokens,
                                         batch_size=params.evaluate.batch_size, name=name, alias="challenger",
                                         tags={})
                run.set_tags({"mllm4d.registered_version": str(version)})
        promotion = promote_challenger(run.tracking_uri, name, params.promote, dry_run=dry_run, challenger_rows=rows,
                                       reevaluate=_champion_on(params, curated, run.tracking_uri))
        d = promotion.decision
        run.log_metrics({"promote.promoted": float(d.promote), "promote.challenger": d.challenger,
                         "promote.format_valid": d.format_valid,
                         **({"promote.improvement": d.improvement["value"]} if d.improvement else {})})
        challenger = str(promotion.challenger.version) if promotion.challenger else "candidate"
        run.set_tags({"mllm4d.promotion": d.verdict, "mllm4d.challenger_version": challenger,
                      "mllm4d.champion_version": str(promotion.champion.version) if promotion.champion else "none"})
        write_json(Path(out) / "decision.json", {
            "verdict": d.verdict, "dry_run": dry_run, "registered_model": name,
            "challenger_version": int(promotion.challenger.version) if promotion.challenger else None,
            "champion_version": int(promotion.champion.version) if promotion.champion else None, **d.as_dict()})
        (Path(out) / "decision.md").write_text(f"# Promotion of {name}{' (dry run)' if dry_run else ''}\n\n"
                                               f"{promotion.summary}\n")
        run.log_artifacts(Path(out), "promotion")
    return promotion


def _champion_on(params: Params, curated: Path, tracking_uri: str):
    """``reevaluate`` for the promotion gate: the champion's registered model, with the settings it was
    evaluated with, on the challenger's bench records (model only, no controls: the gate compares answers)."""

    def reevaluate(version, rows: list[dict]) -> list[dict]:
        import tempfile

        from components.curation.schema import read_records
        from components.evaluation.harness import evaluate as run_harness
        from components.models import load_model
        from components.models.generation import make_generate_fn
        from components.tracking.registry import download_model_folder

        by_id = {r["id"]: r for r in read_records(Path(curated) / "bench.jsonl", split="bench")}
        missing = [r["id"] for r in rows if r["id"] not in by_id]
        if missing:
            raise ValueError(f"{len(missing)} of the challenger's records are not in {curated}/bench.jsonl "
                             f"(e.g. {missing[:3]}): promote on the data the challenger was evaluated on")
        with tempfile.TemporaryDirectory(prefix="mllm4d-champion-") as tmp:
            folder, settings = download_model_folder(tracking_uri, version.name, version.version, Path(tmp))
            model, processor = load_model(folder, settings["model"])
            generate = make_generate_fn(model, processor, settings["model"], max_new_tokens=settings["max_new_tokens"])
            result = run_harness([by_id[r["id"]] for r in rows], generate, batch_size=settings["batch_size"],
                                 blind_baseline=False, shuffled_baseline=False,
                                 n_boot=params.evaluate.bootstrap_samples, progress=False)
        return result.predictions

    return reevaluate


def repro(params: Params, targets: list[str], *, root: Path) -> str:
    """``dvc repro`` under one MLflow parent run: the stage runs it starts (each ``mllm4d`` command in its own
    process) nest under it, as the id travels in ``MLLM4D_PARENT_RUN_ID``; the parent is tagged with the
    ``dvc.lock`` the run left, the lock to commit with its outputs."""
    import subprocess
    import sys

    from components.config import to_dict
    from components.tracking import pipeline_run
    from components.tracking.metadata import dvc_lock_tag

    with pipeline_run("dvc-repro", params.tracking, root, params=to_dict(params)) as parent:
        done = subprocess.run([sys.executable, "-m", "dvc", "repro", *targets], cwd=root, check=False)
        parent.set_tags(dvc_lock_tag(root))
        if done.returncode:
            raise ValueError(f"dvc repro {' '.join(targets)} failed with exit code {done.returncode}; the MLflow "
                             f"parent run {parent.url()} ends FAILED")
    return f"dvc repro {' '.join(targets)}: done; stage runs under the MLflow parent run {parent.url()}"


def evaluate_benchmark(params: Params, benchmark: str, annotations: Path, out: Path, *, name: str, root: Path,
                       media_root: Path | None = None, model_dir: Path | None = None,
                       predictions: Path | None = None, missing_as_wrong: bool = False, controls: bool = False,
                       progress: bool = True) -> dict:
    """An external benchmark (``components.evaluation.benchmarks``): a checkpoint's answers on its videos, or a
    predictions file, scored and reported as the bench is; the scores and the report files (not the frame
    cache) are logged. Nothing is registered: the registry's challenger is chosen on the own bench."""
    from components.evaluation.benchmarks import evaluate_benchmark as run_benchmark

    logged = {"evaluate": asdict(params.evaluate), **({"model": asdict(params.model)} if model_dir else {})}
    with stage_run(f"evaluate_{benchmark}_{name}", params.tracking, root, params=logged,
                   tags={"mllm4d.checkpoint": name, "mllm4d.benchmark": benchmark}) as run:
        result = run_benchmark(benchmark, annotations, out, eval_cfg=params.evaluate, model_cfg=params.model,
                               media_root=media_root, model_dir=model_dir, predictions=predictions,
                               missing_as_wrong=missing_as_wrong, controls=controls, progress=progress)
        run.log_metrics({k.removesuffix(".value"): float(v) for k, v in flatten(result.metrics).items()
                         if k.endswith(".value") and isinstance(v, (int, float))})
        for path in sorted(Path(out).iterdir()):
            if path.is_file():
                run.log_artifact(path, "evaluation")
    return result.metrics
