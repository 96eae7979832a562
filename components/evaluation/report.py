"""Evaluation reports: metrics.json, predictions.jsonl, a markdown report and a bar chart.

The tables follow the seeds' layout (4D-RGPT Tab. 3): one row per method, then Avg, Static, Dynamic,
the static categories, the dynamic categories; here followed by multiple-choice accuracy, numeric MRA
and the format-valid rate. Values are percentages. The 95% clip-level bootstrap intervals go in a second
table of the same layout so the first stays readable; a category a row has no records for shows "-".

Rows: the model, then its controls (``controls.py``): shuffled video, text-only trained, blank frames
("blind"), random; and the headline, the model's dynamic mc macro minus the stronger control's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from components.evaluation.controls import headline_text
from components.evaluation.metrics import category_order
from components.io import atomic_path, write_json, write_jsonl, write_text


@dataclass
class EvalResult:
    # {"model": aggregates, "blind": aggregates | None, "shuffled": aggregates | None, "random": aggregates};
    # see metrics.score.
    metrics: dict
    # One dict per record: id, clip_id, category, prompt_variant, answer_type, answer, output, extracted,
    # correct, mra, score, and "blind" / "shuffled" ({output, extracted, correct, mra, score}) when run.
    predictions: list[dict]


HEADLINE = (("Avg", "overall"), ("Static", "static"), ("Dynamic", "dynamic"), ("Dyn MC macro", "dynamic_mc_macro"))
# metrics.json key -> row name in a checkpoint's report, in this order
ROWS = (("model", "model"), ("shuffled", "shuffled video"), ("text_only", "text-only trained"), ("blind", "blind"),
        ("random", "random"))
TRAILER = (("MC acc", "mc_accuracy"), ("Numeric MRA", "numeric_mra"), ("Format valid", "format_valid"))


def _columns(rows: dict[str, dict], trailer: bool = True) -> list[tuple[str, str | None, str]]:
    """(header, category or None, aggregate key): Avg/Static/Dynamic, categories, then the trailer."""
    categories = {c for m in rows.values() for c in m["per_category"]}
    static, dynamic = category_order(categories)
    cols = [(h, None, k) for h, k in HEADLINE]
    cols += [(f"{c} (S)", c, "") for c in static] + [(f"{c} (D)", c, "") for c in dynamic]
    if trailer:
        cols += [(h, None, k) for h, k in TRAILER]
    return cols


def _cell(metrics: dict, category: str | None, key: str) -> dict | None:
    return metrics["per_category"].get(category) if category else metrics.get(key)


def _table(rows: dict[str, dict], render, trailer: bool = True) -> str:
    cols = _columns(rows, trailer)
    lines = ["| | " + " | ".join(h for h, _, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, metrics in rows.items():
        cells = [render(_cell(metrics, c, k)) for _, c, k in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pct(agg: dict | None) -> str:
    return "-" if agg is None else f"{100 * agg['value']:.1f}"


def _ci(agg: dict | None) -> str:
    if agg is None or agg["ci"] is None:
        return "-"
    return f"{100 * agg['ci'][0]:.1f}-{100 * agg['ci'][1]:.1f}"


def _n(agg: dict | None) -> str:
    return "-" if agg is None else str(agg["n"])


def _rows(metrics: dict) -> dict[str, dict]:
    return {label: metrics[key] for key, label in ROWS if metrics.get(key) is not None}


def _interval(agg: dict | None) -> str:
    if agg is None:
        return "-"
    if agg.get("ci") is None:
        return f"{100 * agg['value']:.1f}"
    return f"{100 * agg['value']:.1f} [{100 * agg['ci'][0]:.1f}, {100 * agg['ci'][1]:.1f}]"


def render_markdown(metrics: dict, title: str) -> str:
    rows = _rows(metrics)
    model = metrics["model"]
    variants = sorted(model["per_prompt_variant"])
    parts = [
        f"# {title}",
        "",
        (
            f"{model['n']} records ({metrics.get('input', 'video')}). Score = accuracy (multiple choice) or MRA "
            "(numeric), in percent; Avg, Static and Dynamic average the per-record scores; Dyn MC macro is the "
            "mean over the dynamic categories of their multiple-choice accuracy. Controls: shuffled video = the "
            "same model shown another bench clip's video (a fixed derangement of clips); text-only trained = "
            "the same SFT recipe trained and evaluated with blank frames; blind = the same model with its "
            "frames blanked; random = the expected score of uniform guessing. Intervals resample clips."
        ),
        "",
        f"**Headline**: {headline_text(metrics.get('headline'))}" if "headline" in metrics else "",
        "",
        "## Scores (%)",
        "",
        _table(rows, _pct),
        "",
        "## 95% clip-level bootstrap intervals (%) and record counts",
        "",
        _table({k: v for k, v in rows.items() if k != "random"}, _ci),  # random is exact: no interval
        "",
        _table({"n": model}, _n),
        "",
        "## By prompt variant (%)",
        "",
        "| | " + " | ".join(variants) + " |",
        "|---" * (len(variants) + 1) + "|",
    ]
    for name, m in rows.items():
        parts.append(
            f"| {name} | " + " | ".join(_pct(m["per_prompt_variant"].get(v)) for v in variants) + " |"
        )
    return "\n".join(parts) + "\n"


def _error_bar(agg: dict | None) -> list[float]:
    """(below, above) the value: matplotlib's asymmetric yerr, 0 where there is no interval."""
    if agg is None or agg["ci"] is None:
        return [0.0, 0.0]
    return [max(0.0, agg["value"] - agg["ci"][0]), max(0.0, agg["ci"][1] - agg["value"])]


def _chart(metrics: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = _rows(metrics)
    static, dynamic = category_order(metrics["model"]["per_category"])
    labels = ["Avg"] + static + dynamic
    x = np.arange(len(labels))
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.0))
    for i, (name, m) in enumerate(rows.items()):
        aggs = [m["overall"]] + [m["per_category"].get(c) for c in static + dynamic]
        values = [100 * a["value"] if a else 0.0 for a in aggs]
        errors = 100 * np.array([_error_bar(a) for a in aggs]).T
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, values, width, yerr=errors, capsize=2, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def write_report(result: EvalResult, out_dir: Path, *, title: str) -> dict[str, Path]:
    """Write metrics.json, predictions.jsonl, report.md and accuracy.png into ``out_dir``."""
    out_dir = Path(out_dir)
    paths = {
        "metrics": out_dir / "metrics.json",
        "predictions": out_dir / "predictions.jsonl",
        "report": out_dir / "report.md",
        "chart": out_dir / "accuracy.png",
    }
    write_json(paths["metrics"], {"title": title, **result.metrics})
    write_jsonl(paths["predictions"], result.predictions)
    write_text(paths["report"], render_markdown(result.metrics, title))
    _chart(result.metrics, paths["chart"], title)
    return paths


def comparison_table(metrics_files: dict[str, Path]) -> str:
    """Markdown across checkpoints, e.g. ``{"zero_shot": ..., "sft": ..., "sft_text_only": ...}``
    (metrics.json files), then the headline of each checkpoint that has one.

    Rows: each checkpoint's model row (a checkpoint evaluated on blank frames, the text-only-trained
    control, as "text-only trained (name)"), each checkpoint's shuffled-video and blind rows
    ("shuffled (sft)", "blind (sft)"), then the random row, once when every file has the same one.
    Columns: Avg/Static/Dynamic/Dyn MC macro + categories (%). A second table gives the clip-level
    intervals of Avg, Dynamic and the macro.
    """
    if not metrics_files:
        raise ValueError("comparison_table needs at least one metrics file")
    loaded = {name: json.loads(Path(path).read_text()) for name, path in metrics_files.items()}

    def label(name: str, m: dict) -> str:
        return f"text-only trained ({name})" if m.get("input") == "blank frames" else name

    rows = {label(name, m): m["model"] for name, m in loaded.items()}
    rows |= {f"shuffled ({name})": m["shuffled"] for name, m in loaded.items() if m.get("shuffled")}
    rows |= {f"blind ({name})": m["blind"] for name, m in loaded.items() if m.get("blind")}
    randoms = {json.dumps(m["random"], sort_keys=True) for m in loaded.values()}
    if len(randoms) == 1:
        rows["random"] = next(iter(loaded.values()))["random"]
    else:  # different record sets: the checkpoints were not evaluated on the same questions
        rows |= {f"random ({name})": m["random"] for name, m in loaded.items()}
    keys = (("Avg", "overall"), ("Dynamic", "dynamic"), ("Dyn MC macro", "dynamic_mc_macro"))
    intervals = ["| | " + " | ".join(h for h, _ in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    intervals += [f"| {name} | " + " | ".join(_interval(m.get(k)) for _, k in keys) + " |" for name, m in rows.items()]
    headlines = [f"- **{name}**: {headline_text(m['headline'])}" for name, m in loaded.items() if m.get("headline")]
    parts = [_table(rows, _pct, trailer=False), "", "95% clip-level bootstrap intervals (%):", "", "\n".join(intervals)]
    if headlines:
        parts += ["", ("Learning headline: the dynamic mc macro minus the stronger of shuffled video and "
                       "text-only trained:"), "", *headlines]
    return "\n".join(parts) + "\n"
