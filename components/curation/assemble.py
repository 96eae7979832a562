"""Clip results -> QA records: splits, options, balanced letters, ST-CoT, label agreement, exports, stats.

The ``bench`` split is labelled from ground truth when a clip has it (as benchmarks are), the ``sft`` and
``rft`` splits from the estimated geometry (as real data would be); every record carries the other
label in ``provenance`` so ``stats.json`` can report how often the curation agrees with the truth.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from components.config import CurationConfig
from components.curation.clip import ClipResult
from components.curation.cot import render_cot
from components.curation.questions import LABEL_SETS, QuestionSpec, answer_class
from components.curation.schema import CATEGORIES, LETTERS, SPLITS, STATIC_CATEGORIES

log = logging.getLogger(__name__)

# A class may exceed the rarest class's count by this fraction: shares then stay within +-5% (relative) of
# uniform, half the data gate's tolerance (quality.answer_balance_tolerance).
QUOTA_SLACK = 0.05
NUMERIC_TOLERANCE = 0.10  # a numeric label "agrees" with ground truth within 10% (the bar)


@dataclass
class Labelled:
    """One asked question: its label spec, the other source's spec for provenance, and its clip."""

    clip: ClipResult
    split: str
    label: QuestionSpec
    other: QuestionSpec | None
    label_source: str  # "ground_truth" | "estimated"
    as_numeric: bool


def _stable_hash(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def assign_splits(clip_ids: list[str], cfg: CurationConfig) -> dict[str, str]:
    """Whole clips go to one split (no leakage); order by a seeded hash, then cut by the fractions."""
    order = sorted(clip_ids, key=lambda c: _stable_hash(cfg.seed, c))
    n = len(order)
    fractions = [cfg.splits.sft, cfg.splits.rft, cfg.splits.bench]
    counts = [round(f * n) for f in fractions]
    # Every split with a non-zero fraction gets at least one clip when there are enough clips.
    for i, f in enumerate(fractions):
        if f > 0 and counts[i] == 0 and n >= sum(1 for x in fractions if x > 0):
            counts[i] = 1
    while sum(counts) > n:
        counts[int(np.argmax(counts))] -= 1
    counts[0] += n - sum(counts)
    out, start = {}, 0
    for split, count in zip(SPLITS, counts):
        for c in order[start : start + count]:
            out[c] = split
        start += count
    return out


def _select(specs: list[QuestionSpec], cap: int, rng: np.random.Generator) -> list[QuestionSpec]:
    """Up to ``cap`` questions, round-robin over categories so every category gets its share."""
    by_cat: dict[str, list[QuestionSpec]] = defaultdict(list)
    for s in specs:
        by_cat[s.category].append(s)
    for lst in by_cat.values():
        rng.shuffle(lst)
    cats = [c for c in CATEGORIES if c in by_cat]
    rng.shuffle(cats)
    chosen: list[QuestionSpec] = []
    while len(chosen) < cap and any(by_cat[c] for c in cats):
        for c in cats:
            if by_cat[c] and len(chosen) < cap:
                chosen.append(by_cat[c].pop())
    return chosen


def numeric_options(value: float, n: int, rng: np.random.Generator) -> list[float]:
    """A geometric ladder of ``n`` values at a random ratio in [1.3, 1.7], the truth on a uniform rung.

    The ladder's shape does not depend on which rung is the truth, so neither the truth's rank nor its
    distance to the options' mean, median or extremes says which option it is (a "pick the middle value"
    rule scored 61% on the earlier distractors drawn around the truth). Rungs differ by >= 30%.
    Returns the truth first, then the other rungs (the caller places the truth's letter).
    """
    ratio = float(rng.uniform(1.3, 1.7))
    rung = int(rng.integers(n))
    return [value] + [value * ratio ** (j - rung) for j in range(n) if j != rung]


def _fmt(value: float, unit: str | None) -> str:
    return f"{value:.2f} {unit}" if unit else f"{value:.2f}"


def _nearest(options: list[float], value: float) -> int:
    return int(np.argmin([abs(o - value) for o in options]))


def _agreement(label: QuestionSpec, other: QuestionSpec | None, as_numeric: bool) -> tuple[bool | None, float | None]:
    """Whether the other source gives the same answer; for quantities also the relative difference."""
    if other is None:
        return None, None
    if label.answer_type == "choice":
        return label.correct == other.correct, None
    rel = abs(other.value - label.value) / max(abs(label.value), 1e-9)
    return rel <= NUMERIC_TOLERANCE, rel


_PLACEHOLDER = re.compile(r"<R(\d+)>")


def build_records(items: list[Labelled], cfg: CurationConfig) -> dict[str, list[dict]]:
    """Turn asked questions into records; mc letters are balanced per split by construction."""
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    by_split: dict[str, list[Labelled]] = defaultdict(list)
    for it in items:
        by_split[it.split].append(it)
    for split, lst in by_split.items():
        lst.sort(key=lambda it: _stable_hash(cfg.seed, it.clip.clip_id, it.label.key))
        mc_index: Counter = Counter()
        for it in lst:
            rng = np.random.default_rng(_stable_hash(cfg.seed, "options", it.clip.clip_id, it.label.key))
            spec, n = it.label, cfg.num_options
            if spec.answer_type == "choice" or not it.as_numeric:
                if spec.answer_type == "choice":
                    # Options come from the answers that can be true: with a label set smaller than
                    # num_options (three rotations) the question gets fewer options, not a never-true one.
                    others = [c for c in spec.choices if c != spec.correct]
                    n = min(n, len(spec.choices))
                    texts = [spec.correct] + [others[i] for i in rng.permutation(len(others))[: n - 1]]
                    values = None
                else:
                    values = numeric_options(spec.value, n, rng)
                    texts = [_fmt(v, spec.unit) for v in values]
                # Balanced letters: the truth goes to letter k mod n (k counts this split's n-option
                # questions), the rest keep their shuffled order.
                target = mc_index[n] % n
                mc_index[n] += 1
                order = list(range(1, n))
                order.insert(target, 0)
                options = [texts[i] for i in order]
                answer, answer_text, answer_type = LETTERS[target], texts[0], "mc"
                gt_answer = None
                if it.other is not None and values is None:
                    gt_answer = LETTERS[options.index(it.other.correct)] if it.other.correct in options else "none"
                elif it.other is not None:
                    gt_answer = LETTERS[_nearest([values[i] for i in order], it.other.value)]
                agrees = None if gt_answer is None else gt_answer == answer
            else:
                options, answer_type = [], "numeric"
                answer = round(float(spec.value), 2)
                answer_text = f"{answer:.2f}"
                agrees, _ = _agreement(spec, it.other, True)
                gt_answer = None if it.other is None else round(float(it.other.value), 2)
            other_answer = gt_answer  # the answer the other geometry source gives
            out[split].extend(_records(it, spec, options, answer, answer_text, answer_type, other_answer, agrees))
    return out


def _records(it: Labelled, spec: QuestionSpec, options: list[str], answer, answer_text: str, answer_type: str,
             other_answer, agrees) -> list[dict]:
    clip = it.clip
    source = "gt" if it.label_source == "ground_truth" else "est"
    centers = clip.centers[source]
    obj_centers = centers["objects"].get(spec.primary) if spec.primary is not None else None
    ref = spec.extra.get("reference")
    marked = [i for i in sorted(clip.labels) if i in clip.regions]
    tokens = {i: f"<R{k + 1}>" for k, i in enumerate(marked)}
    base = {
        "qid": f"{clip.clip_id}:{spec.key}",
        "clip_id": clip.clip_id,
        "split": it.split,
        "category": spec.category,
        "answer_type": answer_type,
        "options": options,
        "answer": answer,
        "answer_text": answer_text,
        "answer_value": None if spec.value is None else round(float(spec.value), 4),
        "unit": spec.unit,
        "frames": clip.frames,
        "timestamps": clip.timestamps,
        "frame_paths": clip.frame_paths,
        "solution": {
            "answer": answer if answer_type == "mc" else float(answer),
            "answer_text": answer_text,
            "camera_center": centers["camera"],
            "object_center": obj_centers,
        },
        "provenance": {
            "label_source": it.label_source,
            "depth_source": clip.depth_source,
            "pose_source": clip.pose_source,
            "object_source": clip.object_source,
            "gt_answer": answer if it.label_source == "ground_truth" else other_answer,
            "estimated_answer": other_answer if it.label_source == "ground_truth" else answer,
            "agrees_with_gt": agrees,
            "static": spec.category in STATIC_CATEGORIES,
        },
    }
    variants = [("name", spec.by_name, [])] if spec.by_name is not None else []
    if spec.by_region is not None and all(i in tokens for i in spec.object_ids):
        def sub(m: re.Match) -> str:
            return tokens[spec.object_ids[int(m.group(1)) - 1]]

        question = _PLACEHOLDER.sub(sub, spec.by_region)
        regions = [{"token": tokens[i], "object_id": i, "label": clip.labels[i] or "unnamed (discovered)",
                    **clip.regions[i]}
                   for i in spec.object_ids]
        variants.append(("region", question, regions))
    records = []
    for variant, question, regions in variants:
        names = {"name": lambda i: f"the {clip.labels[i]}", "region": lambda i: tokens[i]}[variant]
        ref_arg = None
        if ref is not None:
            ref_arg = (names(ref), centers["objects"][ref][0])
        cot = render_cot(frames=clip.frames, timestamps=clip.timestamps, camera_centers=centers["camera"],
                         object_centers=obj_centers, computation=spec.computation, conclusion=answer_text,
                         answer=str(answer), reference=ref_arg)
        records.append({"id": f"{clip.clip_id}-{spec.key.replace(':', '-')}-{variant}", **base,
                        "prompt_variant": variant, "question": question, "regions": regions,
                        "som_image": clip.som_image if regions else None, "cot": cot})
    # Key order as in schema.RECORD_FIELDS, for readable JSONL.
    return [dict(sorted(r.items(), key=lambda kv: _ORDER.get(kv[0], 99))) for r in records]


_ORDER = {k: i for i, k in enumerate(["id", "qid", "clip_id", "split", "category", "answer_type", "prompt_variant",
                                      "question", "options", "answer", "answer_text", "answer_value", "unit", "frames",
                                      "timestamps", "frame_paths", "regions", "som_image", "cot", "solution",
                                      "provenance"])}


def label_questions(results: list[ClipResult], cfg: CurationConfig) -> list[Labelled]:
    """Pick the label source per split, drop ambiguous labels, cap per clip, choose numeric vs mc."""
    splits = assign_splits([r.clip_id for r in results], cfg)
    sources = {r.clip_id: (r.gt, r.est) if splits[r.clip_id] == "bench" and r.gt is not None else (r.est, r.gt or {})
               for r in results}
    doomed = _unbalanceable({(splits[r.clip_id], s.category, s.kind, answer_class(s.category, s.correct))
                             for r in results for s in sources[r.clip_id][0].values()
                             if s.clear and s.answer_type == "choice" and s.category in LABEL_SETS and _askable(s, r)})
    items = []
    for r in results:
        split = splits[r.clip_id]
        use_gt = split == "bench" and r.gt is not None
        label_specs, other_specs = sources[r.clip_id]
        # A kind whose answers miss a class of its label set in this split is dropped by the quotas whatever
        # is selected: it does not take a clip's question slots (real driving: every parked car "gets closer").
        candidates = [s for s in label_specs.values() if s.clear and (split, s.category, s.kind) not in doomed
                      and _askable(s, r)]
        rng = np.random.default_rng(_stable_hash(cfg.seed, "select", r.clip_id))
        for spec in _select(candidates, cfg.questions_per_clip, rng):
            as_numeric = spec.answer_type == "quantity" and (
                _stable_hash(cfg.seed, "numeric", r.clip_id, spec.key) % 1000 < cfg.numeric_fraction * 1000)
            items.append(Labelled(r, split, spec, other_specs.get(spec.key),
                                  "ground_truth" if use_gt else "estimated", as_numeric))
    return balance_answers(items, cfg.seed)


def _askable(spec: QuestionSpec, clip: ClipResult) -> bool:
    """Whether the question has a phrasing: a name, or region marks for every object it is about (an unnamed
    object not visible in the first frame has no mark); one with neither would count in the quotas and
    then write no record."""
    return spec.by_name is not None or (spec.by_region is not None and all(i in clip.regions
                                                                           for i in spec.object_ids))


def _unbalanceable(seen: set[tuple[str, str, str, str]]) -> set[tuple[str, str, str]]:
    """(split, category, kind) groups whose clear candidates miss a class of the category's label set."""
    classes: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    for split, category, kind, cls in seen:
        classes[(split, category, kind)].add(cls)
    return {key for key, present in classes.items() if set(LABEL_SETS[key[1]]) - present}


def balance_answers(items: list[Labelled], seed: int) -> list[Labelled]:
    """Fill equal quotas per answer class: for each split and categorical question kind, keep as many
    questions of each class of the category's label set as the rarest class has (+ QUOTA_SLACK), chosen by
    a seeded hash.

    The scene sampler already draws motions, rotations and speed changes about evenly, so the quotas
    trim the surplus (still objects, mostly) rather than most of the data; without them a text-only guesser
    answering "it does not move" scored 71% on translational questions. When a class of the label set has
    no question at all in a split, that kind is not asked there.
    """
    groups: dict[tuple[str, str, str], dict[str, list[Labelled]]] = defaultdict(lambda: defaultdict(list))
    kept = []
    for it in items:
        spec = it.label
        if spec.answer_type != "choice" or spec.category not in LABEL_SETS:
            kept.append(it)
            continue
        groups[(it.split, spec.category, spec.kind)][answer_class(spec.category, spec.correct)].append(it)
    for (split, category, kind), by_class in sorted(groups.items()):
        missing = set(LABEL_SETS[category]) - set(by_class)
        if missing:
            # Balanced among the classes present, the answer would still be guessable from the text (with a
            # static camera every ego-motion answer is "it stays still"): such questions are not asked.
            log.info("%s: no %s question answers %s; its %d questions are not asked", split, category,
                     sorted(missing), sum(map(len, by_class.values())))
            continue
        quota = int(min(len(v) for v in by_class.values()) * (1 + QUOTA_SLACK))
        for cls, lst in sorted(by_class.items()):
            lst.sort(key=lambda it: _stable_hash(seed, "quota", it.clip.clip_id, it.label.key))
            kept.extend(lst[:quota])
        log.debug("%s/%s:%s: %d per class of %s", split, category, kind, quota, sorted(by_class))
    return kept


def label_agreement(results: list[ClipResult]) -> dict[str, dict]:
    """Estimated vs ground-truth labels per category, over every question the estimate would ask."""
    acc: dict[str, Counter] = defaultdict(Counter)
    for r in results:
        if r.gt is None:
            continue
        for key, est in r.est.items():
            gt = r.gt.get(key)
            if not est.clear or gt is None:
                continue
            c = acc[est.category]
            if est.answer_type == "choice":
                c["mc_n"] += 1
                c["mc_agree"] += est.correct == gt.correct
            else:
                c["num_n"] += 1
                c["num_within_10pct"] += abs(est.value - gt.value) <= NUMERIC_TOLERANCE * abs(gt.value)
    out = {}
    for cat in CATEGORIES:
        c = acc.get(cat)
        if not c:
            continue
        out[cat] = {
            "mc_n": c["mc_n"], "mc_agreement": c["mc_agree"] / c["mc_n"] if c["mc_n"] else None,
            "numeric_n": c["num_n"], "numeric_within_10pct": c["num_within_10pct"] / c["num_n"] if c["num_n"] else None,
        }
    mc_n = sum(c["mc_n"] for c in acc.values())
    num_n = sum(c["num_n"] for c in acc.values())
    out["overall"] = {
        "mc_n": mc_n, "mc_agreement": sum(c["mc_agree"] for c in acc.values()) / mc_n if mc_n else None,
        "numeric_n": num_n,
        "numeric_within_10pct": sum(c["num_within_10pct"] for c in acc.values()) / num_n if num_n else None,
    }
    return out


def split_of_records(records: dict[str, list[dict]]) -> dict[str, set[str]]:
    return {s: {r["clip_id"] for r in rs} for s, rs in records.items()}


def check_no_leakage(records: dict[str, list[dict]]) -> None:
    clips = split_of_records(records)
    for a in SPLITS:
        for b in SPLITS:
            if a < b and clips[a] & clips[b]:
                raise AssertionError(f"clips in both {a} and {b}: {sorted(clips[a] & clips[b])[:5]}")


def letter_counts(records: list[dict]) -> dict[str, int]:
    qs = {r["qid"]: r["answer"] for r in records if r["answer_type"] == "mc"}
    return dict(sorted(Counter(qs.values()).items()))

