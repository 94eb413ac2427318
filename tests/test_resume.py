"""A teacher member killed after an epoch resumes as if never stopped (`mimic_tf.resume`)."""

from __future__ import annotations

import itertools
import json
import types

import keras
import numpy as np
import pytest

from mimic_tf import clock, resume, teachers
from mimic_tf.config import load_config
from mimic_tf.data import load_splits

FAMILIES = {
    # 3 epochs each; the airbench member has the lookahead, the paper one the plateau
    # schedule and EarlyStopping's best weights: state that lives in callbacks.
    "airbench": {"teacher.family": "airbench", "teacher.airbench.widths": [4, 8, 8],
                 "teacher.airbench.epochs": 3, "teacher.airbench.batch_size": 100,
                 "teacher.airbench.whitening_images": 50, "teacher.members": 1},
    "paper": {"teacher.members": 1},
}

EPOCH_TICK = 10.0  # seconds an epoch takes on the tests' clock


class Killed(Exception):
    """Stands for the kill, right after the backup of epoch `KILL_AFTER` was written."""


def kill_after_epoch(monkeypatch, epoch: int) -> None:
    save = resume.EpochBackup.on_epoch_end

    def save_then_die(self, this_epoch, logs=None):
        save(self, this_epoch, logs)
        if this_epoch == epoch:
            raise Killed

    monkeypatch.setattr(resume.EpochBackup, "on_epoch_end", save_then_die)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_member_killed_after_an_epoch_ends_as_an_uninterrupted_one(family, tmp_path,
                                                                      monkeypatch):
    config = load_config("smoke", overrides=FAMILIES[family])
    splits = load_splits(config.data)
    ticks = itertools.count(0.0, EPOCH_TICK)  # each epoch: one tick from its start to its end
    monkeypatch.setattr(clock, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    teachers.train_member(config, splits, 0, tmp_path / "whole", verbose=0)

    with monkeypatch.context() as patch:
        kill_after_epoch(patch, 0)
        with pytest.raises(Killed):
            teachers.train_member(config, splits, 0, tmp_path / "killed", verbose=0)
    backup = tmp_path / "killed" / ".backup_member_00.npz"
    assert resume.saved_epoch(backup) == 1
    record = teachers.train_member(config, splits, 0, tmp_path / "killed", verbose=0)
    assert record["resumed_at_epoch"] == 2 and record["epochs"] == 3
    assert not backup.exists()  # removed once the member is saved
    # Its time is every epoch's, the one trained before the kill too, and it is kept beside it.
    assert record["train_seconds"] == 3 * EPOCH_TICK
    saved = json.loads((tmp_path / "killed" / "member_00.json").read_text())
    assert {key: saved[key] for key in ("epochs", "train_seconds", "resumed_at_epoch")} == {
        "epochs": 3, "train_seconds": 3 * EPOCH_TICK, "resumed_at_epoch": 2}

    whole = teachers.load_model(tmp_path / "whole" / "member_00.keras")
    resumed = teachers.load_model(tmp_path / "killed" / "member_00.keras")
    for expected, got in zip(whole.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_kill_while_the_backup_is_written_keeps_the_last_one(tmp_path, monkeypatch):
    config = load_config("smoke", overrides=FAMILIES["paper"])
    splits = load_splits(config.data)
    real_savez = np.savez
    calls = []

    def savez_then_die(stream, **arrays):
        calls.append(1)
        if len(calls) == 2:  # epoch 2's backup, half written
            stream.write(b"half a backup")
            raise Killed
        real_savez(stream, **arrays)

    monkeypatch.setattr(resume.np, "savez", savez_then_die)
    with pytest.raises(Killed):
        teachers.train_member(config, splits, 0, tmp_path, verbose=0)
    assert resume.saved_epoch(tmp_path / ".backup_member_00.npz") == 1
    assert not list(tmp_path.glob(".*.tmp*"))  # nothing half-written left beside it


def test_a_backup_of_keras_backup_and_restore_is_resumed_from_its_epoch(tmp_path):
    """A member begun before `mimic_tf.resume` (Keras' own backup folder) goes on."""
    config = load_config("smoke", overrides=FAMILIES["paper"])
    splits = load_splits(config.data)
    plan = teachers.training_plan(config, splits, 0)
    folder = tmp_path / ".backup_member_00"
    plan.model.fit(plan.train, epochs=1, steps_per_epoch=plan.steps_per_epoch, verbose=0,
                   shuffle=False,
                   callbacks=[keras.callbacks.BackupAndRestore(str(folder),
                                                               delete_checkpoint=False)])
    assert json.loads((folder / resume.KERAS_BACKUP_METADATA).read_text())["epoch"] == 1
    record = teachers.train_member(config, splits, 0, tmp_path, verbose=0)
    assert record["resumed_at_epoch"] == 2
    assert not folder.exists()


def test_a_backup_that_does_not_fit_the_model_is_refused(tmp_path):
    small = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    small.compile("sgd", "mse")
    backup = resume.EpochBackup(tmp_path / "backup.npz", [])
    backup.set_model(small)
    small.optimizer.build(small.trainable_variables)
    backup.on_epoch_end(0)
    wide = keras.Sequential([keras.Input((3,)), keras.layers.Dense(5)])
    wide.compile("sgd", "mse")
    with pytest.raises(ValueError, match="do not fit the model"):
        resume.EpochBackup(tmp_path / "backup.npz", []).restore(wide)


def test_the_learning_rate_floor_counts_from_the_first_rate_after_a_resume(tmp_path):
    """A resumed training starts with the rate already cut; the floor keeps the first one."""
    from mimic_tf.schedule import StopOnLearningRateFloor

    def model_and_floor():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(keras.optimizers.SGD(0.1), "mse")
        return model, StopOnLearningRateFloor(max_reduction=100.0)

    x, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    model, floor = model_and_floor()
    backup = resume.EpochBackup(tmp_path / "backup.npz", [floor])
    cut = keras.callbacks.LambdaCallback(  # the plateau's cut after epoch 1
        on_epoch_end=lambda epoch, logs: epoch == 0 and model.optimizer.learning_rate.assign(0.01))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[cut, floor, backup])  # then the kill

    model, floor = model_and_floor()
    backup = resume.EpochBackup(tmp_path / "backup.npz", [floor])
    assert backup.restore(model) == 2
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    model.fit(x, y, epochs=3, initial_epoch=2, verbose=0, callbacks=[floor, backup])
    assert floor.initial_learning_rate == pytest.approx(0.1)


def test_a_training_stopped_early_and_killed_before_its_save_trains_no_epoch_more(tmp_path):
    """EarlyStopping ends the training at epoch 2 of 6; the kill comes after that epoch's
    backup and before the model is saved. The rerun trains nothing and ends with the same
    weights (epoch 1's, which EarlyStopping restores at the training's end) and all the
    epochs' logs."""
    x = np.random.default_rng(0).normal(size=(32, 3)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(32, 2)).astype(np.float32)

    def training(path):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(keras.optimizers.SGD(0.05), "mse")
        # "max" on a falling loss: epoch 1's is the best, epoch 2 stops the training
        stop = keras.callbacks.EarlyStopping("loss", mode="max", patience=0,
                                             restore_best_weights=True)
        return model, stop, resume.EpochBackup(path, [stop])

    model, stop, backup = training(tmp_path / "whole.npz")
    whole = model.fit(x, y, epochs=6, verbose=0, shuffle=False, callbacks=[stop, backup])
    assert whole.epoch == [0, 1]
    expected = model.get_weights()

    model, stop, backup = training(tmp_path / "killed.npz")
    model.fit(x, y, epochs=6, verbose=0, shuffle=False, callbacks=[stop, backup])
    # the kill: the model was never saved; the backup of the stopping epoch is on disk
    model, stop, backup = training(tmp_path / "killed.npz")
    assert backup.restore(model) == 2
    assert resume.start_epoch(tmp_path / "killed.npz", 6) == 6
    rerun = model.fit(x, y, epochs=6, initial_epoch=resume.start_epoch(backup.path, 6),
                      verbose=0, shuffle=False, callbacks=[stop, backup])
    assert rerun.epoch == []
    assert backup.merged(rerun).epoch == [0, 1]
    for want, got in zip(expected, model.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)
