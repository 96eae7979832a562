"""The ``curation`` flow: scenes -> curate (one task per clip) -> data gate -> language-prior gate.

Thin: each task calls the same component function the CLI and ``dvc repro`` call. Rendering and
curating fan out over clips with ``.map``; only I/O errors are retried; a failed gate fails the flow.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFutureList, as_completed
from tqdm import tqdm

from components import stages
from components.config import CurationConfig, Params, ScenesConfig
from components.curation.clip import ClipResult, curate_clip
from components.scenes import render_clip
from components.sources.clip import list_clips
from flows.common import params_from, retry_on_io


def gather(futures: PrefectFutureList, desc: str) -> list:
    """Results in submission order, with a progress bar that advances as tasks finish."""
    for _ in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="clip"):
        pass
    return futures.result()


@task(retries=2, retry_delay_seconds=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def render_one(cfg: ScenesConfig, index: int, out_root: Path) -> Path:
    return render_clip(cfg, index, out_root)


@task(retries=2, retry_delay_seconds=1, retry_condition_fn=retry_on_io, cache_policy=NO_CACHE)
def curate_one(clip_dir: Path, cfg: CurationConfig, out_dir: Path) -> ClipResult:
    return curate_clip(clip_dir, cfg, out_dir)


@task(cache_policy=NO_CACHE)
def validate_task(params: Params, curated: Path, report_dir: Path, root: Path):
    return stages.validate(params, curated, report_dir, root=root)


@task(cache_policy=NO_CACHE)
def prior_gate_task(params: Params, curated: Path, report_dir: Path, root: Path):
    return stages.prior_gate(params, curated, report_dir, root=root)


def render_as_tasks(cfg: ScenesConfig, out: Path) -> list[Path]:
    """``stages.scenes``'s renderer in a flow: one task per clip."""
    return [Path(p) for p in gather(render_one.map(unmapped(cfg), range(cfg.num_clips), unmapped(out)), "render")]


def run_curation(params: Params, clips_root: Path, out: Path, root: Path, metrics_file: Path | None = None) -> dict:
    clips = list_clips(clips_root)
    results = gather(curate_one.map(clips, unmapped(params.curation), unmapped(out)), "curate")
    return stages.curate(params, clips_root, out, root=root, results=results, metrics_file=metrics_file)


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
    # the same metrics files as the DVC stages: a flow run and `dvc repro` leave the same reports/
    stages.scenes(params, data / "scenes", root=root, render=render_as_tasks, metrics_file=reports / "scenes.json")
    stats = run_curation(params, data / "scenes", data / "curated", root, metrics_file=reports / "curation.json")
    report = validate_task(params, data / "curated", reports / "quality", root)
    prior = prior_gate_task(params, data / "curated", reports / "quality", root)
    create_markdown_artifact(key="curation-summary",
                             markdown=curation_markdown(stats, report.summary(), prior.summary()),
                             description="curation, data gate and language-prior gate headline numbers")
    return stats
