"""Experiment: would longer trials change a search's result? Its best trial, trained longer.

The searches cap each trial's epochs to fit the machine (`student.schedule.epochs`,
`student.mlp_epochs`, `student.cnn_epochs`), and `results.md` names the best trials still
rising at the cap. This takes the best trial of each named search of a finished run and
trains it again from scratch: its hyperparameters, the search's seed, the run's own transfer
set, the plateau schedule, only a higher cap (`--epochs`). It reports each epoch's validation
accuracy and two test accuracies, both of the best epoch by validation accuracy (as the
searches report): within the search's cap (the search's result, trained again) and within
the new cap. Their difference is what the longer trial bought.

    python benchmarks/longer_trials.py --run ~/mimic-tf-runs/cpu-replication-v2 \
        --cells mlp-d1-b1M,mlp-d2-b1M --epochs 48

Each finished cell is added to `--out`/results.json at once, and a rerun skips it; a cell
killed part way starts again. The run's transfer set is read, never rebuilt: a run whose
teacher, data or views no longer match its transfer set is refused. Prints one JSON object
last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mimic_tf import data, runtime
from mimic_tf.config import ExperimentConfig, load_config
from mimic_tf.files import atomic_write_text
from mimic_tf.layout import ExperimentLayout
from mimic_tf.teachers import ENSEMBLE_FILE, load_model, saved_evaluation_logits
from mimic_tf.transfer import build_transfer_set, transfer_fingerprint
from tuner import artifacts
from tuner.frontier.measure import Candidate, frontier_candidates
from tuner.search.hypermodel import (
    OBJECTIVE,
    StudentHyperModel,
    TrainingData,
    fixed_hyperparameters,
)

RESULTS_FILE = "results.json"


class BestEpochs(keras.callbacks.Callback):
    """Keeps the student's weights at its best validation epoch, within `cap` epochs and
    over all of them."""

    def __init__(self, cap: int) -> None:
        super().__init__()
        self.cap = cap
        self.best: dict[str, tuple[float, int, list[np.ndarray]]] = {}

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = float((logs or {}).get(OBJECTIVE, float("nan")))
        if not np.isfinite(value):
            return
        for key, last_epoch in (("within_search_cap", self.cap), ("within_new_cap", None)):
            held = self.best.get(key)
            if (last_epoch is None or epoch < last_epoch) and (held is None or value > held[0]):
                self.best[key] = (value, epoch + 1, self.model.student.get_weights())


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder with searches")
    parser.add_argument("--cells", required=True,
                        help="comma list of the run's search names, e.g. mlp-d1-b1M")
    parser.add_argument("--epochs", type=int, default=48,
                        help="the new epoch cap (the plateau schedule may stop it sooner)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/longer-trials"),
                        help="where results.json goes")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs is {args.epochs}; pass a cap of 1 or more epochs")
    return args


def run_training_data(layout: ExperimentLayout) -> tuple[ExperimentConfig, TrainingData]:
    """The run's config and the batches its searches read, from its cached transfer set."""
    config = load_config(layout.config_file)
    splits = data.load_splits(config.data)
    teacher = load_model(layout.teacher / ENSEMBLE_FILE)
    recorded = artifacts.read_transfer_manifest(layout).get("fingerprint")
    current = json.loads(json.dumps(transfer_fingerprint(config, splits, teacher)))
    if recorded != current:
        raise SystemExit(f"{layout.transfer} does not hold this run's transfer set (its "
                         "fingerprint differs or it is missing); this benchmark reads it and "
                         "never rebuilds it: finish the run first")
    transfer = build_transfer_set(config, splits, teacher, layout.transfer, verbose=0,
                                  evaluation_logits=saved_evaluation_logits(layout.teacher,
                                                                            teacher))
    del teacher
    keras.backend.clear_session()
    return config, TrainingData.from_transfer_set(transfer, config.student.batch_size)


def train_longer(candidate: Candidate, layout: ExperimentLayout, config: ExperimentConfig,
                 training: TrainingData, epochs: int) -> dict[str, Any]:
    """The candidate's trial trained again up to `epochs`; what it reached, against the search."""
    search = layout.search(candidate.cell.name)
    history = artifacts.read_trial_history(search, candidate.trial.trial_id)
    search_cap = (history.epoch_cap if history is not None
                  else config.student.epochs_for(candidate.cell.family))
    evaluated = artifacts.read_evaluation(search).get("trials", {}).get(
        candidate.trial.trial_id, {})
    keras.backend.clear_session()
    hp = fixed_hyperparameters(candidate.trial.hyperparameters)
    hypermodel = StudentHyperModel(candidate.cell, config.student, seed=config.seed,
                                   spec=training.spec)
    distiller = hypermodel.build(hp)
    best = BestEpochs(search_cap)
    started = time.perf_counter()
    fitted = hypermodel.fit(hp, distiller, training, epochs=epochs, callbacks=[best])
    seconds = time.perf_counter() - started
    reached = {}
    for key, (value, epoch, weights) in best.best.items():
        distiller.student.set_weights(weights)
        metrics = distiller.evaluate(training.test, verbose=0, return_dict=True)
        reached[key] = {"best_epoch": epoch, "val_accuracy": round(value, 4),
                        "test_accuracy": round(float(metrics["accuracy"]), 4)}
    val_accuracy = [round(float(v), 4) for v in fitted.history.get(OBJECTIVE, [])]
    gain = (reached["within_new_cap"]["test_accuracy"]
            - reached["within_search_cap"]["test_accuracy"]) if len(reached) == 2 else None
    return {
        "trial": candidate.trial.trial_id,
        "hyperparameters": candidate.trial.hyperparameters,
        "search": {"epoch_cap": search_cap,
                   "epochs": len(history.metrics.get(OBJECTIVE, [])) if history else None,
                   "val_accuracy": _rounded(candidate.trial.score),
                   "test_accuracy": _rounded(evaluated.get("test_accuracy"))},
        "longer": {"epoch_cap": epochs, "epochs_run": len(val_accuracy),
                   "stopped_by_schedule": len(val_accuracy) < epochs,
                   "val_accuracy_per_epoch": val_accuracy, "seconds": round(seconds, 1),
                   **reached},
        "test_gain_points": None if gain is None else round(100 * gain, 2),
    }


def main() -> None:
    args = parse_args()
    layout = ExperimentLayout(args.run)
    best = {c.cell.name: c for c in frontier_candidates(layout) if c.rank == 1}
    cells = [name for name in args.cells.split(",") if name]
    missing = [name for name in cells if name not in best]
    if missing:
        raise SystemExit(f"{args.run} has no completed search {missing}; it has {sorted(best)}")
    results_path = args.out / RESULTS_FILE
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results.setdefault("run", str(args.run))
    results.setdefault("runtime", runtime.describe())
    cells_done = results.setdefault("cells", {})
    todo = [name for name in cells
            if cells_done.get(name, {}).get("longer", {}).get("epoch_cap") != args.epochs]
    if todo:
        config, training = run_training_data(layout)
        for name in todo:
            print(f"{name}: trial {best[name].trial.trial_id} up to {args.epochs} epochs",
                  flush=True)
            cells_done[name] = train_longer(best[name], layout, config, training, args.epochs)
            print(json.dumps({name: cells_done[name]}), flush=True)
            args.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(results_path, json.dumps(results, indent=2) + "\n")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
