"""``progopt compile``: search a program's per-step instruction, demos, model, strategy and format."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from optimizer.commands.evaluate import add_task_arguments, input_paths
from optimizer.commands.options import count, positive_float, positive_int, share, strategy
from optimizer.errors import UsageError
from optimizer.outputs import check_output, write_atomic
from optimizer.secrets import SecretDetector

if TYPE_CHECKING:
    from optimizer.search.settings import SpaceSettings

OUTPUTS = ("", ".result.json", ".report.md", ".front.png")  # suffixes replacing --out's for each output file


def _first_line(exc: BaseException) -> str:
    """The first sentence of an error from SQLAlchemy, a driver or MLflow (their messages run on)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:200]


def _storage(url: str):  # noqa: ANN202 - an optuna storage, imported lazily
    from optimizer.search.storage import open_storage

    try:
        return open_storage(url)
    except Exception as exc:  # noqa: BLE001 - any failure to open it is the user's URL or server
        raise UsageError(f"cannot open the Optuna storage ({_first_line(exc)})", f"--storage {url}") from exc


def _tracker(args: argparse.Namespace):  # noqa: ANN202 - an MlflowTracker, imported lazily
    from optimizer.tracking import MlflowTracker

    try:
        tracker = MlflowTracker(tracking_uri=args.tracking_uri, experiment=args.experiment)
        tracker.client.search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the user's URI or server
        raise UsageError(f"cannot open the MLflow tracking store ({_first_line(exc)})",
                         f"--tracking-uri {args.tracking_uri}") from exc
    return tracker


def _remember_trust(program_ref: str, artifact: Path) -> None:
    """Records the compiled program's root in the user's trust file (the user typed this reference, so the user
    chose that code), so ``progopt run ARTIFACT`` loads it from any directory; says what it did, or why the
    artifact will need ``--trust`` (or will not load at all) instead."""
    from optimizer import refs
    from optimizer.artifact.trust_file import remember_root, trust_file_path

    root = refs.program_root(program_ref)
    try:
        refs.locate(refs.portable(program_ref), [root])
        if remember_root(root):
            print(f"progopt: trusted {root} for artifacts' program code (added to {trust_file_path()}; remove the "
                  "line to revoke)", file=sys.stderr)
    except (refs.ProgramReferenceError, ValueError, OSError) as exc:
        print(f"progopt: {artifact} will not load as it is: {exc}. Fix that, then run it with --trust {root}",
              file=sys.stderr)


def space_settings(args: argparse.Namespace) -> SpaceSettings:
    """The command's space options as :class:`SpaceSettings` (``none`` spelled out where a value can be none;
    options left out stay open for the budget-scaled defaults)."""
    from optimizer.search.settings import SpaceSettings

    return SpaceSettings(formats=tuple(args.formats), strategies=args.strategies and tuple(args.strategies),
                         proposer=None if args.proposer == "none" else args.proposer,
                         teacher=None if args.teacher == "none" else args.teacher, demo_draws=args.demo_draws,
                         retrieval_sizes=tuple(args.retrieved_demos),
                         label_words=None if args.label_words is None else tuple(
                             w for w in args.label_words if w != "none"))


def run(args: argparse.Namespace) -> int:
    from optimizer.results import markdown_report, plot_front, print_report
    from optimizer.search.compile import Budget, Caps, SearchSettings, compile
    from optimizer.tasks import resolve_task

    out = Path(args.out)
    for suffix in OUTPUTS:
        check_output(out.with_suffix(suffix) if suffix else out, "--out", input_paths(args))
    task = resolve_task(args)
    train = task.load(args.train or "train", args.train_limit)
    val = task.load(args.val or "val", args.val_limit)
    test = task.load(args.data or args.split, args.limit) if args.split != "none" else None
    observer = _tracker(args) if args.tracking_uri != "none" else None
    url = args.storage or f"sqlite:///{out.with_suffix('.study.db')}"
    storage = _storage(url)
    search = SearchSettings(sampler=args.sampler, objectives=tuple(args.objectives), seed=args.seed,
                            minibatch=args.minibatch, num_threads=args.num_threads, final_top=args.final_top,
                            final_share=args.final_share, validation=args.validation)
    space = space_settings(args)
    _remember_trust(args.program, out)  # before the compile: its MLflow model is loaded once to be checked
    result = compile(
        task.program_class(), trainset=train, valset=val, metric=task.metric, models=task.pool, testset=test,
        budget=Budget(calls=args.budget, cost=args.budget_cost, seconds=args.budget_seconds), search=search,
        space=space, caps=Caps(max_cost_per_example=args.max_cost, max_p95_latency_s=args.max_p95),
        storage=storage, study_name=args.study_name, program_ref=args.program, observer=observer)
    print_report(result)
    png = plot_front(result, out.with_suffix(".front.png"))
    result_path = out.with_suffix(".result.json")
    masked = SecretDetector().mask_value(json.loads(result.model_dump_json()))  # a report: no secret reaches it
    write_atomic(result_path, json.dumps(masked, indent=1))
    write_atomic(out.with_suffix(".report.md"), markdown_report(result))
    from optimizer.artifact import save_result

    save_result(result, out, program=task.program_class(), pool=task.pool)
    print(json.dumps({"artifact": str(out), "result": str(result_path), "front_png": str(png),
                      "storage": url, "spent": result.spent}, indent=1))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from optimizer.search.defaults import (
        AUTO_WORDS_FROM,
        CALLS_PER_VALIDATION_EXAMPLE,
        DEFAULT_STRATEGIES,
        DRAWS_FROM,
        FINAL_FROM,
        FINAL_SHARE,
        FINAL_TOP,
        MIN_VALIDATION,
        MORE_DRAWS_FROM,
    )
    from optimizer.search.settings import FORMATS, OBJECTIVE_NAMES, SAMPLERS, SearchSettings, SpaceSettings

    search, space = SearchSettings(), SpaceSettings()
    p = sub.add_parser("compile", help="optimize a program; writes the chosen artifact, result JSON and front PNG")
    add_task_arguments(p, split_help="split of the program's TASK for the test report after the search, when "
                       "--data is not given (default test; 'none' skips the report, which on a multi-step program "
                       "is slow)")
    p.add_argument("--train", help="train file or split (default: TASK train)")
    p.add_argument("--val", help="validation file or split (default: TASK val)")
    p.add_argument("--train-limit", type=count)
    p.add_argument("--val-limit", type=count)
    p.add_argument("--budget", type=positive_int, default=1000, help="LM calls reaching a model (default 1000)")
    p.add_argument("--budget-cost", type=positive_float, help="US$ limit")
    p.add_argument("--budget-seconds", type=positive_float, help="wall-clock limit")
    p.add_argument("--seed", type=int, default=search.seed)
    p.add_argument("--sampler", "--strategy", dest="sampler", default=search.sampler, choices=SAMPLERS,
                   help="how the search picks the next variant (--strategy: its former name)")
    p.add_argument("--objectives", nargs="+", default=list(search.objectives), choices=OBJECTIVE_NAMES)
    p.add_argument("--max-cost", type=float, help="max US$ per example for the chosen variant")
    p.add_argument("--max-p95", type=float, help="max p95 latency (s) per example for the chosen variant")
    p.add_argument("--formats", nargs="+", default=list(space.formats), choices=FORMATS,
                   help=f"prompt formats to search per step (default: {' '.join(space.formats)})")
    p.add_argument("--strategies", nargs="+", type=strategy, default=None,
                   help="direct, cot, scK (self-consistency, K >= 2), score, score-cc, score-bc (label scoring: "
                        "uncalibrated, contextual or batch calibration; label outputs, compact format, local models) "
                        f"(default {' '.join(DEFAULT_STRATEGIES)})")
    p.add_argument("--demo-draws", type=positive_int, default=None,
                   help="label-balanced demo sets per size, each drawn with its own seed and order (default: by "
                   f"budget, 1 below {DRAWS_FROM} calls, 4 below {MORE_DRAWS_FROM}, else 8)")
    p.add_argument("--retrieved-demos", nargs="*", type=positive_int, default=list(space.retrieval_sizes),
                   metavar="K", help="retrieved-demo candidates: the K most similar training examples per input "
                   "(default: none)")
    p.add_argument("--label-words", nargs="+", default=None, choices=("signature", "auto", "none"),
                   help="label-word candidates of label steps: words the signature gives, words found from the "
                   f"training data ('none': the labels only) (default: signature, and auto from {AUTO_WORDS_FROM} "
                   "calls)")
    p.add_argument("--proposer", default=space.proposer, help="pool model proposing instructions ('none' to skip)")
    p.add_argument("--teacher", default=space.teacher, help="pool model bootstrapping demos ('none' to skip)")
    p.add_argument("--minibatch", type=positive_int, default=search.minibatch,
                   help="validation examples for screening")
    p.add_argument("--validation", type=positive_int, default=None, metavar="N",
                   help="validation examples scoring each promoted variant; the rest re-score the final selection "
                   f"(default: one per {CALLS_PER_VALIDATION_EXAMPLE} calls, at least {MIN_VALIDATION})")
    p.add_argument("--final-top", type=count, default=None, metavar="K",
                   help="re-score the K best validated variants on held-out training examples and choose among "
                   f"them (default: {FINAL_TOP} from {FINAL_FROM} calls, else 0: choose by validation alone)")
    p.add_argument("--final-share", type=share, default=None,
                   help=f"budget share kept for --final-top (default {FINAL_SHARE})")
    p.add_argument("--storage", help="Optuna storage URL (default: sqlite next to --out)")
    p.add_argument("--study-name", help="resume/continue this study (default: derived from program and data)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db; 'none' disables)")
    p.add_argument("--experiment", default="progopt", help="MLflow experiment name")
    p.add_argument("--out", default="out/compiled.json", help="artifact path")
    p.set_defaults(func=run)
