"""KerasTuner tuners whose state files are written atomically, and `make_tuner` to pick one.

KerasTuner writes `oracle.json`, `trial_*/trial.json` and `<tuner_id>.json` in place; a
`kill -9` during such a write leaves half a JSON file that the next run fails to reload. The
classes here write every state file to a temporary file and rename it over the target, so a
killed search reloads cleanly: finished trials are kept, the trial that was running is rerun.

    tuner = make_tuner("bayesian", hypermodel, directory=searches, project_name=cell.name,
                       max_trials=8, seed=0)

All three tuners maximise validation accuracy (`val_accuracy`, the paper's objective).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import keras_tuner
import numpy as np
from keras_tuner.engine.trial import TrialStatus
from keras_tuner.oracles import BayesianOptimizationOracle, HyperbandOracle, RandomSearchOracle

from mimic_tf.files import atomic_write_text
from mimic_tf.layout import SearchLayout
from mimic_tf.vocabulary import TUNERS
from tuner.search import distributed
from tuner.search.hypermodel import OBJECTIVE


def write_json_atomically(path: str | os.PathLike[str], state: Any) -> str:
    """Write `state` as JSON through a temporary file and a rename; returns the JSON text."""
    text = json.dumps(state)
    atomic_write_text(path, text)
    return text


class AtomicOracleMixin:
    """Oracle state (`oracle.json`) and trial records (`trial.json`) written atomically."""

    def save(self) -> None:
        write_json_atomically(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial: keras_tuner.engine.trial.Trial) -> None:
        path = os.path.join(self._get_trial_dir(trial.trial_id), "trial.json")
        write_json_atomically(path, trial.get_state())


class AtomicBayesianOracle(AtomicOracleMixin, BayesianOptimizationOracle):
    """Gaussian-process Bayesian optimisation (the paper used Spearmint's GP) that never
    proposes a point it has tried.

    KerasTuner's GP step may return the best trial's own values again, a float rounding
    away (keras-team/keras-tuner#608): its values hash differs, so KerasTuner's collision
    check passes it, and a search of 6 trials loses one to a repeat (it happened once in
    the v2 campaign: `cnn-d3-b316k`, trials 3 and 4). A proposal within `DUPLICATE_DISTANCE`
    of a tried point in every coordinate of the unit cube the GP works in is replaced by a
    random one; `repeats_avoided` counts them.
    """

    DUPLICATE_DISTANCE = 1e-3

    repeats_avoided = 0

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        proposal = super().populate_space(trial_id)
        values = proposal.get("values")
        if proposal["status"] != TrialStatus.RUNNING or not values or not self._tried(values):
            return proposal
        self.repeats_avoided += 1
        return self._random_populate_space()

    def _tried(self, values: dict[str, Any]) -> bool:
        """Whether `values` lies within `DUPLICATE_DISTANCE` of a trial's point."""
        space = self._nonfixed_space()

        def point(named: dict[str, Any]) -> np.ndarray:
            return np.array([hp.value_to_prob(named.get(hp.name, hp.default)) for hp in space])

        proposed = point(values)
        return any(
            np.max(np.abs(point(trial.hyperparameters.values) - proposed),
                   initial=0.0) < self.DUPLICATE_DISTANCE
            for trial in self.trials.values()
            if trial.status not in (TrialStatus.FAILED, TrialStatus.INVALID))


class AtomicHyperbandOracle(AtomicOracleMixin, HyperbandOracle):
    """Hyperband; `max_trials` caps its trial count."""


class AtomicRandomOracle(AtomicOracleMixin, RandomSearchOracle):
    """Random search."""


class StudentTuner(keras_tuner.Tuner):
    """The tuner of every search: a KerasTuner `Tuner` around one of the atomic oracles above.

    It passes the trial id to `HyperModel.fit`, clears a rerun trial's old logs and writes its
    own state atomically. `BaseTuner.save` writes the oracle and then `<tuner_id>.json`; workers
    in a distributed search keep no oracle of their own. A distributed chief serves its oracle
    with `distributed.serve_oracle` (prompt exit, port freed) instead of KerasTuner's loop.

    `keras_tuner.BayesianOptimization` and `keras_tuner.RandomSearch` are this same `Tuner`
    with an oracle they build from their own arguments (not atomic); here the oracle is passed
    in, so nothing of theirs is needed.
    """

    def search(self, *fit_args, **fit_kwargs) -> None:
        if distributed.is_chief():
            self.oracle.verbose = 0  # one line per finished trial instead of KerasTuner's tables
            self.save()
            label = getattr(self.hypermodel, "name", None) or self.project_name
            distributed.serve_oracle(self.oracle, report=lambda line: print(
                f"[{label}] {line}", flush=True))
            # KerasTuner saves the oracle at a trial's end before it drops the trial from
            # `ongoing_trials`, so the last save names the last trial as running: a rerun
            # would retry it. Saved again, the file says the search is over.
            self.save()
            return
        super().search(*fit_args, **fit_kwargs)

    def run_trial(self, trial, *args, **kwargs):
        trial_logs = self.hypermodel.trial_log_dir(trial.trial_id)
        backup = self.hypermodel.trial_backup(trial.trial_id)
        if trial_logs is not None and not (backup is not None and backup.exists()):
            # A trial killed before its first epoch ended is rerun with its TensorBoard run
            # afresh; one killed later goes on from its backup, and so does its run.
            shutil.rmtree(trial_logs, ignore_errors=True)
        kwargs["trial_id"] = trial.trial_id
        return super().run_trial(trial, *args, **kwargs)

    def save(self) -> None:
        if not self._is_worker():
            self.oracle.save()
        write_json_atomically(self._get_tuner_fname(), self.get_state())


class HyperbandTuner(StudentTuner):
    """`StudentTuner` with the two things `keras_tuner.Hyperband` adds to a `Tuner`.

    A trial trains for its bracket's epochs (`tuner/initial_epoch` to `tuner/epochs`), and a
    trial promoted from an earlier round starts from that round's best-epoch weights
    (`tuner/trial_id`). `keras_tuner.Hyperband` itself is not the parent: its `__init__` builds
    its own (not atomic) oracle.
    """

    def run_trial(self, trial, *args, **kwargs):
        values = trial.hyperparameters.values
        if "tuner/epochs" in values:
            kwargs["epochs"] = values["tuner/epochs"]
            kwargs["initial_epoch"] = values["tuner/initial_epoch"]
        return super().run_trial(trial, *args, **kwargs)

    def _build_hypermodel(self, hp: keras_tuner.HyperParameters):
        # The hook `Tuner` builds every model through (the one `keras_tuner.Hyperband` uses).
        model = super()._build_hypermodel(hp)
        previous = hp.values.get("tuner/trial_id")
        if previous is not None:
            model.load_weights(SearchLayout(Path(self.project_dir)).checkpoint(previous))
        return model


def initial_random_points(max_trials: int) -> int:
    """Random trials before the Gaussian process takes over: a third of the search, >= 2."""
    return max(2, max_trials // 3)


def make_tuner(
    kind: str,
    hypermodel: keras_tuner.HyperModel,
    *,
    directory: str | os.PathLike[str],
    project_name: str,
    max_trials: int,
    max_epochs: int,
    seed: int = 0,
    overwrite: bool = False,
    distribution_strategy: Any = None,
) -> keras_tuner.Tuner:
    """A tuner of `kind` ('bayesian', 'hyperband' or 'random') maximising val_accuracy.

    `max_trials` bounds every kind (for Hyperband it caps the brackets' trials);
    `max_epochs` is Hyperband's largest epoch budget for one trial.
    """
    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    seed = seed + 1  # KerasTuner replaces a seed of 0 by a random one
    if kind == "bayesian":
        oracle = AtomicBayesianOracle(
            objective=objective, max_trials=max_trials, seed=seed,
            num_initial_points=initial_random_points(max_trials),
        )
        tuner_class = StudentTuner
    elif kind == "hyperband":
        oracle = AtomicHyperbandOracle(
            objective=objective, max_epochs=max(max_epochs, 2), factor=3, seed=seed,
        )
        oracle.max_trials = max_trials
        tuner_class = HyperbandTuner
    elif kind == "random":
        oracle = AtomicRandomOracle(objective=objective, max_trials=max_trials, seed=seed)
        tuner_class = StudentTuner
    else:
        raise ValueError(f"unknown tuner {kind!r}; choose one of {TUNERS}")
    return tuner_class(
        oracle,
        hypermodel,
        directory=str(directory),
        project_name=project_name,
        overwrite=overwrite,
        distribution_strategy=distribution_strategy,
    )
