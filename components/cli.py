"""``mllm4d``: one command, a subcommand per stage. Params come from ``--params`` (default
``params.yaml``) with ``-S section.key=value`` overrides; paths come from the command line, as
``dvc.yaml`` declares them."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from components.config import Params, ParamsError, load_params
from components.env import apply_quiet_defaults
from components.evaluation.ablation import SEED_KEYS, TABLES, pool_reports

# Prefect logs every task run at INFO; the console keeps warnings (the UI keeps everything).
apply_quiet_defaults(PREFECT_LOGGING_LEVEL="WARNING")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mllm4d", description=__doc__)
    p.add_argument("--params", default="params.yaml", type=Path, help="params file (default: params.yaml)")
    p.add_argument("-S", "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one param (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars, warnings only")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("scenes", help="render the synthetic stereo 4D clips (embedded data)")
    s.add_argument("--out", type=Path, default=Path("data/scenes"))
    s.add_argument("--metrics", type=Path, default=Path("reports/scenes.json"))

    s = sub.add_parser("curate", help="stereo clips -> 4D QA records with ST-CoT, exports, stats")
    # strings, not Paths: Path("s3://bucket/p") is "s3:/bucket/p"; stages.curate takes a folder or an s3:// URI
    s.add_argument("--clips", default="data/scenes", help="a clip folder or s3://BUCKET/PREFIX")
    s.add_argument("--out", default="data/curated", help="a folder or s3://BUCKET/PREFIX")
    s.add_argument("--metrics", type=Path, default=Path("reports/curation.json"))

    s = sub.add_parser("validate", help="the data gate (Great Expectations) on curated records")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--report", type=Path, default=Path("reports/quality"))

    s = sub.add_parser("prior-gate", help="the language-prior gate: text-only guessers (sft) vs random on the bench")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--report", type=Path, default=Path("reports/quality"))

    s = sub.add_parser("base-model", help="build the tiny model (local tokenizer) or validate a checkpoint")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--out", type=Path, default=Path("models/base"))

    s = sub.add_parser("sft", help="supervised fine-tuning (TRL SFTTrainer) + the training gate")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--base", type=Path, default=Path("models/base"))
    s.add_argument("--out", type=Path, default=Path("models/sft"))

    s = sub.add_parser("sft-text-only", help="the text-only-trained control: the same SFT with every frame blanked")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--base", type=Path, default=Path("models/base"))
    s.add_argument("--out", type=Path, default=Path("models/sft_text_only"))

    s = sub.add_parser("teacher", help="train the embedded 4D perception teacher (or check an external one)")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--out", type=Path, default=Path("models/teacher"))
    s.add_argument("--metrics", type=Path, default=Path("reports/teacher.json"))

    s = sub.add_parser("teacher-targets", help="cache the frozen teacher's F_4D and P_m for the training records")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--teacher", type=Path, default=Path("models/teacher"))
    s.add_argument("--out", type=Path, default=Path("data/teacher_targets"))

    s = sub.add_parser("p4d", help="Perceptual 4D Distillation from the SFT checkpoint + the training gate")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--sft", type=Path, default=Path("models/sft/model"))
    s.add_argument("--teacher", type=Path, default=Path("models/teacher"))
    s.add_argument("--targets", type=Path, default=Path("data/teacher_targets"))
    s.add_argument("--out", type=Path, default=Path("models/p4d"))

    s = sub.add_parser("grpo", help="GRPO with the ST-reward from the P4D (or SFT) checkpoint + the training gate")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--init", type=Path, help="starting model folder (default: models/<grpo.init>/model)")
    s.add_argument("--out", type=Path, default=Path("models/grpo"))

    s = sub.add_parser("evaluate", help="evaluate a checkpoint on the bench split (with its controls), or a checkpoint "
                       "or a predictions file on an external benchmark (docs/benchmarks.md)")
    # The external names are components.evaluation.benchmarks.BENCHMARKS, spelled out so that --help imports
    # nothing (tests/evaluation/test_benchmarks.py checks that the two agree).
    s.add_argument("--benchmark", default="own", choices=("own", "vlm4d", "ego_st", "r4d", "sti", "vsi", "vsti"),
                   help="own (default): the curated bench under --curated; else an external one, from --annotations")
    s.add_argument("--curated", type=Path, default=Path("data/curated"))
    s.add_argument("--annotations", type=Path, metavar="FILE", help="external: the benchmark's annotation file")
    s.add_argument("--media-root", type=Path, metavar="DIR",
                   help="external: the folder its videos are under (needed with --model)")
    answers = s.add_mutually_exclusive_group()
    answers.add_argument("--model", type=Path, help="a model folder (models/base, models/sft/model)")
    answers.add_argument("--predictions", type=Path, metavar="FILE",
                         help="external: a JSON list or JSON lines of {id, response} to score instead of a model")
    s.add_argument("--name", help="checkpoint name in reports (zero_shot, sft, ...); with --predictions the "
                   "file's stem by default")
    s.add_argument("--out", type=Path, help="default: reports/eval/NAME (external: reports/eval/BENCHMARK/NAME)")
    s.add_argument("--missing-as-wrong", action="store_true",
                   help="external --predictions: score records without a prediction as wrong instead of failing")
    s.add_argument("--controls", action="store_true",
                   help="external --model: also run the controls evaluate.* enables (a generation pass each)")
    s.add_argument("--register", action="store_true", help="register in MLflow with alias challenger")
    s.add_argument("--text-only", type=Path, metavar="PREDICTIONS",
                   help="the text-only-trained control's predictions.jsonl: its row and the learning headline")
    s.add_argument("--blank-frames", action="store_true",
                   help="evaluate on blank frames (the text-only-trained checkpoint itself)")

    s = sub.add_parser("compare", help="the comparison table across evaluated checkpoints")
    s.add_argument("metrics", nargs="+", metavar="NAME=reports/eval/NAME/metrics.json")
    s.add_argument("--out", type=Path, default=Path("reports/comparison.md"))

    s = sub.add_parser("promote", help="the promotion gate: @challenger vs @champion on the same bench records")
    s.add_argument("--curated", type=Path, default=Path("data/curated"),
                   help="the bench the champion is evaluated on again if its records differ")
    s.add_argument("--model", type=Path, help="register this model folder as @challenger first (dvc repro)")
    s.add_argument("--evaluation", type=Path, help="with --model: its evaluation folder (reports/eval/NAME)")
    s.add_argument("--out", type=Path, default=Path("reports/promotion"), help="decision.json and decision.md")
    s.add_argument("--dry-run", action="store_true", help="show the decision; change nothing in the registry")

    s = sub.add_parser("experiments", help="4D-RGPT's ablation tables (4, 5, 6) and GRPO's as runs, with 95%% "
                                           "intervals; with --seeds, per seed and pooled")
    s.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    s.add_argument("--seeds", nargs="+", type=int, metavar="N",
                   help=f"run the tables once per seed ({', '.join(SEED_KEYS)} set to N; under REPORTS/seed-N) "
                        "and pool them (REPORTS/tables_pooled.md); default: once, with the params' seeds")
    s.add_argument("--rows", nargs="+", metavar="NAME",
                   help="only these rows of the tables (and each table's reference row), e.g. --rows TPE")
    s.add_argument("--work", type=Path, default=Path("experiments"), help="data and models of the runs")
    s.add_argument("--reports", type=Path, default=Path("reports/experiments"))

    s = sub.add_parser("experiments-pool", help="pool seeds' tables written by `experiments --seeds` (runs nothing)")
    s.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    s.add_argument("--seeds", nargs="+", type=int, required=True, metavar="N")
    s.add_argument("--reports", type=Path, default=Path("reports/experiments"))

    s = sub.add_parser("ingest", help="a real stereo recording (folder, karlsruhe, kitti, stereo4d) -> clips")
    s.add_argument("--format", required=True, metavar="FORMAT",
                   help="the recording's layout: folder, karlsruhe, kitti or stereo4d (docs/sources.md)")
    s.add_argument("src", type=Path, help="the recording's root (a KITTI ..._sync drive folder, ...)")
    s.add_argument("--out", type=Path, required=True, help="clip root to write into (e.g. data/real)")
    s.add_argument("--window", type=int, default=16, help="frames per clip (default: 16)")
    s.add_argument("--stride", type=int, help="frames between clip starts (default: the window)")
    s.add_argument("--no-poses", action="store_true", help="write no camera poses (poses: null)")

    s = sub.add_parser("repro", help="dvc repro with every stage run nested under one MLflow parent run")
    s.add_argument("targets", nargs="*", help="dvc repro's targets (default: the whole dvc.yaml)")

    s = sub.add_parser("pipeline", help="the whole chain as a Prefect flow, one MLflow parent run")
    s.add_argument("--data", type=Path, default=Path("data"), help="data root (scenes/, curated/)")
    s.add_argument("--reports", type=Path, default=Path("reports"))
    s.add_argument("--models", type=Path, default=Path("models"))
    return p


def _name_path(arg: str) -> tuple[str, Path]:
    name, sep, path = arg.partition("=")
    if not sep:
        raise ValueError(f"compare takes NAME=PATH pairs, got {arg!r}")
    return name, Path(path)


def _trained(stage: str, result, out: Path) -> str:
    losses = result.losses
    return (f"{stage}: {result.steps} steps, loss {losses[0]:.3f} -> {losses[-1]:.3f}, model {result.model_dir}, "
            f"gate report {out / 'gate.json'}")


# One handler per subcommand: (params, args, keyword arguments every stage takes) -> the line to print.
# Each calls one function of ``components.stages`` (``tests/test_dvc_deps.py`` reads which one, to check
# that the ``dvc.yaml`` stage running the command declares that function's code and params).
Handler = Callable[[Params, argparse.Namespace, dict], str]


def _scenes(params: Params, args: argparse.Namespace, kw: dict) -> str:
    clips = stages().scenes(params, args.out, metrics_file=args.metrics, **kw)
    return f"rendered {len(clips)} clips into {args.out}"


def _curate(params: Params, args: argparse.Namespace, kw: dict) -> str:
    stats = stages().curate(params, args.clips, args.out, metrics_file=args.metrics, **kw)
    return (f"curated {sum(stats['records'].values())} records {stats['records']} into {args.out} "
            f"({stats['n_quarantined']} clips quarantined: {args.out.rstrip('/')}/quarantine.json)")


def _validate(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return stages().validate(params, args.curated, args.report, root=kw["root"]).summary()


def _prior_gate(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return stages().prior_gate(params, args.curated, args.report, root=kw["root"]).summary()


def _base_model(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return f"base model: {stages().base_model(params, args.curated, args.out, root=kw['root'])}"


def _sft(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return _trained("sft", stages().sft(params, args.curated, args.base, args.out, **kw), args.out)


def _sft_text_only(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return _trained("sft_text_only", stages().sft_text_only(params, args.curated, args.base, args.out, **kw), args.out)


def _teacher(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return f"teacher: {stages().teacher(params, args.curated, args.out, metrics_file=args.metrics, **kw)}"


def _teacher_targets(params: Params, args: argparse.Namespace, kw: dict) -> str:
    stats = stages().teacher_targets(params, args.curated, args.teacher, args.out, root=kw["root"])
    return f"teacher targets: {stats} in {args.out}"


def _p4d(params: Params, args: argparse.Namespace, kw: dict) -> str:
    result = stages().p4d(params, args.curated, args.sft, args.teacher, args.targets, args.out, **kw)
    return _trained("p4d", result, args.out)


def _grpo(params: Params, args: argparse.Namespace, kw: dict) -> str:
    init = args.init or stages().grpo_init(params, Path("models"))
    result = stages().grpo(params, args.curated, init, args.out, **kw)
    curve = result.reward_curve or [float("nan")]
    return (f"grpo: {result.steps} steps from {init}, mean reward {curve[0]:.3f} -> {curve[-1]:.3f}, "
            f"model {result.model_dir}, gate report {args.out / 'gate.json'}")


def _evaluate(params: Params, args: argparse.Namespace, kw: dict) -> str:
    from components.evaluation.controls import headline_text

    eval_params = stages().text_only_params(params) if args.blank_frames else params
    external = args.benchmark != "own"
    # the other mode's flags would be ignored without a word: stop instead
    other = ({"--register": args.register, "--text-only": args.text_only} if external else
             {"--annotations": args.annotations, "--media-root": args.media_root, "--predictions": args.predictions,
              "--missing-as-wrong": args.missing_as_wrong, "--controls": args.controls})
    if misplaced := [flag for flag, value in other.items() if value]:
        raise ValueError(f"evaluate --benchmark {args.benchmark}: {', '.join(misplaced)} only apply to "
                         f"{'--benchmark own' if external else 'external benchmarks'}")
    if external:
        if args.annotations is None or (args.model is None and args.predictions is None):
            raise ValueError(f"evaluate --benchmark {args.benchmark} needs --annotations FILE and --model DIR or "
                             "--predictions FILE")
        if args.model is not None and not args.name:
            raise ValueError("evaluate --model needs --name (the checkpoint's name in reports and MLflow)")
        name = args.name or args.predictions.stem
        out = args.out or Path("reports/eval") / args.benchmark / name
        metrics = stages().evaluate_benchmark(eval_params, args.benchmark, args.annotations, out, name=name,
                                              media_root=args.media_root, model_dir=args.model,
                                              predictions=args.predictions, missing_as_wrong=args.missing_as_wrong,
                                              controls=args.controls, **kw)
        missing = metrics["benchmark"]["missing_predictions"]
        note = f" ({missing} without a prediction, scored wrong)" if missing else ""
        return (f"{name}: {args.benchmark} score {metrics['model']['overall']['value']:.4f} over "
                f"{metrics['model']['n']} records{note} -> {out / 'report.md'}")
    if args.model is None or not args.name:
        raise ValueError("evaluate --benchmark own needs --model DIR and --name NAME")
    out = args.out or Path("reports/eval") / args.name
    metrics = stages().evaluate(eval_params, args.curated, args.model, out, name=args.name, register=args.register,
                                text_only=args.text_only, **kw)
    line = f"{args.name}: accuracy {metrics['model']['overall']['value']:.3f} -> {out / 'report.md'}"
    return line + (f"\n{args.name}: {headline_text(metrics['headline'])}" if metrics.get("headline") else "")


def _compare(params: Params, args: argparse.Namespace, kw: dict) -> str:
    from components.evaluation.report import comparison_table
    from components.io import write_text

    table = comparison_table(dict(_name_path(m) for m in args.metrics))
    write_text(args.out, table + "\n")
    return table


def _promote(params: Params, args: argparse.Namespace, kw: dict) -> str:
    promotion = stages().promote(params, args.curated, args.out, model_dir=args.model, evaluation=args.evaluation,
                                 dry_run=args.dry_run, root=kw["root"])
    return promotion.summary + ("\n(dry run: the registry is unchanged)" if args.dry_run else "")


def _repro(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return stages().repro(params, list(args.targets), root=kw["root"])


def _ingest(params: Params, args: argparse.Namespace, kw: dict) -> str:
    from components.sources.ingest import ingest  # cv2 readers load only for this command

    summary = ingest(args.format, args.src, args.out, window=args.window, stride=args.stride,
                     poses=not args.no_poses)
    return (f"ingested {summary['clips']} clips of {summary['window']} frames from {args.src} into {args.out} "
            f"({summary['frames_dropped']} of {summary['frames']} frames dropped; poses: {summary['pose_source']})")


def _experiments(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return _run_flow("experiments", tables=args.tables, params_path=str(args.params), seeds=args.seeds,
                     rows=args.rows, overrides=list(args.overrides), work_root=str(args.work), reports_root=str(args.reports))


def _experiments_pool(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return pool_reports(args.reports, args.tables, args.seeds)


def _pipeline(params: Params, args: argparse.Namespace, kw: dict) -> str:
    return _run_flow("pipeline", params_path=str(args.params), overrides=list(args.overrides),
                     data_root=str(args.data), reports_root=str(args.reports), models_root=str(args.models))


HANDLERS: dict[str, Handler] = {
    "scenes": _scenes, "curate": _curate, "validate": _validate, "prior-gate": _prior_gate,
    "base-model": _base_model, "sft": _sft, "sft-text-only": _sft_text_only, "teacher": _teacher,
    "teacher-targets": _teacher_targets, "p4d": _p4d, "grpo": _grpo, "evaluate": _evaluate, "compare": _compare,
    "promote": _promote, "repro": _repro,
    "experiments": _experiments, "experiments-pool": _experiments_pool, "pipeline": _pipeline, "ingest": _ingest,
}


def stages():
    """``components.stages``, imported on first use: ``--help`` and ``compare`` need neither MLflow nor torch."""
    from components import stages as module

    return module


def _run_flow(name: str, **kwargs) -> str:
    """The one place ``components`` reaches the orchestrator, lazily: only these two commands need Prefect
    (``tests/test_architecture.py`` allows this import and no other)."""
    from flows.experiments import experiments
    from flows.pipeline import pipeline

    return {"experiments": experiments, "pipeline": pipeline}[name](**kwargs)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "mlflow", "urllib3", "great_expectations", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        params = load_params(args.params, args.overrides)
    except ParamsError as exc:
        print(f"mllm4d: {exc}", file=sys.stderr)
        return 2
    # Imported here, not at the top: the heavy stacks (MLflow, GX, torch) load only when a command needs them.
    from components.quality import GateFailed
    from components.quality.prior import PriorGateFailed
    from components.tracking.runs import Terminated
    from components.training.gate import TrainingGateFailed

    try:
        print(HANDLERS[args.command](params, args, {"root": Path.cwd(), "progress": not args.quiet}))
    except (GateFailed, PriorGateFailed, TrainingGateFailed, ValueError, FileNotFoundError) as exc:
        print(f"mllm4d: {exc}", file=sys.stderr)
        return 1
    except Terminated as exc:  # SIGTERM: the open MLflow runs were ended KILLED on the way out
        print(f"mllm4d: {args.command} stopped: {exc}", file=sys.stderr)
        return 128 + 15  # the shell's code for a SIGTERM'd process
    return 0


if __name__ == "__main__":
    sys.exit(main())
