"""The curation flow's fan-out: Prefect task runs per clip vs per batch of clips, against a plain loop.

    .venv/bin/python benchmarks/fanout.py [--params params.yaml] [--clips 64] [--per-task 16]

Renders ``--clips`` clips of the preset's world, then curates them, each way in the same process and run:

- ``loop``: ``render_clip`` / ``curate_clip`` one after another (no Prefect, one thread);
- ``tasks, 1 clip each``: the ``render-clips`` / ``curate-clips`` flows with one task run per clip on Prefect's
  thread pool (the flows before ``orchestration.clips_per_task``);
- ``tasks, N clips each, unbounded threads``: the same flows with ``--per-task`` clips a task on Prefect's default
  thread pool (a thread per task run: what `make run` did before ``orchestration.workers`` bounded it);
- ``tasks, N clips each, W threads``: the same on ``orchestration.workers`` threads (what `make run` does now).

The ephemeral Prefect server is started by a warm-up flow outside the timing. Wall and this process's CPU
seconds per way; the ratios to ``loop`` are the numbers to compare (a noisy machine scales all three).
Writes benchmarks/results/fanout.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, loadavg, machine, rounded

OUT = RESULTS / "fanout.json"


def loop(fn, calls: list[tuple]) -> None:
    for args in calls:
        fn(*args)


def timed(fn) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--per-task", type=int, default=16)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from prefect.task_runners import ThreadPoolTaskRunner

    from components.config import load_params
    from components.curation.clip import curate_clip
    from components.scenes import render_clip
    from flows.common import task_runner
    from flows.curation import curate_clips, render_as_tasks

    params = load_params(args.params, [f"scenes.num_clips={args.clips}"])
    cfg, cur = params.scenes, params.curation
    root = Path(tempfile.mkdtemp(prefix="mllm4d-fanout-"))
    try:
        render_as_tasks(replace(cfg, num_clips=1), root / "warmup")  # the ephemeral server starts here
        n, workers = args.per_task, params.orchestration.workers
        ways = {"loop": (None, None), "tasks, 1 clip each": (1, ThreadPoolTaskRunner()),
                f"tasks, {n} clips each, unbounded threads": (n, ThreadPoolTaskRunner()),
                f"tasks, {n} clips each, {workers} threads": (n, task_runner(params.orchestration))}
        results: dict[str, dict] = {}
        for way, (per_task, runner) in ways.items():
            scenes, curated = root / f"scenes-{len(results)}", root / f"curated-{len(results)}"
            if per_task is None:
                render = timed(partial(loop, render_clip, [(cfg, i, scenes) for i in range(cfg.num_clips)]))
            else:
                render = timed(partial(render_as_tasks, cfg, scenes, runner, per_task))
            clips = sorted(p for p in scenes.iterdir() if p.is_dir())
            if per_task is None:
                curate = timed(partial(loop, curate_clip, [(c, cur, curated) for c in clips]))
            else:
                curate = timed(partial(curate_clips.with_options(task_runner=runner), clips, cur, curated, per_task))
            results[way] = {"render": render, "curate": curate}
            print(f"{way:24s} render {render['wall_s']:6.1f} s   curate {curate['wall_s']:6.1f} s", flush=True)
        base = results["loop"]
        for r in results.values():
            for part in ("render", "curate"):
                r[part]["wall_vs_loop"] = r[part]["wall_s"] / base[part]["wall_s"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report = {"what": __doc__.split("\n")[0], "params": args.params, "clips": args.clips, "per_task": args.per_task,
              "results": rounded(results), "machine": machine(), "loadavg": loadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
