"""Shared set-up for the training / evaluation benchmarks (not a benchmark itself: running it does nothing).

``prepare`` renders and curates a preset's clips and builds its base model in a scratch folder, through
the same component functions the stages call (no MLflow: the benchmarks never touch ``mlflow.db``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.env import apply_quiet_defaults

apply_quiet_defaults(HF_HUB_OFFLINE="1", TRANSFORMERS_NO_ADVISORY_WARNINGS="1")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    import torch

    return {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cuda": torch.cuda.is_available(), "python": platform.python_version()}


def peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(params, work: Path, *, log=print) -> dict:
    """Render + curate ``params``' clips into ``work`` and build the base model; returns paths and timings."""
    from components.curation.run import curate
    from components.curation.schema import read_records
    from components.models import build_base_model, tokenizer_corpus
    from components.scenes import render_scenes

    work = Path(work)
    timings = {}
    start = time.perf_counter()
    render_scenes(params.scenes, work / "scenes", workers=params.curation.workers, progress=False)
    timings["render_s"] = time.perf_counter() - start
    log(f"  rendered {params.scenes.num_clips} clips in {timings['render_s']:.1f} s (load {loadavg()})")
    start = time.perf_counter()
    stats = curate(work / "scenes", params.curation, work / "curated", progress=False)
    timings["curate_s"] = time.perf_counter() - start
    log(f"  curated {stats['records']} records in {timings['curate_s']:.1f} s (load {loadavg()})")
    start = time.perf_counter()
    texts = tokenizer_corpus(read_records(work / "curated" / "sft.jsonl", split="sft"), params.model)
    base = build_base_model(params.model, texts, work / "base")
    timings["base_model_s"] = time.perf_counter() - start
    meta = json.loads((base / "meta.json").read_text())
    return {"curated": work / "curated", "base": base, "records": stats["records"],
            "by_category": stats["by_category"], "parameters": meta["parameters"],
            "vocab_size": meta.get("vocab_size"), "timings_s": {k: round(v, 2) for k, v in timings.items()}}


def rounded(obj, digits: int = 4):
    """Floats rounded everywhere in a JSON-able tree."""
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


class Clock:
    """Cumulative wall time inside wrapped callables (installed around the real functions: the code under
    test is unchanged). ``take`` returns the totals and starts again."""

    def __init__(self, *keys: str) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(keys, 0.0)

    def wrap(self, key: str, fn):
        self.seconds.setdefault(key, 0.0)

        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[key] += time.perf_counter() - start

        timed.__name__ = getattr(fn, "__name__", key)  # TRL names reward functions by __name__
        return timed

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, dict.fromkeys(self.seconds, 0.0)
        return out
