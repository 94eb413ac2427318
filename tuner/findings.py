"""`python -m tuner.findings DIR`: the paper's five findings, checked on one experiment's results.

Reads `results.csv` and the teacher's accuracy of a run folder (`runs/<experiment>/`) or a
published results folder (`results/<experiment>/`) and writes `findings.md` and
`findings.json` beside them (`tuner.report.findings` says what each finding checks).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mimic_tf.layout import ExperimentLayout
from tuner.report.findings import FindingsError, write_findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.findings",
        description="The paper's five findings, checked on one experiment's results: "
                    "writes findings.md and findings.json beside them.")
    parser.add_argument("directory", type=Path,
                        help="a folder with results.csv and teacher.json (or teacher/)")
    parser.add_argument("--out", type=Path, help="where to write (default: the folder)")
    args = parser.parse_args(argv)
    try:
        write_findings(args.directory, args.out)
    except FindingsError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    written = ExperimentLayout(args.out) if args.out is not None else ExperimentLayout(
        args.directory)
    print(written.findings_md.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
