"""`python -m tuner.run --family mlp|cnn|all`: the paper's student searches, table and figure.

    python -m tuner.run --family all                       # configs/default.yaml end to end
    python -m tuner.run --family mlp                       # the MLP searches only
    python -m tuner.run --family cnn --config smoke --trials 2 --epochs 1 --out /tmp/runs

Flags override the config; a bad flag or value exits with status 2 and says what is allowed.
Rerunning the same command continues where it stopped; `--overwrite` starts the searches
afresh. See docs/tuner.md (distributed search, TensorBoard, artifacts).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mimic_tf.cli import VERBOSE_FLAG, VERBOSE_HELP, import_tensorflow_quietly
from mimic_tf.config import ConfigError, load_config
from mimic_tf.vocabulary import ALL_FAMILIES, LANE_PHASES, STUDENT_FAMILIES, TUNERS

if TYPE_CHECKING:  # tuner.experiment loads TensorFlow: imported once the flags are good
    from tuner.experiment import ExperimentSummary
    from tuner.report.build import Report

_SUFFIXES = {"k": 1e3, "m": 1e6, "g": 1e9}


def parse_budgets(text: str) -> list[float]:
    """'1e6,3.16e6' or '30k,1M' -> [1e6, 3.16e6]."""
    budgets = []
    for item in text.split(","):
        item = item.strip()
        scale = _SUFFIXES.get(item[-1:].lower(), 1.0) if item else 1.0
        number = item[:-1] if scale != 1.0 else item
        try:
            budgets.append(float(number) * scale)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"budget {item!r} is not a number; write e.g. 1e6,3.16e6 or 30k,1M"
            ) from None
    return budgets


def parse_depths(text: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3]."""
    try:
        return [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"depths {text!r} are not integers; write e.g. 1,2,3 (MLP 1-5, CNN 1-4)"
        ) from None


def parse_families(text: str) -> tuple[str, ...]:
    """'mlp', 'cnn', 'all' or a comma list such as 'mlp,cnn' -> ('mlp', 'cnn')."""
    items = [item.strip().lower() for item in text.split(",") if item.strip()]
    if items == [ALL_FAMILIES]:
        return STUDENT_FAMILIES
    unknown = [item for item in items if item not in STUDENT_FAMILIES]
    if not items or unknown:
        raise argparse.ArgumentTypeError(
            f"family {text!r} is not one of mlp, cnn, all (or a comma list such as mlp,cnn)"
        )
    return tuple(family for family in STUDENT_FAMILIES if family in items)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.run",
        description="Search student depth and width under parameter budgets (one Bayesian "
        "search per family, depth and budget), evaluate the best students on the test set, "
        "export them for TF Serving, and write results.csv, results.md (the paper's Table 2) "
        "and figure.png (its Figure 1) under OUT/<experiment>/.",
    )
    parser.add_argument("--family", required=True, type=parse_families,
                        metavar="{mlp,cnn,all}",
                        help="student families: mlp (1-5 hidden layers), cnn (1-4 conv "
                        "layers), all (both), or a comma list such as mlp,cnn")
    parser.add_argument("--config", default="default",
                        help="YAML config path or a name in configs/ (default: default)")
    parser.add_argument("--depths", type=parse_depths, default=None,
                        help="comma-separated depths to search, e.g. 1,2,3 (overrides "
                        "search.mlp_depths or search.cnn_depths; one family only)")
    parser.add_argument("--budgets", type=parse_budgets, default=None,
                        help="comma-separated parameter budgets, e.g. 1e6,3.16e6 or 30k,1M "
                        "(overrides search.budgets)")
    parser.add_argument("--tuner", choices=TUNERS, default=None,
                        help="search algorithm (overrides search.tuner; the paper used "
                        "bayesian)")
    parser.add_argument("--trials", type=positive_int, default=None,
                        help="trials per search (overrides search.trials)")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help="epoch cap of every trial (overrides student.schedule.epochs and the "
                        "families' caps, student.mlp_epochs and student.cnn_epochs)")
    parser.add_argument("--data", default=None,
                        help="data source: auto | tfds:cifar10 | folder:PATH | synthetic "
                        "(overrides data.source)")
    parser.add_argument("--teacher", default=None, metavar="PATH",
                        help="your own trained teacher: a .keras file or a SavedModel folder "
                        "mapping images to logits (sets teacher.family: keras and "
                        "teacher.path; teacher.pixel_scale says what pixels it takes)")
    teacher = parser.add_mutually_exclusive_group()
    teacher.add_argument("--teacher-logits", default=None, metavar="FOLDER",
                         help="distil from a published teacher (its members' float16 logits, "
                         "mimic_tf.publish_teacher) instead of training one: sets "
                         "teacher.published")
    teacher.add_argument("--train-teacher", action="store_true",
                         help="train the config's teacher even where it names a published "
                         "one (clears teacher.published)")
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=None,
                        help="also train each cell's best architecture on hard 0/1 labels, "
                        "with the same search effort (sets search.baseline)")
    parser.add_argument("--push", action=argparse.BooleanOptionalAction, default=None,
                        help="push each search's best student through the release gate into "
                        "a serving base at the end (sets release.push; see serving.release)")
    parser.add_argument("--frontier", action=argparse.BooleanOptionalAction, default=None,
                        help="serve every trained student and measure the accuracy-latency "
                        "frontier at the end (sets frontier.measure; default on)")
    parser.add_argument("--serving-base", default=None,
                        help="the serving base --push pushes into (sets release.serving_base; "
                        "default OUT/<experiment>/serving)")
    parser.add_argument("--out", default="runs", help="output root (default: runs/)")
    parser.add_argument("--keep", default=None, metavar="RESULTS",
                        help="a published results folder of this experiment (results/<name>: "
                        "its results.csv and config.yaml): keep its finished searches as "
                        "records and do not run them again, e.g. after the run folder was "
                        "lost with its machine (tuner.search.kept)")
    parser.add_argument("--only", default=None, metavar="SEARCH",
                        help="run this one search of the plan, by name (mlp-d2-b316k, "
                        "cnn-d1-b1M-hard for a baseline): a campaign's unit of work")
    parser.add_argument("--stop-after-trials", type=int, default=None, metavar="N",
                        help="with --only: end the search's run once N of its trials have "
                        "ended, each tested (a part of it, sized to a stretch of work); the "
                        "next run goes on from there")
    parser.add_argument("--parallel", type=int, default=None, metavar="N",
                        help="searches side by side, each lane a process with its share of "
                        "the cores (sets search.parallel; 0: one lane a core, 1: one search "
                        "after another)")
    # A lane of searches side by side (tuner.search.lanes), started by the run itself: its
    # phase and how many lanes share the searches (for its ETA).
    parser.add_argument("--lane", choices=LANE_PHASES, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lanes", type=positive_int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--overwrite", action="store_true",
                        help="delete this run's searches, their logs and exported models "
                        "and start afresh (the cached teacher and transfer set are kept)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--json", action="store_true",
                        help="end with the summary as JSON instead of the table")
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    return parser


def overrides_from(args: argparse.Namespace) -> dict:
    """The dotted config keys the flags set (None: keep the config's value)."""
    overrides = {f"search.{family}_depths": args.depths for family in args.family}
    return {
        **overrides,
        "search.budgets": args.budgets,
        "search.tuner": args.tuner,
        "search.trials": args.trials,
        # --epochs caps every trial: the families' own caps (the default config's MLP 8, CNN 6)
        # give way to it (0: student.schedule.epochs)
        "student.schedule.epochs": args.epochs,
        "student.mlp_epochs": None if args.epochs is None else 0,
        "student.cnn_epochs": None if args.epochs is None else 0,
        "data.source": args.data,
        "teacher.family": "keras" if args.teacher else None,
        "teacher.path": args.teacher,
        # a teacher of your own (--teacher) or one trained here is not a published one
        "teacher.published": ("" if args.train_teacher or args.teacher
                              else args.teacher_logits),
        "search.baseline": args.baseline,
        "search.parallel": args.parallel,
        "release.push": args.push,
        "frontier.measure": args.frontier,
        "release.serving_base": args.serving_base,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.stop_after_trials is not None and (args.only is None or args.stop_after_trials < 1):
        parser.error("--stop-after-trials N runs a part of one search: give N >= 1 and the "
                     "search with --only (e.g. --only cnn-d4-b1M --stop-after-trials 4)")
    if args.depths is not None and len(args.family) > 1:
        parser.error("--depths applies to one family: give --family mlp or --family cnn "
                     "(MLP depths are 1-5, CNN depths 1-4)")
    try:
        config = load_config(args.config, overrides=overrides_from(args))
    except ConfigError as error:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2

    # Heavy imports (TensorFlow) only once the flags are known to be good.
    import_tensorflow_quietly(args.verbose)
    from mimic_tf.data import DataError
    from mimic_tf.teachers import TeacherMismatchError
    from mimic_tf.teachers.keras_teacher import TeacherLoadError
    from mimic_tf.teachers.published import PublishedTeacherError
    from tuner.experiment import UnknownSearchError, run_experiment
    from tuner.search.cell_search import MissingCheckpointError
    from tuner.search.distributed import DistributedSetupError
    from tuner.search.kept import KeptSearchError
    from tuner.search.lanes import LaneFailedError
    from tuner.search.settings import SearchMismatchError

    try:
        command = " ".join(["python -m tuner.run", *(argv if argv is not None else sys.argv[1:])])
        summary = run_experiment(config, args.family, args.out, overwrite=args.overwrite,
                                 verbose=0 if args.quiet else 1, command=command,
                                 keep=args.keep, only=args.only,
                                 stop_after_trials=args.stop_after_trials, lane=args.lane,
                                 lanes=args.lanes)
    except LaneFailedError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    except (SearchMismatchError, DistributedSetupError, TeacherMismatchError,
            TeacherLoadError, KeptSearchError, UnknownSearchError,
            MissingCheckpointError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except PublishedTeacherError as error:
        print(f"{parser.prog}: error: {error}. Two ways on: run on the data, augmentation and "
              "views the teacher was published from, or train a teacher on this data "
              "(--train-teacher; teacher.published: '' in the config)", file=sys.stderr)
        return 2
    except DataError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary_json(summary), indent=2))
    elif summary.report is not None:
        print(summary_text(summary.report))
    return 0


def summary_json(summary: ExperimentSummary) -> dict:
    """The machine-readable end of a run (`--json`)."""
    result = {"experiment": str(summary.root), "searches": summary.cells,
              "wall_seconds": round(summary.seconds, 1),
              "stage_seconds": {stage: round(seconds, 1)
                                for stage, seconds in summary.stage_seconds.items()}}
    if summary.report is not None:
        result["results"] = [
            {"cell": s.cell.name, "trials": s.trials, "best_test_accuracy": s.best_test,
             "top_k_mean_test_accuracy": s.mean_test}
            for s in summary.report.summaries
        ]
        result["files"] = [str(summary.report.results_csv), str(summary.report.results_md),
                           str(summary.report.figure)]
    return result


def summary_text(report: Report) -> str:
    """The end of a run for a person: the table, the gap, where the files are, TensorBoard."""
    from mimic_tf.layout import ExperimentLayout
    from tuner import artifacts
    from tuner.frontier.table import read_frontier
    from tuner.report.findings import check_findings

    root = report.results_md.parent
    layout = ExperimentLayout(root)
    teacher = artifacts.read_teacher_summary(layout.teacher_summary)
    gap = check_findings(report.summaries, teacher.test_accuracy if teacher else None)[0]
    frontier = []
    if layout.frontier_md.is_file():
        front = [row for row in read_frontier(layout.frontier_csv) if row.pareto]
        frontier = ["", f"Which student to ship: {len(front)} on the accuracy-latency frontier, "
                    f"in {layout.frontier_md} (frontier.png; release one with python -m "
                    f"tuner.publish --run {root} --push --pick frontier --max-p99-ms MS)."]
    return "\n".join([
        "",
        "Test accuracy (%) of each search's best student / mean of its top trials:",
        "",
        *report.table,
        "",
        f"Convolutional gap (the 1-conv CNN minus the best MLP): {gap['text']}.",
        *frontier,
        "",
        f"Files in {root}/: results.md (this table and how it was made), results.csv, "
        "figure.png, models/ (SavedModels for TF Serving).",
        f"Inspect the run: tensorboard --logdir {root}",
        f"Machine-readable summary: add --json; the five findings: "
        f"python -m tuner.findings {root}",
    ])


if __name__ == "__main__":
    sys.exit(main())
