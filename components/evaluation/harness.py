"""The evaluation harness: run a model over benchmark records, score it, and put it beside baselines.

Model-agnostic by construction: generation is a callable injected by the caller,
``generate(batch, blind) -> completions``, one completion per record, in order. ``blind=True`` asks
the caller's model to answer with its frames blanked (same prompt, same number of images): the blind
row measures what the questions give away without vision, the random row what uniform guessing
scores. The shuffled row calls ``generate(records, False)`` on copies of the records whose video is
another bench clip's (``controls.shuffled_video``): in-distribution pixels, wrong content. A model that
does not beat its shuffled row has learned the text (or the look of the training clips), not the video;
the blind row alone can mislead once the vision tower trains, because black frames are out of distribution.

The caller owns prompting, frame loading, decoding settings and batching inside the model;
this module owns batching across records and scoring (``metrics.score``); ``report`` writes the
result (``EvalResult``) and the comparison tables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tqdm.auto import tqdm

from components.evaluation.controls import shuffled_video
from components.evaluation.metrics import check_records, clip_of, random_metrics, score
from components.evaluation.report import EvalResult

log = logging.getLogger(__name__)

GenerateFn = Callable[[list[dict], bool], list[str]]


def _generate_all(
    records: list[dict], generate: GenerateFn, batch_size: int, blind: bool, progress: bool, label: str = ""
) -> list[str]:
    outputs: list[str] = []
    label = label or ("blind" if blind else "model")
    starts = range(0, len(records), batch_size)
    for start in tqdm(starts, desc=f"evaluate ({label})", unit="batch", disable=not progress):
        batch = records[start : start + batch_size]
        got = list(generate(batch, blind))
        if len(got) != len(batch):
            raise ValueError(
                f"generate returned {len(got)} completions for a batch of {len(batch)} "
                f"(blind={blind}, records {batch[0]['id']}..{batch[-1]['id']}): it must return one per record"
            )
        bad = [type(o).__name__ for o in got if not isinstance(o, str)]
        if bad:
            raise TypeError(f"generate must return strings, got {', '.join(sorted(set(bad)))}")
        outputs.extend(got)
    return outputs


def _headline(name: str, metrics: dict) -> str:
    overall = metrics["overall"]
    return f"{name} {overall['value']:.3f} [{overall['ci'][0]:.3f}, {overall['ci'][1]:.3f}]"


def evaluate(
    records: list[dict],
    generate: GenerateFn,
    *,
    batch_size: int,
    blind_baseline: bool = True,
    shuffled_baseline: bool = True,
    shuffle_seed: int = 0,
    n_boot: int = 1000,
    progress: bool = True,
) -> EvalResult:
    """Generate for every record (blind and with shuffled video, if asked), score each, add random.

    The shuffled-video control needs at least two clips among ``records``; with one it is skipped (a
    warning, and ``None`` in the metrics), since no other clip's video exists to show.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not records:
        raise ValueError("no records to evaluate")
    check_records(records)  # before spending any generation time
    started = time.perf_counter()
    model = score(records, _generate_all(records, generate, batch_size, False, progress), n_boot=n_boot)
    controls: dict[str, dict | None] = {"blind": None, "shuffled": None}
    if blind_baseline:
        controls["blind"] = score(records, _generate_all(records, generate, batch_size, True, progress), n_boot=n_boot)
    if shuffled_baseline and len({clip_of(r) for r in records}) < 2:
        log.warning("the shuffled-video control needs at least 2 bench clips; skipped")
    elif shuffled_baseline:
        shuffled = shuffled_video(records, shuffle_seed)
        # scored against the original records: same questions and answers, another clip's video
        outputs = _generate_all(shuffled, generate, batch_size, False, progress, label="shuffled")
        controls["shuffled"] = score(records, outputs, n_boot=n_boot)
    predictions = model.pop("per_record")
    keep = ("output", "extracted", "correct", "mra", "score")
    for name, control in controls.items():
        if control is not None:
            for row, control_row in zip(predictions, control.pop("per_record")):
                row[name] = {k: control_row[k] for k in keep}
    metrics = {"model": model, **controls, "random": random_metrics(records)}
    log.info(
        "evaluated %d records in %.1f s: %s",
        len(records),
        time.perf_counter() - started,
        "; ".join(_headline(n, m) for n, m in (("model", model), *controls.items()) if m is not None)
        + f"; random {metrics['random']['overall']['value']:.3f}",
    )
    return EvalResult(metrics=metrics, predictions=predictions)
