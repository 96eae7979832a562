"""How much of `make run` is orchestration (Prefect, MLflow) rather than the stages' own work.

    .venv/bin/python benchmarks/orchestration_overhead.py [--params params.yaml] [--work /tmp/overhead]

Runs the ``pipeline`` flow (what `make run` runs) in this process, into a scratch data / models / reports /
MLflow location, with a timer around every component call the stages make (rendering and curating each
clip, the data gate, the base model, SFT, the teacher, its targets, P4D, GRPO, the training gates,
evaluation). Calls can overlap (Prefect maps clips over threads), so the stages' time is the *union* of
the timed intervals; the rest of the wall time is orchestration: Prefect's server, flows and tasks,
MLflow runs, params, metrics, artifacts and the model registry, reading params, process start-up
excluded. Also reports each stage's time. Goal (issue 5): orchestration under 10% of the wall time.

Writes benchmarks/results/orchestration_overhead.json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, loadavg, machine, rounded

OUT = RESULTS / "orchestration_overhead.json"

# (module, attribute, stage): the component functions, patched where the stages and flows look them up.
TIMED = [
    ("flows.curation", "render_clip", "scenes"),
    ("flows.curation", "curate_clip", "curate"),
    ("components.stages", "finalize", "curate"),
    ("components.stages", "run_data_gate", "validate_data"),
    ("components.models", "build_base_model", "base_model"),
    ("components.training.sft", "run_sft", "sft"),
    ("components.teacher", "train_teacher", "teacher"),
    ("components.teacher", "load_teacher", "teacher_targets"),
    ("components.teacher", "write_targets", "teacher_targets"),
    ("components.training.p4d", "run_p4d", "p4d"),
    ("components.training.grpo", "run_grpo", "grpo"),
    ("components.stages", "training_gate", "training_gates"),
    ("components.evaluation.checkpoint", "evaluate_checkpoint", "evaluate"),
]


class Intervals:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[float, float, str]] = []

    def wrap(self, fn, stage: str):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.spans.append((start, time.perf_counter(), stage))
        return timed

    def union(self) -> float:
        total, end = 0.0, float("-inf")
        for s, e, _ in sorted(self.spans):
            if e > end:
                total += e - max(s, end)
                end = e
        return total

    def per_stage(self) -> dict[str, float]:
        out = defaultdict(float)
        for stage in {st for _, _, st in self.spans}:
            mine = Intervals()
            mine.spans = [x for x in self.spans if x[2] == stage]
            out[stage] = mine.union()
        return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="overhead-"))
    os.environ.pop("MLLM4D_PARENT_RUN_ID", None)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    overrides = [f"tracking.tracking_uri={uri}", f"tracking.artifact_location={work / 'mlartifacts'}"]

    clock = Intervals()
    for module, name, stage in TIMED:
        mod = importlib.import_module(module)
        setattr(mod, name, clock.wrap(getattr(mod, name), stage))
    from flows.pipeline import pipeline

    start = time.perf_counter()
    pipeline(params_path=args.params, overrides=overrides, data_root=str(work / "data"),
             reports_root=str(work / "reports"), models_root=str(work / "models"))
    wall = time.perf_counter() - start
    stages = clock.union()
    result = {
        "what": "the pipeline flow (make run's chain) in one process: wall time vs the union of the timed component calls",
        "params": args.params, "wall_s": wall, "stages_s": stages, "orchestration_s": wall - stages,
        "orchestration_share": (wall - stages) / wall, "goal_share": 0.10,
        "per_stage_s": clock.per_stage(), "machine": machine(), "loadavg": loadavg(),
    }
    OUT.write_text(json.dumps(rounded(result), indent=2) + "\n")
    print(json.dumps(rounded({k: result[k] for k in ("wall_s", "stages_s", "orchestration_share", "per_stage_s")}), indent=2))


if __name__ == "__main__":
    main()
