"""The language-prior gate: how well can a guesser that never sees the video answer the bench?

Text-only guessers are fitted on the sft split and scored on the bench split's multiple-choice records.
If one of them beats random by a wide margin, the bench measures the text, not 4D understanding, and a
model trained on the sft split can learn that shortcut instead of the video. The gate runs after the
data gate and fails the chain the same way (``PriorGateFailed``, after writing its report).

The guessers (each returns the option indices it would pick; a tie counts as a uniform pick among the
tied options, so a guesser's score on a record is 1/len(picks) when the truth is among them):

* ``majority``: the option whose text was right most often in the sft split for the category;
* ``closest_mean`` / ``closest_median`` / ``smallest`` / ``largest``: for options that all carry a
  number, the option closest to the options' mean / median, or the extreme one;
* ``rank``: for numeric options, the rank (among the options' values) that was right most often in sft;
* ``logreg``: a conditional logistic regression (softmax over a record's options) on question, option
  text and option rank features, fitted on sft with L2 (plain numpy: a sparse dot product by bincount).

A guesser with no rule for a record (e.g. a numeric rule on text options) guesses uniformly there.

Which guesser is a category's best is decided on the sft split, not on the bench: each guesser is
cross-fitted over ``selection_folds`` folds of sft clips (fitted on the other folds, scored on the held-out
one), and the most accurate one per category is the one scored on the bench. Taking the best of seven
guessers *on the bench* would favour them: on data without any shortcut the maximum of seven noisy
accuracies beats random by one to two standard errors (about +10 points on a category of 30 records), so
a clean bench would fail. The bench-best gap is reported too, as the optimistic figure.

A category's gap is its chosen guesser's bench accuracy minus random (the mean of 1/len(options)). Static
categories (``schema.STATIC_CATEGORIES``) are reported, not checked: the concern is answers about motion
that the text gives away. The gate fails when a dynamic category's gap is above ``max_category_gap``, or
the macro over the dynamic categories (the mean of their gaps) above ``max_macro_gap``, each by more than
``noise_z`` standard errors of a chance-level guesser on those records ("noise": 8 points for 30 records
of four options, 3 for 200; the macro's is the categories' combined). On a small bench a clean category
can beat random by 10 points by luck alone; a real shortcut beats it by 30-75 (measured on the curation
this gate was written against). With ``noise_z: 0`` the limits apply as they are.
"""

from __future__ import annotations

import collections
import logging
import math
import re
import statistics
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from components.config import PriorConfig
from components.curation.schema import LETTERS, STATIC_CATEGORIES
from components.io import read_jsonl, write_json, write_text

log = logging.getLogger(__name__)

STATIC = frozenset(STATIC_CATEGORIES)
GUESSERS = ("majority", "closest_mean", "closest_median", "smallest", "largest", "rank", "logreg")
REPORT_JSON, REPORT_MD = "prior_report.json", "prior_report.md"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z]+")

Picks = list[int] | None  # option indices a guesser picks (ties), None = no rule for this record


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Question:
    """A multiple-choice record as the guessers see it (text only), parsed once."""

    id: str
    clip: str
    category: str
    question: str
    texts: list[str]  # option texts, lower case, single spaces
    numbers: list[float] | None  # the first number in each option, None unless every option has one
    truth: int  # index of the right option
    features: list[dict[str, float]]  # per option, for the logistic regression


Guesser = Callable[[Question], Picks]


def option_texts(record: dict) -> list[str]:
    return [" ".join(str(o).lower().split()) for o in record["options"]]


def truth_index(record: dict) -> int:
    answer = str(record["answer"]).strip()
    if answer not in LETTERS[: len(record["options"])]:
        raise ValueError(f"record {record.get('id')}: mc answer {record['answer']!r} is not an option letter")
    return LETTERS.index(answer)


def option_numbers(texts: list[str]) -> list[float] | None:
    """The first number in each option text, or None unless every option has one."""
    values = []
    for text in texts:
        match = _NUMBER.search(text)
        if match is None:
            return None
        values.append(float(match.group()))
    return values


def prepare(record: dict) -> Question:
    texts = option_texts(record)
    numbers = option_numbers(texts)
    question = str(record["question"])
    return Question(id=str(record["id"]), clip=str(record.get("clip_id") or record["id"]), category=record["category"],
                    question=question, texts=texts, numbers=numbers, truth=truth_index(record),
                    features=[option_features(record["category"], question, texts, numbers, i) for i in range(len(texts))])


def mc_questions(path: Path) -> list[Question]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the prior gate needs the curated sft and bench splits")
    return [prepare(r) for r in read_jsonl(path) if r.get("answer_type") == "mc" and r.get("options")]


def _argmins(values: Iterable[float], tol: float = 1e-9) -> list[int]:
    values = list(values)
    best = min(values)
    return [i for i, v in enumerate(values) if v <= best + tol]


def _ranks(values: list[float]) -> list[int]:
    """Rank of each value among the options (0 = smallest; equal values share the lower rank)."""
    return [sum(other < v for other in values) for v in values]


def _median(values: list[float]) -> float:
    return statistics.median(values)  # np.median costs 50x more on four numbers


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


# ---------------------------------------------------------------- guessers


def fit_majority(sft: list[Question]) -> Guesser:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for q in sft:
        counts[q.category][q.texts[q.truth]] += 1

    def guess(q: Question) -> Picks:
        seen = counts.get(q.category)
        if not seen:
            return None
        # the option most often right in sft (not only the single most frequent text, which may be absent)
        return _argmins(-seen[text] for text in q.texts)

    return guess


def closest_to(center: Callable[[list[float]], float]) -> Guesser:
    def guess(q: Question) -> Picks:
        if q.numbers is None:
            return None
        c = center(q.numbers)
        return _argmins(abs(v - c) for v in q.numbers)

    return guess


def extreme(sign: float) -> Guesser:
    def guess(q: Question) -> Picks:
        return None if q.numbers is None else _argmins(sign * v for v in q.numbers)

    return guess


def fit_rank(sft: list[Question]) -> Guesser:
    counts: dict[tuple[str, int], collections.Counter] = collections.defaultdict(collections.Counter)
    for q in sft:
        if q.numbers is not None:
            counts[(q.category, len(q.numbers))][_ranks(q.numbers)[q.truth]] += 1

    def guess(q: Question) -> Picks:
        seen = counts.get((q.category, len(q.numbers))) if q.numbers is not None else None
        if not seen:
            return None
        return _argmins(-seen[k] for k in _ranks(q.numbers))

    return guess


def option_features(category: str, question: str, texts: list[str], numbers: list[float] | None,
                    i: int) -> dict[str, float]:
    """Text-only features of option ``i``, crossed with the category so categories do not share weights."""
    cat, text, words = category, texts[i], texts[i].split()
    asked = set(_WORD.findall(question.lower()))
    first = [t.split()[0] if t.split() else "" for t in texts]
    lengths = [len(t.split()) for t in texts]
    f = {
        f"{cat}|opt={text}": 1.0,
        f"{cat}|w0={first[i]}": 1.0,
        f"{cat}|w01={' '.join(words[:2])}": 1.0,
        # an option phrased unlike the others ("there is no ..." among object names) is a classic leak
        f"{cat}|unique_first_word": float(first.count(first[i]) == 1),
        f"{cat}|longest": float(lengths[i] == max(lengths)),
        f"{cat}|shortest": float(lengths[i] == min(lengths)),
        f"{cat}|question_overlap": sum(w in asked for w in words) / max(1, len(words)),
    }
    for w in asked:
        f[f"{cat}|q={w}|w0={first[i]}"] = 1.0
        f[f"{cat}|q={w}|opt={text}"] = 1.0
    if numbers is not None:
        n, v = len(numbers), numbers[i]
        mean, median = _mean(numbers), _median(numbers)
        f[f"{cat}|rank={_ranks(numbers)[i]}/{n}"] = 1.0
        f[f"{cat}|closest_mean"] = float(i in _argmins(abs(x - mean) for x in numbers))
        f[f"{cat}|closest_median"] = float(i in _argmins(abs(x - median) for x in numbers))
        f[f"{cat}|smallest"] = float(v == min(numbers))
        f[f"{cat}|largest"] = float(v == max(numbers))
        if mean > 0 and v > 0:
            f[f"{cat}|log_rel_mean"] = max(-3.0, min(3.0, math.log(v / mean)))
    return f


def fit_logreg(sft: list[Question], *, l2: float, steps: int, learning_rate: float = 0.1) -> Guesser:
    """Conditional logit: p(option i) = softmax_i(w . x_i), fitted by full-batch Adam on the mean negative
    log-likelihood + l2/2 |w|^2, from zero weights (deterministic). The design matrix is sparse: nonzero k
    is (row[k], col[k], val[k]) with one row per option; products are bincounts."""
    vocab: dict[str, int] = {}
    rows, cols, vals, record_of_row, slot_of_row = [], [], [], [], []
    for r_idx, q in enumerate(sft):
        for i, feats in enumerate(q.features):
            row = len(record_of_row)
            for name, value in feats.items():
                if value:
                    rows.append(row)
                    cols.append(vocab.setdefault(name, len(vocab)))
                    vals.append(value)
            record_of_row.append(r_idx)
            slot_of_row.append(i)
    row, col, val = np.array(rows), np.array(cols), np.array(vals, dtype=float)
    rec, slot = np.array(record_of_row), np.array(slot_of_row)
    n, width = len(sft), int(slot.max()) + 1
    truth = np.array([q.truth for q in sft])
    w, m, v = (np.zeros(len(vocab)) for _ in range(3))
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for t in range(1, steps + 1):
        scores = np.full((n, width), -np.inf)  # -inf where a record has fewer options
        scores[rec, slot] = np.bincount(row, weights=w[col] * val, minlength=len(rec))
        p = np.exp(scores - scores.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(n), truth] -= 1.0  # d(-log softmax)/d(score)
        grad_row = p[rec, slot] / n
        grad = np.bincount(col, weights=grad_row[row] * val, minlength=len(vocab)) + l2 * w
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        w -= learning_rate * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)

    def guess(q: Question) -> Picks:
        # a feature never seen in training has no weight
        scores = [sum(w[vocab[k]] * x for k, x in feats.items() if k in vocab) for feats in q.features]
        return _argmins(-s for s in scores)

    return guess


def fit_guessers(sft: list[Question], cfg: PriorConfig) -> dict[str, Guesser]:
    return {
        "majority": fit_majority(sft),
        "closest_mean": closest_to(_mean),
        "closest_median": closest_to(_median),
        "smallest": extreme(+1.0),
        "largest": extreme(-1.0),
        "rank": fit_rank(sft),
        "logreg": fit_logreg(sft, l2=cfg.logreg_l2, steps=cfg.logreg_steps),
    }


def expected_accuracy(picks: Picks, q: Question) -> float:
    """A guess's expected accuracy on one question: uniform among its picks, uniform overall without one."""
    if not picks:
        return 1.0 / len(q.texts)
    return float(q.truth in picks) / len(picks)


def accuracy_by_category(guessers: dict[str, Guesser], questions: list[Question]) -> dict[str, dict[str, list[float]]]:
    """category -> guesser -> expected accuracy per question."""
    out: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for q in questions:
        for name, guess in guessers.items():
            out[q.category][name].append(expected_accuracy(guess(q), q))
    return out


def cross_fitted_accuracy(sft: list[Question], cfg: PriorConfig) -> dict[str, dict[str, float]]:
    """category -> guesser -> accuracy on sft questions when fitted without their fold of clips. Folds
    split clips, not records: records of one clip share its objects and wording."""
    clips = sorted({q.clip for q in sft})
    fold_of = {clip: i % cfg.selection_folds for i, clip in enumerate(clips)}
    folds = [[q for q in sft if fold_of[q.clip] == k] for k in range(cfg.selection_folds)]
    scores: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for k, held_out in enumerate(folds):
        train = [r for j, fold in enumerate(folds) if j != k for r in fold]
        if not held_out or not train:
            continue
        for cat, by_guesser in accuracy_by_category(fit_guessers(train, cfg), held_out).items():
            for name, values in by_guesser.items():
                scores[cat][name].extend(values)
    return {cat: {name: float(np.mean(v)) for name, v in by.items()} for cat, by in scores.items()}


def choose(accuracy: dict[str, float] | None) -> str:
    """The most accurate guesser (ties: the simpler one, in ``GUESSERS`` order)."""
    if not accuracy:
        return GUESSERS[0]
    return max(GUESSERS, key=lambda name: (accuracy.get(name, -1.0), -GUESSERS.index(name)))


# ---------------------------------------------------------------- the gate


@dataclass
class CategoryResult:
    category: str
    dynamic: bool
    n: int
    random: float
    accuracy: dict[str, float]  # guesser -> accuracy on the category's bench mc records
    sft_accuracy: dict[str, float]  # guesser -> cross-fitted accuracy on the category's sft records
    chosen: str  # the guesser chosen on sft; its bench accuracy makes the gap
    gap: float  # accuracy[chosen] - random
    stderr: float  # standard error of the chosen guesser's bench accuracy
    noise: float  # standard error of a chance-level guesser's accuracy on these records
    allowed: float  # max_category_gap + noise_z * noise: the gap above which a dynamic category fails
    best_on_bench: str  # the optimistic figure: the guesser best on the bench itself
    best_gap: float
    passed: bool
    top_answer: str  # the most frequent right answer text on the bench, with its share: a leak's usual face
    top_answer_share: float


@dataclass
class PriorReport:
    success: bool
    categories: list[CategoryResult]
    macro_gap: float | None  # mean gap over the dynamic categories (chosen guessers)
    macro_allowed: float | None  # max_macro_gap + noise_z * the macro's chance-level standard error
    macro_best_gap: float | None  # the same with the bench-best guessers (optimistic)
    macro_by_guesser: dict[str, float]  # mean (accuracy - random) over the dynamic categories, per guesser
    failures: list[str]
    thresholds: dict
    n_sft: int
    n_bench: int
    report_json: Path
    report_md: Path
    error: str | None = None  # set when the gate could not run (its report then says it failed)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["report_json"], out["report_md"] = str(self.report_json), str(self.report_md)
        return out

    def summary(self) -> str:
        if self.error:
            return f"language-prior gate FAILED to run: {self.error} (report: {self.report_json})"
        macro = "n/a" if self.macro_gap is None else f"{100 * self.macro_gap:+.1f}"
        allowed = "n/a" if self.macro_allowed is None else f"{100 * self.macro_allowed:+.1f}"
        head = (f"language-prior gate {'passed' if self.success else 'FAILED'}: text-only guessers beat random by "
                f"{macro} points on the dynamic mc macro (allowed {allowed}: {100 * self.thresholds['max_macro_gap']:+.1f}"
                f" + {self.thresholds['noise_z']:g} x chance noise) on {self.n_bench} bench records "
                f"(report: {self.report_json})")
        return "\n".join([head, *(f"  - {f}" for f in self.failures)])


class PriorGateFailed(RuntimeError):
    """The bench can be answered from the text; ``.report`` holds the :class:`PriorReport`."""

    def __init__(self, report: PriorReport) -> None:
        super().__init__(report.summary())
        self.report = report


def chance_noise(questions: list[Question]) -> float:
    """Standard error of the accuracy of uniform guessing on ``questions`` (a Bernoulli(1/k) per question)."""
    return math.sqrt(sum((1 / len(q.texts)) * (1 - 1 / len(q.texts)) for q in questions)) / len(questions)


def score_categories(bench: list[Question], guessers: dict[str, Guesser], sft_accuracy: dict[str, dict[str, float]],
                     cfg: PriorConfig) -> list[CategoryResult]:
    by_category: dict[str, list[Question]] = collections.defaultdict(list)
    for q in bench:
        by_category[q.category].append(q)
    per_record = accuracy_by_category(guessers, bench)
    results = []
    for cat in sorted(by_category, key=lambda c: (c not in STATIC, c)):
        records = by_category[cat]
        accuracy = {name: float(np.mean(per_record[cat][name])) for name in guessers}
        random = float(np.mean([1.0 / len(q.texts) for q in records]))
        chosen, best = choose(sft_accuracy.get(cat)), choose(accuracy)
        gap = accuracy[chosen] - random
        stderr = float(np.std(per_record[cat][chosen]) / math.sqrt(len(records)))
        noise = chance_noise(records)
        allowed = cfg.max_category_gap + cfg.noise_z * noise
        dynamic = cat not in STATIC
        top, count = collections.Counter(q.texts[q.truth] for q in records).most_common(1)[0]
        results.append(CategoryResult(
            category=cat, dynamic=dynamic, n=len(records), random=random, accuracy=accuracy,
            sft_accuracy=sft_accuracy.get(cat, {}), chosen=chosen, gap=gap, stderr=stderr, noise=noise, allowed=allowed,
            best_on_bench=best, best_gap=accuracy[best] - random, passed=not (dynamic and gap > allowed),
            top_answer=top, top_answer_share=count / len(records)))
    return results


def evaluate_prior(sft: list[Question], bench: list[Question], cfg: PriorConfig, report_dir: Path) -> PriorReport:
    """Fit on ``sft``, score on ``bench`` (both multiple-choice questions), judge against ``cfg``."""
    if not sft:
        raise ValueError("the sft split has no multiple-choice records to fit the text-only guessers on")
    if not any(q.category not in STATIC for q in bench):
        raise ValueError("the bench split has no dynamic multiple-choice records: the prior gate has nothing to judge")
    categories = score_categories(bench, fit_guessers(sft, cfg), cross_fitted_accuracy(sft, cfg), cfg)
    dynamic = [c for c in categories if c.dynamic]
    macro = float(np.mean([c.gap for c in dynamic]))
    macro_allowed = cfg.max_macro_gap + cfg.noise_z * math.sqrt(sum(c.noise**2 for c in dynamic)) / len(dynamic)
    failures = [f"{c.category}: {c.chosen} scores {100 * c.accuracy[c.chosen]:.1f}% vs random {100 * c.random:.1f}% "
                f"({100 * c.gap:+.1f} points, allowed {100 * c.allowed:+.1f}; n={c.n}; "
                f"most frequent right answer {c.top_answer!r} {100 * c.top_answer_share:.0f}%)"
                for c in categories if not c.passed]
    if macro > macro_allowed:
        failures.append(f"dynamic macro: the text-only guessers beat random by {100 * macro:+.1f} points on average "
                        f"(allowed {100 * macro_allowed:+.1f})")
    return PriorReport(
        success=not failures, categories=categories, macro_gap=macro, macro_allowed=macro_allowed,
        macro_best_gap=float(np.mean([c.best_gap for c in dynamic])),
        macro_by_guesser={g: float(np.mean([c.accuracy[g] - c.random for c in dynamic])) for g in GUESSERS},
        failures=failures, thresholds=asdict(cfg), n_sft=len(sft), n_bench=len(bench),
        report_json=report_dir / REPORT_JSON, report_md=report_dir / REPORT_MD)


def render_markdown(report: PriorReport) -> str:
    lines = ["# Language-prior gate", "",
             ("Text-only guessers fitted on the sft split, scored on the bench split's multiple-choice records "
              f"({report.n_sft} sft, {report.n_bench} bench). Accuracy in %. The guesser judged per category is "
              "chosen on sft (cross-fitted by clip); gap = its bench accuracy - random, in points (+- one standard "
              "error); bench-best = the best guesser on the bench itself (optimistic). (S) static: reported, "
              "not checked."), "",
             f"**{'passed' if report.success else 'FAILED'}**" + (f": {report.error}" if report.error else ""), ""]
    if report.categories:
        head = ["category", "n", "random", *GUESSERS, "chosen (sft)", "gap", "allowed", "bench-best gap",
                "top answer (share)"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in report.categories:
            cells = [c.category + ("" if c.dynamic else " (S)"), str(c.n), f"{100 * c.random:.1f}",
                     *[f"{100 * c.accuracy[g]:.1f}" for g in GUESSERS], c.chosen,
                     f"{100 * c.gap:+.1f} +- {100 * c.stderr:.1f}" + ("" if c.passed else " **FAIL**"),
                     f"{100 * c.allowed:+.1f}" if c.dynamic else "-", f"{100 * c.best_gap:+.1f} ({c.best_on_bench})",
                     f"{c.top_answer} ({100 * c.top_answer_share:.0f}%)"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if report.macro_gap is not None:
        t = report.thresholds
        lines += [(f"Dynamic macro gap: **{100 * report.macro_gap:+.1f}** points, allowed {100 * report.macro_allowed:+.1f} "
                   f"({100 * t['max_macro_gap']:+.1f} + {t['noise_z']:g} standard errors of chance); with the bench-best "
                   f"guessers {100 * report.macro_best_gap:+.1f}. A dynamic category is allowed "
                   f"{100 * t['max_category_gap']:+.1f} + {t['noise_z']:g} standard errors of chance on its records."), "",
                  "Per guesser, dynamic macro (accuracy - random): "
                  + ", ".join(f"{g} {100 * v:+.1f}" for g, v in report.macro_by_guesser.items()), ""]
    if report.failures:
        lines += ["## Failures", "", *[f"- {f}" for f in report.failures], ""]
    return "\n".join(lines)


def write_prior_report(report: PriorReport) -> None:
    write_json(report.report_json, report.to_dict())
    write_text(report.report_md, render_markdown(report))


def run_prior_gate(curated_dir: Path, cfg: PriorConfig, report_dir: Path, *,
                   raise_on_failure: bool = True) -> PriorReport:
    """Judge ``curated_dir``; write ``report_dir/prior_report.{json,md}``.

    Any earlier report is removed first, so a gate that crashes never leaves a stale passing one; a gate
    that fails writes its failing report, then raises :class:`PriorGateFailed` (unless ``raise_on_failure``
    is False). A crash while judging writes a failing report naming the error, then re-raises it.
    """
    report_dir = Path(report_dir)
    for name in (REPORT_JSON, REPORT_MD):
        (report_dir / name).unlink(missing_ok=True)
    try:
        sft = mc_questions(Path(curated_dir) / "sft.jsonl")
        bench = mc_questions(Path(curated_dir) / "bench.jsonl")
        report = evaluate_prior(sft, bench, cfg, report_dir)
    except Exception as exc:
        failed = PriorReport(success=False, categories=[], macro_gap=None, macro_allowed=None, macro_best_gap=None,
                             macro_by_guesser={},
                             failures=[], thresholds=asdict(cfg), n_sft=0, n_bench=0,
                             report_json=report_dir / REPORT_JSON, report_md=report_dir / REPORT_MD,
                             error=f"{type(exc).__name__}: {exc}")
        write_prior_report(failed)
        raise
    write_prior_report(report)
    (log.info if report.success else log.warning)("%s", report.summary())
    if not report.success and raise_on_failure:
        raise PriorGateFailed(report)
    return report
