"""The promotion gate's decision: is the challenger better than the champion on the same bench records?

Pure: two lists of per-record prediction rows (``predictions.jsonl`` of ``evaluate``) and the rules in
``PromoteConfig`` in, a ``Decision`` out; the registry side (which versions, where their predictions are,
tags and aliases) is ``components.tracking.promotion``.

The rules, in order (every failed one is a reason; the challenger is promoted only with no reason):

1. Answer format: the challenger's share of answers with a readable ``<answer>`` is at least
   ``min_format_valid`` (a model that cannot answer in format is not served, champion or not).
2. Learning (``require_learning``): the challenger's learning headline (its dynamic mc macro over the
   stronger of its shuffled-video and text-only controls) has a lower bound above zero: a model that does
   not beat its controls has not learned from the video, whatever it scores.
3. Improvement (only when there is a champion): the lower bound of the paired clip-level 95% interval of
   challenger - champion on ``metric`` exceeds ``margin``. Paired: every bootstrap replicate resamples the
   same clips for both models, so what the clips share (their difficulty) cancels.
4. No regression: no category drops by more than ``tolerance`` with its paired interval below zero (a drop
   that noise explains is not a regression: a bench category holds a few dozen records).

The first model becomes champion when there is none, if it passes rules 1 and 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from components.config import PromoteConfig
from components.evaluation.metrics import clip_of, is_dynamic_mc, paired_clip_bootstrap


@dataclass
class Decision:
    promote: bool
    reasons: list[str]  # why not (empty when promoted), or why promoted without a comparison
    metric: str
    challenger: float  # the metric's point value
    champion: float | None
    improvement: dict | None  # {"value", "ci"}: challenger - champion, paired clip bootstrap
    format_valid: float
    headline: dict | None  # the challenger's learning headline, as evaluation wrote it
    categories: dict[str, dict] = field(default_factory=dict)  # category -> challenger, champion, delta, ci, n

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def verdict(self) -> str:
        return "promoted" if self.promote else "rejected"

    def markdown(self, challenger: str, champion: str | None) -> str:
        """The decision, its reasons and the per-category table, as a model version's description shows it."""
        pct = lambda v: "-" if v is None else f"{100 * v:.1f}"
        ci = lambda d: "" if not d else f" [{100 * d['ci'][0]:+.1f}, {100 * d['ci'][1]:+.1f}]"
        lines = [f"**{self.verdict}**: {challenger} vs {champion or 'no champion'} on `{self.metric}`: "
                 f"{pct(self.challenger)} vs {pct(self.champion)}"
                 + (f", improvement {100 * self.improvement['value']:+.1f}{ci(self.improvement)}"
                    if self.improvement else "") + f"; answer format valid {pct(self.format_valid)}%.", ""]
        lines += [f"- {r}" for r in self.reasons] + ([""] if self.reasons else [])
        if self.categories:
            lines += ["| category | n | challenger | champion | delta [95% CI] |", "|---|---|---|---|---|"]
            for name, c in self.categories.items():
                delta = "-" if c["delta"] is None else f"{100 * c['delta']:+.1f}{ci(c)}"
                lines.append(f"| {name} | {c['n']} | {pct(c['challenger'])} | {pct(c['champion'])} | {delta} |")
        return "\n".join(lines)


def _rows_for(metric: str, rows: list[dict]) -> list[dict]:
    return [r for r in rows if is_dynamic_mc(r)] if metric == "dynamic_mc_macro" else rows


def _paired(rows: list[dict], challenger: dict[str, float], champion: dict[str, float], *, by_category: bool,
            cfg: PromoteConfig) -> dict:
    """challenger - champion over ``rows`` (a macro over categories, or one column), paired clip bootstrap."""
    scores = {"challenger": [challenger[r["id"]] for r in rows], "champion": [champion[r["id"]] for r in rows]}
    columns = [r["category"] if by_category else "all" for r in rows]
    return paired_clip_bootstrap(scores, [clip_of(r) for r in rows], columns,
                                 lambda m: m["challenger"] - m["champion"], n=cfg.bootstrap_samples, seed=cfg.seed)


def _check_same_records(challenger: list[dict], champion: list[dict]) -> None:
    """Both models must have answered the same questions (same ids, categories and true answers)."""
    key = lambda r: (r["category"], str(r["answer"]))
    a, b = {r["id"]: key(r) for r in challenger}, {r["id"]: key(r) for r in champion}
    differ = sorted(set(a) ^ set(b)) + sorted(i for i in set(a) & set(b) if a[i] != b[i])
    if differ:
        raise ValueError(f"challenger and champion were evaluated on different bench records ({len(differ)} differ, "
                         f"e.g. {differ[:3]}): evaluate the champion on the challenger's bench first")


def decide(challenger: list[dict], champion: list[dict] | None, cfg: PromoteConfig,
           headline: dict | None = None) -> Decision:
    """The gate's decision for ``challenger``'s prediction rows against ``champion``'s (None: no champion).
    ``headline``: the challenger's learning headline (``metrics.json``'s ``headline``), for ``require_learning``."""
    if not challenger:
        raise ValueError("the challenger has no prediction rows")
    reasons: list[str] = []
    format_valid = float(np.mean([bool(r["extracted"]["format_valid"]) for r in challenger]))
    if format_valid < cfg.min_format_valid:
        reasons.append(f"answer format valid in {100 * format_valid:.1f}% of answers, below the "
                       f"{100 * cfg.min_format_valid:.0f}% required")
    if cfg.require_learning:
        if headline is None:
            reasons.append("no learning headline (the challenger was evaluated without its controls)")
        elif headline["ci"][0] <= 0:
            reasons.append(f"does not beat its stronger control ({headline['stronger_control']}) on the dynamic mc "
                           f"macro: {100 * headline['value']:+.1f} [{100 * headline['ci'][0]:+.1f}, "
                           f"{100 * headline['ci'][1]:+.1f}] includes 0")
    rows = _rows_for(cfg.metric, challenger)
    if not rows:
        raise ValueError(f"no challenger record counts towards promote.metric={cfg.metric!r}")
    ours = {r["id"]: float(r["score"]) for r in challenger}
    if champion is None:
        own = _paired(rows, ours, ours, by_category=cfg.metric == "dynamic_mc_macro", cfg=cfg)["point"]
        first = "no champion yet: the first model that passes the format and learning checks becomes champion"
        return Decision(promote=not reasons, reasons=reasons or [first],
                        metric=cfg.metric, challenger=own["challenger"], champion=None, improvement=None,
                        format_valid=format_valid, headline=headline)
    _check_same_records(challenger, champion)
    theirs = {r["id"]: float(r["score"]) for r in champion}
    overall = _paired(rows, ours, theirs, by_category=cfg.metric == "dynamic_mc_macro", cfg=cfg)
    improvement = {"value": overall["value"], "ci": overall["ci"]}
    if overall["ci"][0] <= cfg.margin:
        reasons.append(f"improvement on {cfg.metric} {100 * overall['value']:+.1f} points, lower bound "
                       f"{100 * overall['ci'][0]:+.1f} not above the margin {100 * cfg.margin:+.1f}")
    categories = {}
    for category in sorted({r["category"] for r in challenger}):
        in_category = [r for r in challenger if r["category"] == category]
        d = _paired(in_category, ours, theirs, by_category=False, cfg=cfg)
        categories[category] = {"n": len(in_category), "challenger": d["point"]["challenger"],
                                "champion": d["point"]["champion"], "delta": d["value"], "ci": d["ci"]}
        if d["value"] < -cfg.tolerance and d["ci"][1] < 0:
            reasons.append(f"{category} regresses {100 * d['value']:+.1f} points [{100 * d['ci'][0]:+.1f}, "
                           f"{100 * d['ci'][1]:+.1f}] (tolerance {100 * cfg.tolerance:.1f})")
    return Decision(promote=not reasons, reasons=reasons, metric=cfg.metric,
                    challenger=overall["point"]["challenger"], champion=overall["point"]["champion"],
                    improvement=improvement, format_valid=format_valid, headline=headline, categories=categories)
