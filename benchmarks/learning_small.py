"""The learning result at the ``small`` preset on the CPU: zero-shot vs SFT vs blind vs random.

    .venv/bin/python benchmarks/learning_small.py [--clips N] [--steps N] [--max-records N] [--threads 1]
                                                  [--work DIR] [--out benchmarks/results/learning_small.json]

Renders + curates the preset's clips (presets/small.yaml: 120; ``--clips`` reduces), builds the base
model, runs SFT with the preset's sft section (``--steps`` overrides max_steps, the cosine schedule
follows it), then ``evaluate_checkpoint`` (blind baseline on) for the base model (zero-shot) and the
SFT model. Headline: SFT minus blind, accuracy on the multiple-choice records of each dynamic category,
averaged over those categories (goal >= +25 points). ``analysis`` holds what explains the number:
per category and answer type, format validity, how often vision changes the answer (model vs blind),
how concentrated the predictions are, and text-only baselines computed from the sft split (the
majority answer per category, the most frequent option text among a record's options, the central
value among numeric options, the sft median for open numeric answers).

Writes the JSON (default benchmarks/results/learning_small.json) and, beside it, the markdown
(``components.evaluation.report.comparison_table`` plus the analysis) as ``.md``. ``--work`` keeps the
data and models (and reuses them: curated data, base model, SFT checkpoints resume).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, ROOT, loadavg, machine, rounded

GOAL_POINTS = 25.0
_T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.0f} s | load {loadavg()[0]:.2f}] {msg}", flush=True)


def _mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


def _num(text: str) -> float | None:
    try:
        return float(str(text).split()[0])
    except (ValueError, IndexError):
        return None


def option_text(pred: dict, record: dict) -> str | None:
    letter = pred["extracted"]["letter"]
    return record["options"]["ABCDE".index(letter)] if letter else None


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)")


def lenient_option(output: str, record: dict) -> str | None:
    """A diagnostic reading of a completion that names no option exactly (NOT the project's scorer): the
    option nearest to the first number it gives (numeric options), or the only option sharing its first
    three words ("there is no white cube in the video" -> "there is no brown cube in the video")."""
    tag = re.search(r"<answer>(.*?)(?:</answer>|$)", output, re.DOTALL)
    text = (tag.group(1) if tag else output).strip()
    values = [_num(o) for o in record["options"]]
    if None not in values:
        match = _NUMBER.search(text)
        if not match:
            return None
        v = float(match.group(0))
        return record["options"][min(range(len(values)), key=lambda i: abs(values[i] - v))]
    head = " ".join(text.lower().split()[:3])
    hits = [o for o in record["options"] if head and " ".join(o.lower().split()[:3]) == head]
    return hits[0] if len(hits) == 1 else None


def lenient(predictions: list[dict], bench: dict[str, dict], dynamic: tuple[str, ...]) -> dict:
    """Per dynamic mc category: accuracy when unmatched completions are read with ``lenient_option``."""
    groups = defaultdict(list)
    for p in predictions:
        if p["answer_type"] == "mc" and p["category"] in dynamic:
            groups[p["category"]].append(p)
    out = {}
    for cat, rows in groups.items():
        acc = {}
        for who in ("model", "blind"):
            hits = []
            for p in rows:
                r = bench[p["id"]]
                row = p if who == "model" else p["blind"]
                if row["extracted"]["letter"]:
                    hits.append(bool(row["correct"]))
                else:
                    hits.append(lenient_option(row["output"], r) == r["answer_text"])
            acc[who] = _mean(hits)
        out[cat] = {"n": len(rows), **acc, "points": 100 * (acc["model"] - acc["blind"])}
    return {"per_category": out, "macro_points": _mean(v["points"] for v in out.values()),
            "model_macro_acc": _mean(v["model"] for v in out.values()),
            "blind_macro_acc": _mean(v["blind"] for v in out.values())}


def numeric_error(predictions: list[dict], bench: dict[str, dict]) -> dict:
    """Quantity mc records: mean relative error of the first number the completion gives (model, blind)."""
    errs = defaultdict(lambda: {"model": [], "blind": []})
    for p in predictions:
        r = bench[p["id"]]
        truth = _num(r["answer_text"]) if p["answer_type"] == "mc" else None
        if not truth or None in [_num(o) for o in r["options"]] or r["category"] == "counting":
            continue
        for who, row in (("model", p), ("blind", p["blind"])):
            m = _NUMBER.search(row["output"])
            if m:
                errs[r["category"]][who].append(abs(float(m.group(0)) - truth) / abs(truth))
    return {c: {"n": len(e["model"]), "model_mean_rel_error": _mean(e["model"]), "blind_mean_rel_error": _mean(e["blind"])}
            for c, e in errs.items()}


def text_baselines(sft: list[dict], bench: list[dict]) -> dict:
    """Scores of answering from the sft split's text statistics alone, per category (mc and numeric)."""
    from components.evaluation.answers import mean_relative_accuracy

    answers = defaultdict(Counter)
    numeric = defaultdict(list)
    for r in sft:
        if r["answer_type"] == "mc":
            answers[r["category"]][r["answer_text"]] += 1
        else:
            numeric[(r["category"], r["unit"])].append(float(r["answer"]))
    out: dict[str, dict] = defaultdict(dict)
    by_cat = defaultdict(list)
    for r in bench:
        by_cat[(r["category"], r["answer_type"])].append(r)
    for (cat, kind), rows in sorted(by_cat.items()):
        if kind == "mc":
            counts = answers.get(cat, Counter())
            majority = counts.most_common(1)[0][0] if counts else None
            prior = [max(r["options"], key=lambda o: (counts.get(o, 0), -r["options"].index(o))) for r in rows]
            central = []
            for r in rows:
                values = [_num(o) for o in r["options"]]
                if None in values:
                    central.append(None)
                    continue
                mean = sum(values) / len(values)
                central.append(r["options"][min(range(len(values)), key=lambda i: abs(values[i] - mean))])
            quantity = [c is not None for c in central]
            combined = [c if c is not None else p for c, p in zip(central, prior)]
            out[cat]["mc"] = {
                "n": len(rows),
                "sft_majority_answer": majority,
                "sft_majority_share": counts[majority] / sum(counts.values()) if majority else None,
                "sft_distinct_answers": len(counts),
                "majority_answer_acc": _mean(r["answer_text"] == majority for r in rows),
                "most_frequent_option_acc": _mean(r["answer_text"] == p for r, p in zip(rows, prior)),
                "central_numeric_option_acc": (_mean(r["answer_text"] == c for r, c in zip(rows, central) if c)
                                               if any(quantity) else None),
                "central_else_most_frequent_acc": _mean(r["answer_text"] == c for r, c in zip(rows, combined)),
                "quantity_share": _mean(quantity),
            }
        else:
            scores = []
            for r in rows:
                ref = numeric.get((cat, r["unit"])) or [v for (c, _), vs in numeric.items() if c == cat for v in vs]
                scores.append(mean_relative_accuracy(statistics.median(ref), float(r["answer"])) if ref else 0.0)
            out[cat]["numeric"] = {"n": len(rows), "sft_median_mra": _mean(scores)}
    return dict(out)


def breakdown(predictions: list[dict], bench: dict[str, dict]) -> dict:
    """Per category and answer type: model / blind score, format validity, vision changes, concentration."""
    from components.evaluation.metrics import random_baseline

    groups = defaultdict(list)
    for p in predictions:
        groups[(p["category"], p["answer_type"])].append(p)
    out: dict[str, dict] = defaultdict(dict)
    for (cat, kind), rows in sorted(groups.items()):
        recs = [bench[p["id"]] for p in rows]
        entry = {
            "n": len(rows),
            "model": _mean(p["score"] for p in rows),
            "blind": _mean(p["blind"]["score"] for p in rows) if rows[0].get("blind") else None,
            "random": random_baseline(recs),
            "format_valid": _mean(p["extracted"]["format_valid"] for p in rows),
            "blind_format_valid": (_mean(p["blind"]["extracted"]["format_valid"] for p in rows)
                                   if rows[0].get("blind") else None),
        }
        if kind == "mc":
            texts = [option_text(p, r) for p, r in zip(rows, recs)]
            top, top_n = Counter(texts).most_common(1)[0]
            entry |= {
                "answered": _mean(t is not None for t in texts),
                "most_common_prediction": top,
                "most_common_prediction_share": top_n / len(texts),
                "distinct_predictions": len(set(texts)),
            }
            if rows[0].get("blind"):
                blind_texts = [option_text({"extracted": p["blind"]["extracted"]}, r) for p, r in zip(rows, recs)]
                entry["same_answer_as_blind"] = _mean(a == b for a, b in zip(texts, blind_texts))
        elif rows[0].get("blind"):
            entry["same_value_as_blind"] = _mean(p["extracted"]["value"] == p["blind"]["extracted"]["value"]
                                                 for p in rows)
        out[cat][kind] = entry
    return dict(out)


def headline(by: dict, dynamic: tuple[str, ...]) -> dict:
    """SFT minus blind on the dynamic categories' multiple-choice records (macro and micro), in points."""
    cats = [c for c in dynamic if "mc" in by.get(c, {})]
    diffs = {c: 100 * (by[c]["mc"]["model"] - by[c]["mc"]["blind"]) for c in cats}
    n = sum(by[c]["mc"]["n"] for c in cats)
    micro = sum(by[c]["mc"]["n"] * (by[c]["mc"]["model"] - by[c]["mc"]["blind"]) for c in cats) / n if n else None
    return {
        "categories": cats,
        "per_category_points": diffs,
        "macro_points": _mean(diffs.values()),
        "micro_points": 100 * micro if micro is not None else None,
        "model_macro_acc": _mean(by[c]["mc"]["model"] for c in cats),
        "blind_macro_acc": _mean(by[c]["mc"]["blind"] for c in cats),
        "random_macro_acc": _mean(by[c]["mc"]["random"] for c in cats),
        "n_records": n,
    }


def auto_notes(head: dict, by: dict, baselines: dict, best_text: dict, lenient_sft: dict) -> list[str]:
    """Plain-language findings computed from the numbers (the script's own reading; --note adds more)."""
    cats = head["categories"]
    notes = []
    learned = [c for c in cats if head["per_category_points"][c] >= 5]
    notes.append(f"SFT beats blind by >= 5 points in {len(learned)}/{len(cats)} dynamic mc categories"
                 + (f" ({', '.join(learned)})" if learned else "") + "; per category (points): "
                 + ", ".join(f"{c} {head['per_category_points'][c]:+.1f}" for c in cats))
    valid = _mean(by[c]["mc"]["format_valid"] for c in cats)
    answered = _mean(by[c]["mc"]["answered"] for c in cats)
    notes.append(f"format: {100 * valid:.1f}% of SFT answers on dynamic mc records are in an <answer> tag and "
                 f"{100 * answered:.1f}% name an option (macro over categories)")
    same = _mean(by[c]["mc"]["same_answer_as_blind"] for c in cats)
    notes.append(f"vision: SFT gives the same option with and without frames on {100 * same:.1f}% of dynamic mc "
                 f"records (macro)")
    blind_vs_text = [c for c in cats if by[c]["mc"]["blind"] >= best_text[c] - 0.05]
    notes.append(f"blind is within 5 points of (or above) the best text-only baseline from the sft split in "
                 f"{len(blind_vs_text)}/{len(cats)} dynamic mc categories: blind = "
                 f"{100 * _mean(by[c]['mc']['blind'] for c in cats):.1f}% vs best text baseline "
                 f"{100 * _mean(best_text.values()):.1f}% vs majority answer "
                 f"{100 * _mean(baselines[c]['mc']['majority_answer_acc'] for c in cats):.1f}% (macro)")
    notes.append(f"diagnostic (not the project's scorer): reading completions that name no option as the nearest "
                 f"numeric option / the option with the same first three words gives SFT minus blind "
                 f"{lenient_sft['macro_points']:+.1f} points (SFT {100 * lenient_sft['model_macro_acc']:.1f}%, blind "
                 f"{100 * lenient_sft['blind_macro_acc']:.1f}%); per category: " + ", ".join(
                     f"{c} {v['points']:+.1f}" for c, v in lenient_sft["per_category"].items()))
    collapsed = [c for c in cats if by[c]["mc"]["most_common_prediction_share"] >= 0.8]
    if collapsed:
        notes.append("SFT predictions collapse onto one option text (>= 80% of records) in: " + ", ".join(
            f"{c} ('{by[c]['mc']['most_common_prediction']}', {100 * by[c]['mc']['most_common_prediction_share']:.0f}%)"
            for c in collapsed))
    return notes


def other_run(path: Path) -> dict:
    d = json.loads(path.read_text())
    a = d["analysis"]
    return {"file": str(path), "clips": d["clips"], "steps": d["train"]["steps"], "train_seconds": d["train"]["seconds"],
            "final_loss": d["train"]["losses"][-1] if d["train"]["losses"] else None, "loadavg_start": d["loadavg_start"], "loadavg_end": d["loadavg_end"],
            "sft_minus_blind_dynamic_mc_points": d["summary"]["sft_minus_blind_dynamic_mc_points"],
            "per_category_points": d["summary"]["dynamic_mc"]["per_category_points"],
            "sft_macro_acc": d["summary"]["dynamic_mc"]["model_macro_acc"],
            "blind_macro_acc": d["summary"]["dynamic_mc"]["blind_macro_acc"],
            "sft_split_fit_dynamic_mc_points": (a.get("sft_split_fit") or {}).get("dynamic_mc", {}).get("macro_points"),
            "vision_changes_answer_share": a["vision_changes_answer_share"],
            "lenient_macro_points": a["lenient_reading_diagnostic"]["macro_points"],
            "notes": a["notes"]}


def category_table(by_sft: dict, by_zero: dict, baselines: dict) -> str:
    head = ("| category | type | n | SFT | blind (SFT) | zero-shot | random | sft majority | most frequent option "
            "| central option (else most frequent) / sft median MRA | SFT format valid | SFT = blind answer | SFT top prediction (share) |")
    lines = [head, "|" + "---|" * 13]
    for cat, kinds in by_sft.items():
        for kind, e in kinds.items():
            b = baselines.get(cat, {}).get(kind, {})
            z = by_zero.get(cat, {}).get(kind, {})

            def pct(x):
                return "-" if x is None else f"{100 * x:.1f}"

            if kind == "mc":
                extra = [pct(b.get("majority_answer_acc")), pct(b.get("most_frequent_option_acc")),
                         pct(b.get("central_else_most_frequent_acc")), pct(e["format_valid"]),
                         pct(e.get("same_answer_as_blind")),
                         f"{e['most_common_prediction']} ({100 * e['most_common_prediction_share']:.0f}%)"]
            else:
                extra = ["-", "-", pct(b.get("sft_median_mra")), pct(e["format_valid"]),
                         pct(e.get("same_value_as_blind")), "-"]
            lines.append(f"| {cat} | {kind} | {e['n']} | {pct(e['model'])} | {pct(e['blind'])} | {pct(z.get('model'))} "
                         f"| {pct(e['random'])} | " + " | ".join(extra) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "presets" / "small.yaml"))
    ap.add_argument("--clips", type=int, default=0, help="0: the preset's scenes.num_clips")
    ap.add_argument("--steps", type=int, default=0, help="0: the preset's sft.max_steps")
    ap.add_argument("--max-records", type=int, default=-1, help="-1: the preset's evaluate.max_records (0 = all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    ap.add_argument("--work", default="", help="keep data and models here (and reuse them); default: a temp dir")
    ap.add_argument("--out", default=str(RESULTS / "learning_small.json"))
    ap.add_argument("--analyse-only", action="store_true",
                    help="with --work: recompute the JSON / markdown from the kept evaluation (no training)")
    ap.add_argument("--train-fit-records", type=int, default=256,
                    help="also evaluate the SFT model on this many sft-split records (memorisation check); 0: skip")
    ap.add_argument("--compare", action="append", default=[],
                    help="another learning_small JSON (e.g. fewer steps) to summarise under analysis.other_runs")
    ap.add_argument("--note", action="append", default=[], help="a finding to add to analysis.notes (repeatable)")
    args = ap.parse_args()
    if args.analyse_only and not args.work:
        ap.error("--analyse-only needs --work")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from components.config import load_params
    from components.curation.run import curate
    from components.curation.schema import DYNAMIC_CATEGORIES, read_records
    from components.evaluation.checkpoint import evaluate_checkpoint
    from components.evaluation.report import EvalResult, comparison_table
    from components.io import read_jsonl
    from components.models import build_base_model, tokenizer_corpus
    from components.scenes import render_scenes
    from components.training.sft import TrainResult, run_sft

    overrides = [f"scenes.num_clips={args.clips}"] if args.clips else []
    overrides += [f"sft.max_steps={args.steps}"] if args.steps else []
    overrides += [f"evaluate.max_records={args.max_records}"] if args.max_records >= 0 else []
    params = load_params(args.params, overrides)
    out_json = Path(args.out)
    load_start = loadavg()
    timings: dict[str, float] = {}
    tmp = None if args.work else tempfile.TemporaryDirectory(prefix="bench-learning-")
    work = Path(args.work or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    say(f"work dir {work}; {params.scenes.num_clips} clips, {params.sft.max_steps} SFT steps x batch "
        f"{params.sft.batch_size}, eval max_records {params.evaluate.max_records}, torch threads {torch.get_num_threads()}")
    try:
        scenes, curated = work / "scenes", work / "curated"
        start = time.perf_counter()
        if not (curated / "bench.jsonl").is_file():
            render_scenes(params.scenes, scenes, workers=params.curation.workers, progress=False)
            timings["render_s"] = time.perf_counter() - start
            say(f"rendered {params.scenes.num_clips} clips in {timings['render_s']:.0f} s")
            start = time.perf_counter()
            stats = curate(scenes, params.curation, curated, progress=False)
            timings["curate_s"] = time.perf_counter() - start
            say(f"curated {stats['records']} records in {timings['curate_s']:.0f} s")
        sft_records = read_records(curated / "sft.jsonl", split="sft")
        bench_all = read_records(curated / "bench.jsonl", split="bench")
        records = {s: len(read_jsonl(curated / f"{s}.jsonl")) for s in ("sft", "rft", "bench")}

        start = time.perf_counter()
        base = work / "base"
        if not (base / "meta.json").is_file():
            build_base_model(params.model, tokenizer_corpus(sft_records, params.model), base)
        timings["base_model_s"] = time.perf_counter() - start
        meta = json.loads((base / "meta.json").read_text())
        say(f"base model: {meta['parameters']['all']:,} parameters, vocab {meta.get('vocab_size')}")

        if args.analyse_only:
            saved = json.loads((work / "timings.json").read_text())
            timings, load_start, load_end = saved["timings_s"], saved["loadavg_start"], saved["loadavg_end"]
            sft_meta = json.loads((work / "sft" / "meta.json").read_text())
            trained = TrainResult(work / "sft" / "model", sft_meta["losses"], sft_meta["steps"],
                                  saved["timings_s"].get("sft_train_s", float("nan")),
                                  sft_meta["train_metrics"].get("train_samples_per_second", float("nan")),
                                  sft_meta["train_metrics"])
        else:
            start = time.perf_counter()
            say(f"SFT: {params.sft.max_steps} steps on {len(sft_records)} records "
                f"({params.sft.max_steps * params.sft.batch_size / len(sft_records):.1f} epochs)")
            trained = run_sft(params.sft, params.model, curated, base, work / "sft", progress=False)
            timings["sft_s"] = time.perf_counter() - start
            timings["sft_train_s"] = trained.seconds
            losses = f"loss {trained.losses[0]:.3f} -> {trained.losses[-1]:.3f}" if trained.losses else "no loss logged"
            say(f"SFT done in {timings['sft_s']:.0f} s ({trained.samples_per_s:.1f} samples/s); {losses}")

        metrics_files = {}
        evals = {}
        for name, model_dir in (("zero-shot", base), ("sft", trained.model_dir)):
            folder = work / "eval" / name
            metrics_files[name] = folder / "metrics.json"
            if args.analyse_only:
                metrics = json.loads(metrics_files[name].read_text())
                evals[name] = EvalResult({k: metrics[k] for k in ("model", "blind", "random")},
                                         read_jsonl(folder / "predictions.jsonl"))
                continue
            start = time.perf_counter()
            say(f"evaluating {name} (blind baseline on) ...")
            result = evaluate_checkpoint(params.evaluate, params.model, curated, model_dir, folder, name=name,
                                         progress=False)
            timings[f"eval_{name}_s"] = time.perf_counter() - start
            evals[name] = result
            m = result.metrics
            say(f"{name}: model {m['model']['overall']['value']:.3f}, blind {m['blind']['overall']['value']:.3f}, "
                f"random {m['random']['overall']['value']:.3f} in {timings[f'eval_{name}_s']:.0f} s")
        if not args.analyse_only:
            load_end = loadavg()
            (work / "timings.json").write_text(json.dumps({"timings_s": timings, "loadavg_start": load_start,
                                                            "loadavg_end": load_end}))
        table = comparison_table(metrics_files)

        bench = {r["id"]: r for r in bench_all}
        evaluated = [bench[p["id"]] for p in evals["sft"].predictions]
        by_sft = breakdown(evals["sft"].predictions, bench)
        by_zero = breakdown(evals["zero-shot"].predictions, bench)
        baselines = text_baselines(sft_records, evaluated)
        head = headline(by_sft, DYNAMIC_CATEGORIES)
        head_zero = headline(by_zero, DYNAMIC_CATEGORIES)
        dyn = head["categories"]
        train_fit = None
        if args.train_fit_records:
            from components.evaluation.harness import evaluate
            from components.models import load_model
            from components.models.generation import make_generate_fn

            step = max(1, len(sft_records) // args.train_fit_records)
            subset = sft_records[::step][: args.train_fit_records]
            model, processor = load_model(trained.model_dir, params.model)
            gen = make_generate_fn(model, processor, params.model, max_new_tokens=params.evaluate.max_new_tokens)
            fit = evaluate(subset, gen, batch_size=params.evaluate.batch_size, blind_baseline=True, progress=False)
            fit_by = breakdown(fit.predictions, {r["id"]: r for r in subset})
            fit_head = headline(fit_by, DYNAMIC_CATEGORIES)
            train_fit = {"records": len(subset), "overall": {k: fit.metrics[k]["overall"]["value"] for k in ("model", "blind")},
                         "dynamic_mc": {k: fit_head[k] for k in ("macro_points", "model_macro_acc", "blind_macro_acc")},
                         "per_category_mc": {c: {k: v["mc"][k] for k in ("model", "blind", "format_valid")}
                                             for c, v in fit_by.items() if "mc" in v}}
            say(f"sft split fit ({len(subset)} records): model {train_fit['overall']['model']:.3f}, blind "
                f"{train_fit['overall']['blind']:.3f}; dynamic mc SFT - blind {fit_head['macro_points']:+.1f} points")
        lenient_sft = lenient(evals["sft"].predictions, bench, DYNAMIC_CATEGORIES)
        quantity_error = numeric_error(evals["sft"].predictions, bench)
        best_text = {c: max(baselines[c]["mc"][k] for k in ("majority_answer_acc", "most_frequent_option_acc",
                                                             "central_else_most_frequent_acc")) for c in dyn}
        analysis = {
            "goal_met": head["macro_points"] is not None and head["macro_points"] >= GOAL_POINTS,
            "sft_mc_format_valid": _mean(p["extracted"]["format_valid"] for p in evals["sft"].predictions),
            "sft_blind_format_valid": _mean(p["blind"]["extracted"]["format_valid"] for p in evals["sft"].predictions),
            "zero_shot_format_valid": _mean(p["extracted"]["format_valid"] for p in evals["zero-shot"].predictions),
            "dynamic_mc_sft_macro_acc": head["model_macro_acc"],
            "dynamic_mc_blind_macro_acc": head["blind_macro_acc"],
            "dynamic_mc_best_text_baseline_macro_acc": _mean(best_text.values()),
            "dynamic_mc_majority_answer_macro_acc": _mean(baselines[c]["mc"]["majority_answer_acc"] for c in dyn),
            "sft_minus_best_text_baseline_points": {c: 100 * (by_sft[c]["mc"]["model"] - best_text[c]) for c in dyn},
            "vision_changes_answer_share": {c: 1 - by_sft[c]["mc"]["same_answer_as_blind"] for c in dyn},
            "categories_learned_beyond_blind_5pt": [c for c in dyn if head["per_category_points"][c] >= 5],
            "categories_at_or_below_blind": [c for c in dyn if head["per_category_points"][c] <= 0],
            "sft_split_fit": train_fit,
            "lenient_reading_diagnostic": lenient_sft,
            "quantity_mc_relative_error": quantity_error,
            "other_runs": [other_run(Path(f)) for f in args.compare],
            "notes": auto_notes(head, by_sft, baselines, best_text, lenient_sft) + list(args.note),
        }
        if train_fit:
            analysis["notes"].insert(1, (
                f"generalisation: on {train_fit['records']} sft-split (training) records SFT minus blind is "
                f"{train_fit['dynamic_mc']['macro_points']:+.1f} points (SFT {100 * train_fit['dynamic_mc']['model_macro_acc']:.1f}%, "
                f"blind {100 * train_fit['dynamic_mc']['blind_macro_acc']:.1f}%) against {head['macro_points']:+.1f} on the "
                f"bench clips: what the model reads from the frames of the training clips does not transfer to unseen clips"))
        result_json = {
            "what": "small preset on the CPU: render + curate, base model, SFT (TRL SFTTrainer), evaluate_checkpoint "
                    "(blind on) for zero-shot and SFT. Headline = SFT minus blind, accuracy on the multiple-choice "
                    "records of each dynamic category, averaged over those categories (macro), in points.",
            "params": args.params, "overrides": overrides, "clips": params.scenes.num_clips,
            "sft": asdict(params.sft), "evaluate": asdict(params.evaluate), "model_parameters": meta["parameters"],
            "records": records, "bench_records_evaluated": len(evaluated),
            "train": {"steps": trained.steps, "seconds": trained.seconds, "samples_per_s": trained.samples_per_s,
                      "epochs": trained.steps * params.sft.batch_size * params.sft.grad_accum / len(sft_records),
                      "losses": trained.losses},
            "timings_s": timings, "machine": machine(), "torch_threads": torch.get_num_threads(),
            "loadavg_start": load_start, "loadavg_end": load_end,
            "summary": {
                "goal_points": GOAL_POINTS,
                "sft_minus_blind_dynamic_mc_points": head["macro_points"],
                "sft_minus_blind_dynamic_mc_points_micro": head["micro_points"],
                "zero_shot_minus_blind_dynamic_mc_points": head_zero["macro_points"],
                "goal_met": analysis["goal_met"],
                "dynamic_mc": head,
                "overall": {name: {row: evals[name].metrics[row]["overall"]["value"]
                                   for row in ("model", "blind", "random")} for name in evals},
                "dynamic": {name: {row: evals[name].metrics[row]["dynamic"]["value"]
                                   for row in ("model", "blind", "random")} for name in evals},
            },
            "per_category": {
                name: {row: {c: (a["value"] if a else None) for c, a in evals[name].metrics[row]["per_category"].items()}
                       for row in ("model", "blind", "random")} for name in evals
            },
            "per_category_and_type": {"sft": by_sft, "zero-shot": by_zero},
            "text_baselines_from_sft_split": baselines,
            "analysis": analysis,
        }
        md = [f"# Learning at the small preset (CPU): {params.scenes.num_clips} clips, {trained.steps} SFT steps", "",
              (f"SFT minus blind, dynamic multiple-choice categories (macro): **{head['macro_points']:+.1f} points** "
               f"(goal >= +{GOAL_POINTS:.0f}; micro {head['micro_points']:+.1f}); zero-shot minus blind "
               f"{head_zero['macro_points']:+.1f}. Load average {load_start} -> {load_end}; torch threads "
               f"{torch.get_num_threads()}; SFT {trained.steps} steps in {timings.get('sft_train_s', float('nan')):.0f} s."),
              "",
              "## Comparison table (components.evaluation.report.comparison_table, %)", "", table,
              "## Per category and answer type (%; text baselines computed from the sft split)", "",
              category_table(by_sft, by_zero, baselines), "",
              "## Diagnostic: lenient reading of unmatched completions (not the project's scorer, %)", "",
              "| category | n | SFT | blind | SFT - blind (points) |", "|---|---|---|---|---|"]
        md += [f"| {c} | {v['n']} | {100 * v['model']:.1f} | {100 * v['blind']:.1f} | {v['points']:+.1f} |"
               for c, v in lenient_sft["per_category"].items()]
        md += [(f"| macro | | {100 * lenient_sft['model_macro_acc']:.1f} | {100 * lenient_sft['blind_macro_acc']:.1f} "
                f"| {lenient_sft['macro_points']:+.1f} |"), "", "## Analysis notes", ""]
        md += [f"- {n}" for n in analysis["notes"]]
        md += [""]
        out_json.parent.mkdir(parents=True, exist_ok=True)
        out_json.write_text(json.dumps(rounded(result_json), indent=2) + "\n")
        out_json.with_suffix(".md").write_text("\n".join(md) + "\n")
        say(f"SFT - blind (dynamic mc, macro) {head['macro_points']:+.1f} points (goal >= +{GOAL_POINTS:.0f}); "
            f"SFT {100 * head['model_macro_acc']:.1f}% blind {100 * head['blind_macro_acc']:.1f}% random "
            f"{100 * head['random_macro_acc']:.1f}% -> {out_json}")
        print(table)
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
