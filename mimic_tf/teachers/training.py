"""Training a teacher ensemble: each member by its family's recipe, resumable, then evaluated.

`teacher.family` picks a member's net and recipe: `airbench` (airbench94's, Jordan 2024:
`airbench.py`, `airbench_recipe.py`), `paper` (the paper's own: `paper_family.py`), or `keras`
(the user's trained model, loaded, never trained: `keras_teacher.py`). `ensure_teacher` trains
only the members a run folder lacks, a killed member from its last finished epoch, and writes
the ensemble (`ensemble.py`) with each member's and the ensemble's accuracies.

    ensemble = ensure_teacher(config, splits, layout.teacher)
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import yaml

from mimic_tf import data, resume, runtime
from mimic_tf.clock import EpochClock, training_seconds
from mimic_tf.config import ExperimentConfig, save_config
from mimic_tf.files import atomic_path, atomic_save_model, atomic_write_text
from mimic_tf.layout import TEACHER_EVALUATION_FILE as EVALUATION_FILE
from mimic_tf.layout import TEACHER_SUMMARY_FILE as SUMMARY_FILE
from mimic_tf.teachers import airbench_recipe
from mimic_tf.teachers.airbench_recipe import TrainingPlan
from mimic_tf.teachers.ensemble import (
    ENSEMBLE_FILE,
    accuracy,
    build_ensemble,
    load_model,
    plain_and_flip_averaged_logits,
    predict_logits,
    weights_fingerprint,
)
from mimic_tf.teachers.keras_teacher import load_keras_teacher
from mimic_tf.teachers.paper_family import paper_training_plan
from mimic_tf.vocabulary import KERAS_TEACHER


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch: metrics, images per second and the member's ETA."""

    def __init__(self, label: str, epochs: int, images_per_epoch: int) -> None:
        super().__init__()
        self.label, self.epochs, self.images_per_epoch = label, epochs, images_per_epoch
        self._started = self._epoch_started = 0.0

    def on_train_begin(self, logs=None) -> None:
        self._started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        seconds = time.perf_counter() - self._epoch_started
        metrics = " ".join(f"{name} {value:.4f}" for name, value in (logs or {}).items()
                           if name in ("loss", "accuracy", "val_loss", "val_accuracy"))
        remaining = seconds * (self.epochs - epoch - 1)
        print(f"{self.label} epoch {epoch + 1}/{self.epochs}: {metrics} | "
              f"{self.images_per_epoch / seconds:,.0f} img/s | {seconds:.0f}s/epoch | "
              f"ETA {remaining / 60:.1f} min", flush=True)


def training_plan(config: ExperimentConfig, splits: data.Splits, member_index: int,
                  first_epoch: int = 0) -> TrainingPlan:
    """Member `member_index` of `config.teacher.family`, compiled, with its data (from epoch
    `first_epoch` on: a resumed member's) and callbacks."""
    jit_compile = runtime.resolve_jit_compile(config.teacher.jit_compile, config.teacher.family)
    if config.teacher.family == "airbench":
        plan = airbench_recipe.training_plan(
            config.teacher.airbench, splits.train_images, splits.train_labels,
            splits.validation_images, splits.validation_labels, member_index=member_index,
            seed=config.seed, width_jitter=config.teacher.width_jitter, jit_compile=jit_compile,
            num_classes=splits.spec.num_classes, first_epoch=first_epoch,
        )
    else:
        plan = paper_training_plan(config, splits, member_index, jit_compile, first_epoch)
    precision = (runtime.resolve_precision(config.teacher.airbench.precision)
                 if config.teacher.family == "airbench" else "float32")
    plan.extra["runtime"] = runtime.describe(jit_compile=jit_compile, precision=precision)
    return plan


def train_member(
    config: ExperimentConfig,
    splits: data.Splits,
    member_index: int,
    directory: Path,
    verbose: int = 1,
) -> dict[str, Any]:
    """Train member `member_index` and save it; returns its record.

    A killed member resumes from its last finished epoch as if never stopped: weights,
    optimizer, the callbacks' state and the data stream (`mimic_tf.resume`). `verbose`:
    0 silent, 1 Keras' progress bar and a line per epoch, 2 a line per epoch.
    """
    keras.utils.set_random_seed(config.seed * 1000 + member_index)
    config = dataclasses.replace(config, teacher=config.teacher.for_member(member_index))
    backup_path = directory / f".backup_member_{member_index:02d}.npz"
    first_epoch = resume.saved_epoch(backup_path)
    plan = training_plan(config, splits, member_index, first_epoch)
    backup = resume.EpochBackup(backup_path, plan.callbacks)
    backup.restore(plan.model)
    callbacks = [
        EpochClock(),  # first: the epoch's time is in the logs every later callback sees
        *plan.callbacks,
        keras.callbacks.TensorBoard(str(directory / "logs" / f"member_{member_index:02d}")),
    ]
    if verbose:
        callbacks.append(EpochProgress(
            f"teacher member {member_index + 1}/{config.teacher.members}", plan.epochs,
            plan.steps_per_epoch * plan.batch_size))
    callbacks.append(backup)  # last: after the others have reset and updated their state
    started = time.perf_counter()
    history = plan.model.fit(
        plan.train,
        initial_epoch=resume.start_epoch(backup_path, plan.epochs),
        epochs=plan.epochs,
        steps_per_epoch=plan.steps_per_epoch,
        validation_data=plan.validation,
        callbacks=callbacks,
        verbose=1 if verbose == 1 else 0,
        shuffle=False,  # the tf.data pipeline shuffles each epoch with its own seed
    )
    seconds = time.perf_counter() - started
    # After a resume the history holds only this process's epochs (Keras numbers them on).
    ran = len(history.history.get("loss", []))
    history = backup.merged(history)
    timed = training_seconds(history.history)  # every epoch's, those before a kill too
    if timed is not None:
        seconds, ran = timed, len(history.epoch)
    record = {
        "member": member_index,
        "family": config.teacher.family,
        "params": int(plan.model.count_params()),
        "epochs": history.epoch[-1] + 1 if history.epoch else 0,
        "train_seconds": round(seconds, 1),
        "images_per_second": round(ran * plan.steps_per_epoch * plan.batch_size / seconds),
        **plan.extra,
        "commit": runtime.source_commit(),  # the code that trained it
    }
    if first_epoch > 0:
        record["resumed_at_epoch"] = first_epoch + 1
        if timed is None:  # epochs from before the clock: seconds and img/s from the resume on
            record["seconds_from_resume_only"] = True
    atomic_save_model(plan.model, directory / f"member_{member_index:02d}.keras")
    # Beside the member, so a later process that finds it still knows how it was trained.
    atomic_write_text(member_record_path(directory, member_index),
                      json.dumps(record, indent=2) + "\n")
    backup.remove()
    return record


def member_record_path(directory: Path, member_index: int) -> Path:
    """`member_XX.json`: how member `member_index` was trained (epochs, seconds, widths,
    runtime), written when it is saved."""
    return Path(directory) / f"member_{member_index:02d}.json"


class TeacherMismatchError(RuntimeError):
    """A teacher folder holds members trained under another teacher config."""


def _teacher_settings(config_data: dict[str, Any]) -> dict[str, Any]:
    """What a trained member depends on: the seed, the data and the teacher section
    (but the ensemble's size, since members can be added to a finished ensemble, and
    `jit_compile`, a runtime choice)."""
    settings = {key: config_data.get(key) for key in ("seed", "data", "teacher")}
    settings["teacher"] = {key: value for key, value in (settings["teacher"] or {}).items()
                           if key not in ("members", "jit_compile")}
    return settings


def check_teacher_config(config: ExperimentConfig, directory: Path) -> None:
    """Refuse to mix members of different teacher configs in one folder; record this one.

    The resolved config is written before the first member trains, so a killed run resumes
    only under the config it started with.
    """
    path = directory / "config.yaml"
    current = _teacher_settings(config.to_dict())
    if path.exists():
        saved = _teacher_settings(yaml.safe_load(path.read_text()) or {})
        # Keys added since that file was written take their defaults.
        defaults = _teacher_settings(ExperimentConfig().to_dict())
        for section in ("data", "teacher"):
            saved[section] = {**defaults[section], **(saved[section] or {})}
        if saved != current:
            changed = sorted(key for key in current if saved.get(key) != current[key])
            raise TeacherMismatchError(
                f"{directory} holds a teacher trained with other {', '.join(changed)} "
                f"settings than config '{config.name}'; delete that folder to retrain, or "
                "give this config another name"
            )
    save_config(config, path)


def ensure_teacher(
    config: ExperimentConfig,
    splits: data.Splits,
    directory: str | Path,
    verbose: int = 1,
) -> keras.Model:
    """The teacher ensemble of `config`, training and saving only the members still missing.

    Writes `member_XX.keras`, `ensemble.keras`, `teacher.json` (each member's and the
    ensemble's validation and test accuracy), `config.yaml` and TensorBoard logs under
    `directory`. Members already trained are loaded, not retrained (resumable).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    check_teacher_config(config, directory)
    summary_path = directory / SUMMARY_FILE
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    records = {r["member"]: r for r in previous.get("members", [])}
    ensemble_path = directory / ENSEMBLE_FILE
    complete = all(
        (directory / f"member_{index:02d}.keras").exists()
        for index in range(config.teacher.ensemble_size)
    ) and config.teacher.family != KERAS_TEACHER  # the user's file may have changed
    if complete and ensemble_path.exists() and previous.get("ensemble", {}).get(
        "members"
    ) == config.teacher.ensemble_size:
        if verbose:
            print(f"teacher ensemble: found {ensemble_path}")
        return load_model(ensemble_path)

    members = []
    if config.teacher.family == KERAS_TEACHER:  # the user's trained model: loaded, not trained
        member = load_keras_teacher(config.teacher, splits.spec)
        atomic_save_model(member, directory / "member_00.keras")
        records[0] = {"member": 0, "family": KERAS_TEACHER,
                      "path": str(Path(config.teacher.path).expanduser().absolute()),
                      "pixel_scale": config.teacher.pixel_scale,
                      "params": int(member.count_params())}
        members.append(member)
    for index in range(len(members), config.teacher.ensemble_size):
        path = directory / f"member_{index:02d}.keras"
        if path.exists():
            if verbose:
                print(f"teacher member {index + 1}/{config.teacher.members}: found {path}")
            members.append(load_model(path))
            saved_record = member_record_path(directory, index)
            if index not in records and saved_record.is_file():  # trained by another process
                records[index] = json.loads(saved_record.read_text())
            continue
        if verbose:
            print(f"teacher member {index + 1}/{config.teacher.members}: training")
        records[index] = train_member(config, splits, index, directory, verbose)
        members.append(load_model(path))

    # Each member's logits once; the ensemble's are their mean, as the ensemble model computes.
    flip_average = config.teacher.flip_average
    summary: dict[str, Any] = {"family": config.teacher.family, "flip_average": flip_average,
                               "members": [], "source": splits.source,
                               # this process's; each member's record holds its own
                               "runtime": runtime.describe()}
    ensemble_logits: dict[str, np.ndarray] = {}
    for index, member in enumerate(members):
        record = dict(records.get(index, {"member": index, "params": member.count_params()}))
        # Which weights these are, to the bit: a member trained again on another machine of
        # the same kind can be shown to be this one (or not) without its file.
        record["weights_sha256"] = weights_fingerprint(member)
        for split in ("validation", "test"):
            images = getattr(splits, f"{split}_images")
            labels = getattr(splits, f"{split}_labels")
            if flip_average:  # both from one pass over the images and one over their mirrors
                plain, logits = plain_and_flip_averaged_logits(member, images)
                record[f"{split}_accuracy_without_flip"] = accuracy(plain, labels)
            else:
                logits = predict_logits(member, images)
            record[f"{split}_accuracy"] = accuracy(logits, labels)
            ensemble_logits[split] = ensemble_logits.get(split, 0.0) + logits / len(members)
        summary["members"].append(record)
    ensemble = build_ensemble(members, flip_average=flip_average)
    atomic_save_model(ensemble, ensemble_path)  # config.yaml: written by check_teacher_config
    fingerprint = weights_fingerprint(ensemble)  # the transfer set's manifest names the same
    summary["ensemble"] = {
        "members": len(members),
        "params": int(sum(m.count_params() for m in members)),
        **{f"{split}_accuracy": accuracy(ensemble_logits[split],
                                          getattr(splits, f"{split}_labels"))
           for split in ("validation", "test")},
        "weights_sha256": fingerprint,
    }
    with atomic_path(directory / EVALUATION_FILE) as temporary:
        with open(temporary, "wb") as stream:
            np.savez(stream, teacher_weights=np.array(fingerprint),
                     **{split: ensemble_logits[split].astype(np.float32)
                        for split in ("validation", "test")})
    atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    if verbose:
        print(
            f"teacher ensemble of {len(members)}: validation accuracy "
            f"{summary['ensemble']['validation_accuracy']:.4f}, "
            f"test accuracy {summary['ensemble']['test_accuracy']:.4f}"
        )
    return ensemble
