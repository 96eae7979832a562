"""The learning ladder: does SFT learn from the video, rung by rung, against controls the text cannot fool?

    .venv/bin/python benchmarks/learning_ladder.py [--params params.yaml] [--rung NAME ...] [--steps N]
        [--curve-every N] [--text-only] [--work DIR] [--out benchmarks/results/learning_ladder.json]

Each rung is the params file plus a few ``-S``-style overrides (``RUNGS``): worlds from the easiest (one object,
still camera) to the earlier defaults (1-2 and 2-4 objects), with more clips, larger objects and more steps. For
each rung: render + curate (shared by rungs with the same scenes / curation), build the base model, run SFT
through ``run_sft`` (the stage's code) keeping a copy of every checkpoint, and evaluate each copy on the bench
with the shuffled-video control (another bench clip's frames). ``--text-only`` also trains the text-only control
(the same SFT on blank frames) and adds it to the last point's headline. The result per rung: the curve (steps ->
dynamic mc macro of SFT and shuffled video, per category) and the headline (SFT minus the stronger control,
paired clip-level 95% interval).

Results accumulate in the JSON by rung (re-running one rung replaces only its entry); the markdown beside it
is the ladder table and the curves. Departure from a "learning curve" in the usual sense: the points are the
checkpoints of one run with one cosine schedule, not runs of different lengths.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from collections import defaultdict
from dataclasses import asdict, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, loadavg, machine, prepare, rounded
from transformers import TrainerCallback

# Each rung adds difficulty to the one before, or changes one thing against its neighbour. Rungs name their world in
# full (object count, clips, steps), so that they keep their meaning when params.yaml changes; "default" is
# params.yaml as it is (1 object, 288 clips, 1,000 steps). The 144-clip rungs ran with the splits .5/.1/.4 (a bench of
# 58 clips), the 288-clip ones with .75/.05/.2 (the same bench size).
CLIPS_144 = ["scenes.num_clips=144", "curation.splits.sft=0.5", "curation.splits.rft=0.1", "curation.splits.bench=0.4",
             "sft.max_steps=800"]
ONE = ["scenes.min_objects=1", "scenes.max_objects=1"]
ONE_TWO = ["scenes.min_objects=1", "scenes.max_objects=2"]
RUNGS: dict[str, tuple[str, list[str]]] = {
    "one_object_still_camera": ("1 object, still camera, 144 clips", [
        *CLIPS_144, *ONE, "scenes.ego_motion_fraction=0.0"]),
    "one_object_moving_camera": ("1 object, 144 clips", [*CLIPS_144, *ONE]),
    "one_object_big": ("1 object 1.6x larger (scenes.object_scale), 144 clips", [
        *CLIPS_144, *ONE, "scenes.object_scale=1.6"]),
    "one_object_288": ("1 object, 288 clips", ["sft.max_steps=800"]),
    "one_object_288_scale_1_3": ("1 object 1.3x larger, 288 clips", ["sft.max_steps=800", "scenes.object_scale=1.3"]),
    "one_object_288_scale_1_6": ("1 object 1.6x larger, 288 clips", ["sft.max_steps=800", "scenes.object_scale=1.6"]),
    "default": ("1 object, 288 clips, 1,000 steps (params.yaml)", []),
    "one_to_two_objects": ("1-2 objects, 144 clips (the default before)", [*CLIPS_144, *ONE_TWO]),
    "one_to_two_objects_288": ("1-2 objects, 288 clips", [*ONE_TWO, "sft.max_steps=800"]),
    "big_objects": ("1-2 objects 1.6x larger, 144 clips", [*CLIPS_144, *ONE_TWO, "scenes.object_scale=1.6"]),
    "two_to_four_objects": ("2-4 objects, 144 clips (the earlier default world)", [
        *CLIPS_144, "scenes.min_objects=2", "scenes.max_objects=4"]),
}


def _key(params, section_names: tuple[str, ...]) -> str:
    blob = json.dumps({s: asdict(getattr(params, s)) for s in section_names}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


class KeepCheckpoints(TrainerCallback):
    """Copies each saved checkpoint's model files out of the Trainer's rotation (``save_total_limit``)."""

    def __init__(self, dest: Path) -> None:
        self.dest = Path(dest)

    def on_save(self, args, state, control, **kwargs):
        src = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        out = self.dest / f"step-{state.global_step:06d}"
        if src.is_dir() and not out.exists():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("optimizer.pt", "scheduler.pt", "rng_state*",
                                                                     "trainer_state.json", "training_args.bin"))


def per_category(predictions: list[dict]) -> dict[str, dict[str, float]]:
    from components.evaluation.metrics import is_dynamic_mc

    groups: dict[str, list[dict]] = defaultdict(list)
    for p in predictions:
        if is_dynamic_mc(p):
            groups[p["category"]].append(p)
    return {c: {"n": len(rows), "sft": sum(float(p["score"]) for p in rows) / len(rows),
                "shuffled": sum(float(p["shuffled"]["score"]) for p in rows) / len(rows)}
            for c, rows in sorted(groups.items())}


def run_rung(name: str, overrides: list[str], args, log) -> dict:
    from components.config import load_params
    from components.evaluation.checkpoint import evaluate_checkpoint
    from components.training.sft import run_sft

    params = load_params(args.params, [*overrides, *args.set])
    if args.steps:
        params = replace(params, sft=replace(params.sft, max_steps=args.steps))
    every = args.curve_every or max(1, params.sft.max_steps // 4)
    params = replace(params, sft=replace(params.sft, save_steps=every),
                     evaluate=replace(params.evaluate, blind_baseline=False, shuffled_baseline=True, register=False))
    work = Path(args.work)
    data = work / "data" / _key(params, ("scenes", "curation"))
    rung = work / name
    timings: dict[str, float] = {}
    if not (data / "base" / "meta.json").is_file() or _key(params, ("model",)) != _stamp(data):
        shutil.rmtree(data, ignore_errors=True)
        prepared = prepare(params, data, log=log)
        (data / "model.key").write_text(_key(params, ("model",)))
        timings.update(prepared["timings_s"])
    curated, base = data / "curated", data / "base"
    start = time.perf_counter()
    for old in ("curve", "sft", "sft_text_only", "eval"):  # a fresh run: a resumed one would miss curve points
        shutil.rmtree(rung / old, ignore_errors=True)
    trained = run_sft(params.sft, params.model, curated, base, rung / "sft", progress=False,
                      callbacks=(KeepCheckpoints(rung / "curve"),))
    timings["sft_s"] = time.perf_counter() - start
    log(f"  SFT {trained.steps} steps in {timings['sft_s']:.0f} s, loss {trained.losses[0]:.2f} -> {trained.losses[-1]:.2f}")
    text_only = None
    if args.text_only:
        start = time.perf_counter()
        blank = replace(params.model, blank_frames=True)
        control = run_sft(params.sft, blank, curated, base, rung / "sft_text_only", progress=False)
        evaluate_checkpoint(params.evaluate, blank, curated, control.model_dir, rung / "eval" / "text_only",
                            name="text_only", progress=False)
        text_only = rung / "eval" / "text_only" / "predictions.jsonl"
        timings["text_only_s"] = time.perf_counter() - start
    curve = []
    points = {int(p.name.split("-")[1]): p for p in (rung / "curve").iterdir()}
    points[trained.steps] = trained.model_dir  # the stage's output is the last point
    for step, folder in sorted(points.items()):
        last = step == trained.steps
        result = evaluate_checkpoint(params.evaluate, params.model, curated, folder, rung / "eval" / f"step-{step:06d}",
                                     name=f"{name} step {step}", progress=False, text_only=text_only if last else None)
        head = result.metrics["headline"]
        curve.append({"step": step, "sft": head["model"], **{k: v for k, v in head["controls"].items()},
                      "headline": head["value"], "ci": head["ci"], "per_category": per_category(result.predictions)})
        log(f"  step {step}: SFT {100 * head['model']:.1f}, controls "
            f"{ {k: round(100 * v, 1) for k, v in head['controls'].items()} }, headline {100 * head['value']:+.1f} "
            f"[{100 * head['ci'][0]:+.1f}, {100 * head['ci'][1]:+.1f}]")
    return {"what": RUNGS[name][0], "overrides": overrides + list(args.set), "steps": params.sft.max_steps,
            "batch_size": params.sft.batch_size, "records": prepared_counts(curated), "final": curve[-1], "curve": curve,
            "timings_s": timings}


def _stamp(data: Path) -> str | None:
    path = data / "model.key"
    return path.read_text() if path.is_file() else None


def prepared_counts(curated: Path) -> dict[str, int]:
    return {s: sum(1 for _ in (curated / f"{s}.jsonl").open()) for s in ("sft", "rft", "bench")}


def markdown(results: dict) -> str:
    lines = [f"# The learning ladder (`benchmarks/learning_ladder.py`, params `{results.get('params', 'params.yaml')}`)",
             "",
             ("Dynamic multiple-choice macro (%) on the bench: SFT against the shuffled-video control (another bench "
             "clip's frames) and, where run, the text-only-trained control; headline = SFT minus the stronger "
             "control, paired clip-level 95% interval."), "",
             "| rung | steps | SFT | shuffled video | text-only trained | headline | learned categories (SFT vs shuffled, points) |",
             "|---|---|---|---|---|---|---|"]
    for r in results["rungs"].values():
        f = r["final"]
        cats = ", ".join(f"{c} {100 * (v['sft'] - v['shuffled']):+.0f}" for c, v in f["per_category"].items())
        text = f"{100 * f['text_only']:.1f}" if "text_only" in f else "-"
        mark = " †" if r.get("template_words") == "bytes" else ""
        lines.append(f"| {r['what']}{mark} | {r['steps']} | {100 * f['sft']:.1f} | {100 * f['shuffled']:.1f} | {text} | "
                     f"{100 * f['headline']:+.1f} [{100 * f['ci'][0]:+.1f}, {100 * f['ci'][1]:+.1f}] | {cats} |")
    if any(r.get("template_words") == "bytes" for r in results["rungs"].values()):
        lines += ["", ("† measured before the tokenizer learned the chat template's words (sequences 21% longer, the "
                       "same data and model otherwise; SFT 800 steps: 460 s before, 379 s after).")]
    lines += ["", "## Curves (step: SFT / shuffled video)", ""]
    for r in results["rungs"].values():
        points = "; ".join(f"{p['step']}: {100 * p['sft']:.1f} / {100 * p['shuffled']:.1f}" for p in r["curve"])
        lines.append(f"- {r['what']}: {points}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--rung", action="append", choices=sorted(RUNGS), help="default: every rung, in order")
    ap.add_argument("-S", "--set", action="append", default=[], help="one more override for every rung")
    ap.add_argument("--steps", type=int, default=0, help="0: the params' sft.max_steps")
    ap.add_argument("--curve-every", type=int, default=0, help="checkpoint interval (default: a quarter of the steps)")
    ap.add_argument("--text-only", action="store_true", help="train and add the text-only control (doubles the cost)")
    ap.add_argument("--work", default="/tmp/learning-ladder")
    ap.add_argument("--out", default=str(RESULTS / "learning_ladder.json"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.0f} s | load {loadavg()[0]:.2f}] {msg}", flush=True)

    out = Path(args.out)
    for name in args.rung or list(RUNGS):
        log(f"rung {name}: {RUNGS[name][0]}")
        result = rounded(run_rung(name, RUNGS[name][1], args, log))
        # read just before writing: rungs may run in parallel processes, each adding its own entry
        results = json.loads(out.read_text()) if out.is_file() else {"rungs": {}}
        results["rungs"][name] = result
        results["params"] = str(Path(args.params).resolve().relative_to(ROOT))
        results["rungs"] = {k: results["rungs"][k] for k in RUNGS if k in results["rungs"]}  # ladder order
        results["machine"] = machine()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
        out.with_suffix(".md").write_text(markdown(results))
    log(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
