"""Experiment: does label smoothing in the teacher help or hurt the students it teaches?

Müller, Kornblith & Hinton (2019, "When does label smoothing help?") found that a teacher
trained with label smoothing distils worse, although its own accuracy is as good or better:
smoothing erases the information about class similarity that its logits carry. airbench
trains with smoothing 0.2. This script decides `teacher.airbench.label_smoothing` from the
students, not from the teacher's own accuracy.

Method: for each smoothing value, the same teacher (config `--config`, default
`configs/default.yaml`: same seed, data, members, recipe, epochs) is trained, its transfer
set built, and one student search run for one cell (default: CNN 1 conv at 0.1M; MLP 1 hidden
at 0.1M too with `--cells cnn1,mlp1`), all through `tuner.experiment.run_experiment` into
`OUT/<config name>-smoothing-<value>/`. Reports the teacher's test accuracy and each cell's
best and top-k mean student test accuracy.

Reference run (docs/teacher.md): 2-core AMD EPYC (AVX2), no GPU, TF 2.21 / Keras 3.15,
JPEG copy of CIFAR-10, one run of `python benchmarks/teacher_smoothing.py`. Prints one JSON
object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import dataclasses
import json
from pathlib import Path

from mimic_tf.config import load_config
from tuner.experiment import run_experiment


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--smoothing", default="0,0.2", help="comma list of smoothing values")
    parser.add_argument("--cells", default="cnn1", help="comma list of FAMILYDEPTH, e.g. cnn1,mlp1")
    parser.add_argument("--budget", type=float, default=1.0e5)
    parser.add_argument("--out", default="runs")
    parser.add_argument("--data", default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cells = [(cell[:3], int(cell[3:])) for cell in args.cells.split(",")]
    families = tuple(sorted({family for family, _ in cells}, key=["mlp", "cnn"].index))
    results = {}
    for smoothing in (float(value) for value in args.smoothing.split(",")):
        base = load_config(args.config, overrides={
            "data.source": args.data,
            "teacher.airbench.label_smoothing": smoothing,
            "search.budgets": [args.budget],
            "search.mlp_depths": [depth for family, depth in cells if family == "mlp"] or [1],
            "search.cnn_depths": [depth for family, depth in cells if family == "cnn"] or [1],
            "search.export": False,
        })
        config = dataclasses.replace(base, name=f"{base.name}-smoothing-{smoothing:g}")
        summary = run_experiment(config, families, args.out, verbose=1)
        teacher = json.loads((Path(summary.root) / "teacher" / "teacher.json").read_text())
        results[f"{smoothing:g}"] = {
            "teacher_test_accuracy": teacher["ensemble"]["test_accuracy"],
            "students": {s.cell.name: {"best_test_accuracy": s.best_test,
                                       "top_k_mean_test_accuracy": s.mean_test}
                         for s in summary.report.summaries},
        }
        print(json.dumps({f"{smoothing:g}": results[f"{smoothing:g}"]}), flush=True)
    print(json.dumps({"config": args.config, "label_smoothing": results}))


if __name__ == "__main__":
    main()
