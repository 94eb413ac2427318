"""Experiment: do flip-averaged teacher logits in the transfer set make better students?

An airbench teacher's logits on each augmented view are, by default, the mean over the view
and its mirror (`teacher.airbench.flip_tta`, airbench's flip test-time augmentation). That
doubles the teacher's inference over the transfer set: 1.2 of the 2.4 hours of the
replication campaign's 8-view transfer set. This measures what the students get for it; its
answer is `transfer.flip_average` (`auto`: as the teacher; `false`: the view alone).

Method: the teacher of a finished run (`--run`, default `runs/default`: its `member_XX.keras`)
builds two transfer sets of the run's views, in the same order, one with flip-averaged logits
and one with the view's logits alone (`transfer.flip_average` true and false), each timed.
For each cell (`--cells`, default the run's CNN 1 conv and MLP 2 hidden at 316k), the run's
best trial is retrained from scratch on each set with its hyperparameters, for each seed of
`--seeds`, to the run's epoch cap; each student is scored on the test labels. The same seed
gives the same initialisation and the same batch order on both sets, so a pair differs only
by its targets.

    python benchmarks/transfer_flip.py --run runs/default --out /tmp/transfer-flip

Reference run: docs/performance.md. Prints one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import dataclasses
import json
import time
from pathlib import Path

import keras
import numpy as np

from mimic_tf import data
from mimic_tf.config import load_config
from mimic_tf.layout import ExperimentLayout
from mimic_tf.teachers import build_ensemble, load_model
from mimic_tf.transfer import build_transfer_set
from tuner.frontier.measure import frontier_candidates
from tuner.search.hypermodel import StudentHyperModel, TrainingData, fixed_hyperparameters


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/default"),
                        help="a finished run of an airbench teacher (default: runs/default)")
    parser.add_argument("--cells", default="cnn-d1-b316k,mlp-d2-b316k",
                        help="comma list of the run's search names")
    parser.add_argument("--seeds", default="0,1", help="comma list of student seeds")
    parser.add_argument("--out", type=Path, default=Path("/tmp/transfer-flip"),
                        help="where the two transfer sets are written")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    layout = ExperimentLayout(args.run)
    config = load_config(layout.config_file)
    if config.teacher.family != "airbench":
        raise SystemExit(f"{args.run} has a {config.teacher.family} teacher; flip averaging is "
                         "the airbench family's (pass a run of an airbench teacher)")
    splits = data.load_splits(config.data)
    members = [load_model(layout.teacher / f"member_{index:02d}.keras")
               for index in range(config.teacher.members)]
    # The run's teacher; `transfer.flip_average` decides, as in a run, what its views hold.
    teacher = build_ensemble(members, flip_average=config.teacher.flip_average)
    best = {candidate.cell.name: candidate for candidate in frontier_candidates(layout)
            if candidate.rank == 1}
    cells = [name for name in args.cells.split(",") if name]
    missing = [name for name in cells if name not in best]
    if missing:
        raise SystemExit(f"{args.run} has no completed search {missing}; it has {sorted(best)}")
    seeds = [int(seed) for seed in args.seeds.split(",")]

    results: dict = {"run": str(args.run), "views": config.transfer.views,
                     "teacher_members": len(members), "settings": {}}
    for flip in (True, False):
        label = "flip_averaged" if flip else "view_only"
        flip_config = dataclasses.replace(config, transfer=dataclasses.replace(
            config.transfer, flip_average="true" if flip else "false"))
        started = time.perf_counter()
        transfer = build_transfer_set(flip_config, splits, teacher, args.out / label,
                                      verbose=0)
        seconds = time.perf_counter() - started
        training = TrainingData.from_transfer_set(transfer, config.student.batch_size)
        setting = {"transfer_seconds": round(seconds, 1),
                   "teacher_test_accuracy": float(np.mean(
                       transfer.test_logits.argmax(axis=1) == splits.test_labels)),
                   "students": {}}
        for name in cells:
            candidate = best[name]
            accuracies = []
            for seed in seeds:
                keras.backend.clear_session()
                hp = fixed_hyperparameters(candidate.trial.hyperparameters)
                hypermodel = StudentHyperModel(candidate.cell, config.student, seed=seed,
                                               spec=splits.spec)
                distiller = hypermodel.build(hp)
                keras.utils.set_random_seed(seed)
                hypermodel.fit(hp, distiller, training)
                metrics = distiller.evaluate(training.test, verbose=0, return_dict=True)
                accuracies.append(float(metrics["accuracy"]))
                print(json.dumps({"setting": label, "cell": name, "seed": seed,
                                  "test_accuracy": accuracies[-1]}), flush=True)
            setting["students"][name] = {"test_accuracy": accuracies,
                                         "mean": float(np.mean(accuracies))}
        results["settings"][label] = setting
        print(json.dumps({label: setting}), flush=True)
    on, off = (results["settings"][key] for key in ("flip_averaged", "view_only"))
    results["gain_points"] = {name: round(100 * (on["students"][name]["mean"]
                                                 - off["students"][name]["mean"]), 2)
                              for name in cells}
    results["transfer_cost_ratio"] = round(on["transfer_seconds"] / off["transfer_seconds"], 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
