"""The ``curation`` flow: scenes -> curate (one task per clip) -> data gate -> language-prior gate.

Thin: each task calls the same component function the CLI and ``dvc repro`` call. Rendering and
curating fan out over clips with ``.map``; only I/O errors are retried; a failed gate fails the flow.

The fan-outs run as sub-flows (``render-clips``, ``curate-clips``) because a flow's task runner is fixed when
the flow starts, and this one only learns which runner ``orchestration`` asks for (threads, a Dask or a Ray
cluster: ``flows.common.task_runner``) once it has read its params; the assembly, the gates and the MLflow
runs stay in this process either way (``docs/scale_out.md``). A task takes ``orchestration.clips_per_task``
clips: a Prefect task run cost ~0.2 s of CPU here, more than rendering a 160 px clip (~0.15 s), so one task
per clip made the fan-out slower than a plain loop (measured: ``benchmarks/fanout.py``).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFutureList, as_completed
from prefect.task_runners import TaskRunner
from tqdm import tqdm

from components import stages
from components.config import CurationConfig, OrchestrationConfig, Params, ScenesConfig
from components.curation.clip import ClipResult, curate_clip
from components.scenes import render_clip
from flows.common import params_from, retry_on_io, task_runner


def gather(futures: PrefectFutureList, desc: str) -> list:
    """The batches' results in submission order, flattened, with a progress bar that advances as batches finish."""
    for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="batch"):
        pass
    return [item for batch in futures.result() for item in batch]


def batches(items: list, size: int) -> list[list]:
    """``items`` in consecutive runs of ``size`` (the last one shorter)."""
    return [items[i:i + size] for i in range(0, len(items), size)]


# A retried batch redoes its clips: each is written atomically, so a clip done before the failure is redone whole.
@task(retries=2, retry_delay_seconds=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def render_batch(cfg: ScenesConfig, indices: list[int], out_root: Path) -> list[Path]:
    return [render_clip(cfg, index, out_root) for index in indices]


@task(retries=2, retry_delay_seconds=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def curate_batch(clip_dirs: list[Path], cfg: CurationConfig, out_dir: Path) -> list[ClipResult]:
    return [curate_clip(clip_dir, cfg, out_dir) for clip_dir in clip_dirs]


@task(cache_policy=NO_CACHE)
def validate_task(params: Params, curated: Path, report_dir: Path, root: Path):
    return stages.validate(params, curated, report_dir, root=root)


@task(cache_policy=NO_CACHE)
def prior_gate_task(params: Params, curated: Path, report_dir: Path, root: Path):
    return stages.prior_gate(params, curated, report_dir, root=root)


# validate_parameters=False: the parameters are the stages' frozen dataclasses, already validated by load_params.
@flow(name="render-clips", validate_parameters=False)
def render_clips(cfg: ScenesConfig, out: Path, clips_per_task: int) -> list[Path]:
    indices = batches(list(range(cfg.num_clips)), clips_per_task)
    return [Path(p) for p in gather(render_batch.map(unmapped(cfg), indices, unmapped(out)), "render")]


@flow(name="curate-clips", validate_parameters=False)
def curate_clips(clips: list[Path], cfg: CurationConfig, out: Path, clips_per_task: int) -> list[ClipResult]:
    return gather(curate_batch.map(batches(clips, clips_per_task), unmapped(cfg), unmapped(out)), "curate")


def render_as_tasks(cfg: ScenesConfig, out: Path, runner: TaskRunner | None = None,
                    clips_per_task: int = OrchestrationConfig.clips_per_task) -> list[Path]:
    """``stages.scenes``'s renderer in a flow: a task per ``clips_per_task`` clips, on ``runner`` (Prefect's thread
    pool if None)."""
    return render_clips.with_options(task_runner=runner)(cfg, out, clips_per_task)


def run_curation(params: Params, clips_root: Path, out: Path, root: Path, metrics_file: Path | None = None,
                 runner: TaskRunner | None = None) -> dict:
    """``stages.curate`` with its clips curated as tasks of ``orchestration.clips_per_task`` clips on ``runner``
    (``orchestration``'s if None); the results are assembled in this process."""
    runner = runner or task_runner(params.orchestration)

    def as_tasks(clips: list[Path], out_dir: Path) -> list[ClipResult]:
        return curate_clips.with_options(task_runner=runner)(clips, params.curation, out_dir,
                                                             params.orchestration.clips_per_task)

    return stages.curate(params, clips_root, out, root=root, map_clips=as_tasks, metrics_file=metrics_file)


def curation_markdown(stats: dict, gate_summary: str, prior_summary: str = "") -> str:
    agree = stats["label_agreement"].get("overall", {})
    rows = "\n".join(f"| {s} | {stats['records'][s]} | {stats['questions'][s]} | {stats['clips_per_split'][s]} |"
                     for s in stats["records"])
    return (
        "## Curation\n\n| split | records | questions | clips |\n|---|---|---|---|\n" + rows + "\n\n"
        f"- clips curated: {stats['n_curated_clips']} of {stats['n_clips']} ({stats['n_quarantined']} quarantined)\n"
        f"- label agreement with ground truth: multiple choice {agree.get('mc_agreement')}, "
        f"numeric within 10% {agree.get('numeric_within_10pct')}\n"
        f"- curation speed: {stats['performance']['frames_per_s_per_core']:.1f} stereo frames/s per core "
        f"(stereo matcher alone {stats['performance']['stereo_only_frames_per_s']:.1f})\n\n"
        f"## Data gate\n\n```\n{gate_summary}\n```\n"
        + (f"\n## Language-prior gate\n\n```\n{prior_summary}\n```\n" if prior_summary else "")
    )


@flow(name="curation", log_prints=True)
def curation(params_path: str = "params.yaml", overrides: list[str] | None = None, data_root: str = "data",
             reports_root: str = "reports") -> dict:
    """Render (embedded default), curate and validate; returns the curation stats."""
    params, root = params_from(params_path, overrides)
    data, reports = Path(data_root), Path(reports_root)
    runner = task_runner(params.orchestration)  # before any work: a runner that cannot be built fails the run here
    # the same metrics files as the DVC stages: a flow run and `dvc repro` leave the same reports/
    stages.scenes(params, data / "scenes", root=root,
                  render=partial(render_as_tasks, runner=runner, clips_per_task=params.orchestration.clips_per_task),
                  metrics_file=reports / "scenes.json")
    stats = run_curation(params, data / "scenes", data / "curated", root, metrics_file=reports / "curation.json",
                         runner=runner)
    report = validate_task(params, data / "curated", reports / "quality", root)
    prior = prior_gate_task(params, data / "curated", reports / "quality", root)
    create_markdown_artifact(key="curation-summary",
                             markdown=curation_markdown(stats, report.summary(), prior.summary()),
                             description="curation, data gate and language-prior gate headline numbers")
    return stats
