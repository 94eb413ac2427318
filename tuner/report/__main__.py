"""`python -m tuner.report DIR`: rebuild `results.csv`, `results.md`, `figure.png` of DIR.

DIR is an experiment folder (`runs/<experiment>`); `tuner.report.build` says what goes in.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mimic_tf.layout import ExperimentLayout
from tuner.report.build import write_report
from tuner.report.summary_run import TABLE_PAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.report",
        description="Rebuild results.csv, results.md and figure.png of an experiment folder "
        "from the searches it holds (MLP and CNN runs merged), and its TensorBoard run "
        "logs/summary (the table and the figures).",
    )
    parser.add_argument("directory", help="experiment folder, e.g. runs/default")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    layout = ExperimentLayout(Path(args.directory))
    if not layout.searches.is_dir() and not layout.kept_results.is_file():
        print(f"error: {layout.root} holds no searches/ folder; pass an experiment folder such "
              "as runs/default (the one `python -m tuner.run` wrote)", file=sys.stderr)
        return 2
    report = write_report(layout.root)
    print(report.markdown)
    print(f"wrote {report.results_csv}, {report.results_md}, {report.figure} and the "
          f"TensorBoard run {report.summary_run.parent}")
    print(f"TensorBoard: tensorboard --logdir {layout.root} (its first page shows Figure 1; "
          f"the table: http://localhost:6006/{TABLE_PAGE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
