"""Controls that the text cannot fool, and the headline learning number measured against them.

A model that answers from the question alone can look like it learned 4D; so every evaluation carries,
beside random:

* **shuffled video**: the same checkpoint, each bench record's video (frames, their timestamps and the
  Set-of-Marks image) replaced by another bench clip's, through a fixed derangement of the clips. The
  pixels are in distribution (unlike blank frames once the vision tower trains) but show the wrong scene.
* **text-only trained**: the same SFT recipe trained and evaluated with every frame blanked
  (``model.blank_frames``; stage ``sft_text_only``): the best the priors give this architecture.
* **blank frames** (blind): the same checkpoint with black frames, kept for continuity.

The headline is the model's dynamic multiple-choice macro (``metrics.py``) minus the stronger of the
shuffled-video and text-only-trained controls, with a paired clip-level 95% bootstrap interval: each
replicate resamples bench clips once for all three systems and takes the stronger control *in that
replicate*, so the interval covers the choice of control too.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from components.evaluation.metrics import clip_of, is_dynamic_mc, paired_clip_bootstrap, summarise

log = logging.getLogger(__name__)

# What "the video" of a record is: everything the model sees that is not the question text.
VIDEO_FIELDS = ("frames", "timestamps", "frame_paths", "video")
CONTROLS = ("shuffled", "text_only")
CONTROL_NAMES = {"shuffled": "shuffled video", "text_only": "text-only trained", "blind": "blank frames"}


def clip_derangement(clips: list[str], seed: int = 0) -> dict[str, str]:
    """clip -> the clip whose video it gets: a seeded order of the distinct clips, each mapped to the next
    one (a single cycle), so no clip keeps its own video and the same clips give the same mapping."""
    distinct = sorted(set(clips))
    if len(distinct) < 2:
        raise ValueError(f"a derangement needs at least 2 clips, got {len(distinct)}")
    order = [distinct[i] for i in np.random.default_rng(seed).permutation(len(distinct))]
    return {clip: order[(i + 1) % len(order)] for i, clip in enumerate(order)}


def shuffled_video(records: list[dict], seed: int = 0) -> list[dict]:
    """Copies of ``records`` whose video comes from another clip of the same list (``clip_derangement``);
    question, options and answer are untouched. A record with a Set-of-Marks image gets the donor clip's
    (or none, so the donor's first frame, when the donor clip has no region question)."""
    mapping = clip_derangement([clip_of(r) for r in records], seed)
    video: dict[str, dict] = {}
    marks: dict[str, str] = {}
    for r in records:
        clip = clip_of(r)
        video.setdefault(clip, {k: copy.deepcopy(r[k]) for k in VIDEO_FIELDS if k in r})
        if r.get("som_image"):
            marks.setdefault(clip, r["som_image"])
    out = []
    for r in records:
        donor = mapping[clip_of(r)]
        new = {**r, **copy.deepcopy(video[donor])}
        if r.get("som_image"):
            new["som_image"] = marks.get(donor)
        out.append(new)
    return out


def text_only_rows(predictions: list[dict], text_only: list[dict]) -> list[dict]:
    """The text-only-trained checkpoint's predictions on the records of ``predictions`` (joined by id)."""
    by_id = {p["id"]: p for p in text_only}
    missing = [p["id"] for p in predictions if p["id"] not in by_id]
    if missing:
        raise ValueError(f"the text-only-trained predictions lack {len(missing)} of the {len(predictions)} evaluated "
                         f"records (e.g. {missing[:3]}): evaluate both checkpoints on the same bench records")
    return [by_id[p["id"]] for p in predictions]


def learning_headline(predictions: list[dict], text_only: list[dict] | None, *, n_boot: int = 1000,
                      seed: int = 0) -> dict | None:
    """The model's dynamic mc macro minus the stronger control's, with a paired clip-level interval.

    ``predictions``: the model's per-record rows (``score``, ``category``, ``answer_type``, ``clip_id``,
    and ``shuffled.score`` when the shuffled-video control ran); ``text_only``: the text-only-trained
    checkpoint's rows on the same records (or None). None when no control or no dynamic mc record is there.
    """
    rows = [p for p in predictions if is_dynamic_mc(p)]
    if not rows:
        return None
    scores = {"model": [float(p["score"]) for p in rows]}
    if all("shuffled" in p for p in rows):
        scores["shuffled"] = [float(p["shuffled"]["score"]) for p in rows]
    if text_only is not None:
        scores["text_only"] = [float(p["score"]) for p in text_only_rows(rows, text_only)]
    controls = [c for c in CONTROLS if c in scores]
    if not controls:
        return None

    def statistic(macros: dict[str, np.ndarray]) -> np.ndarray:
        return macros["model"] - np.max([macros[c] for c in controls], axis=0)

    clips, categories = [clip_of(p) for p in rows], [p["category"] for p in rows]
    result = paired_clip_bootstrap(scores, clips, categories, statistic, n=n_boot, seed=seed)
    differences = {c: paired_clip_bootstrap(scores, clips, categories, lambda m, c=c: m["model"] - m[c],
                                            n=n_boot, seed=seed) for c in controls}
    stronger = max(controls, key=lambda c: result["point"][c])
    lo, hi = result["ci"]
    return {
        "metric": "dynamic_mc_macro",
        "value": result["value"],
        "ci": result["ci"],
        "shown": bool(lo > 0 or hi < 0),
        "stronger_control": stronger,
        "model": result["point"]["model"],
        "controls": {c: result["point"][c] for c in controls},
        "differences": {c: {"value": d["value"], "ci": d["ci"]} for c, d in differences.items()},
        "n_records": len(rows),
        "n_clips": len(set(clips)),
    }


def add_headline(metrics: dict, predictions: list[dict], text_only: list[dict] | None, *,
                     n_boot: int = 1000, seed: int = 0) -> dict:
    """Add the text-only-trained row (its aggregates on the same records) and the headline to ``metrics``;
    each per-record row gets its text-only ``score`` beside the model's."""
    if text_only is not None:
        joined = text_only_rows(predictions, text_only)
        metrics["text_only"] = summarise(joined, n_boot=n_boot)
        for row, other in zip(predictions, joined):
            row["text_only"] = {k: other[k] for k in ("output", "correct", "score") if k in other}
    else:
        metrics.setdefault("text_only", None)
    metrics["headline"] = learning_headline(predictions, text_only, n_boot=n_boot, seed=seed)
    return metrics


def headline_text(headline: dict | None) -> str:
    """One line: "+12.3 points [+4.0, +20.1] over the stronger control (text-only trained 41.2%)"."""
    if not headline:
        return "no headline (no control ran)"
    lo, hi = headline["ci"]
    stronger = headline["stronger_control"]
    others = ", ".join(f"{CONTROL_NAMES[c]} {100 * v:.1f}%" for c, v in headline["controls"].items())
    return (f"{100 * headline['value']:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] on the dynamic mc macro "
            f"({100 * headline['model']:.1f}%) over the stronger control, {CONTROL_NAMES[stronger]} "
            f"({others}; paired clip-level 95% interval, {headline['n_clips']} clips, {headline['n_records']} records)")
