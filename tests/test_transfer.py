"""The transfer set: fingerprinted logit cache, fixed order, cached and online modes agree."""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
import types

import keras
import numpy as np
import pytest

from mimic_tf import transfer
from mimic_tf.config import load_config
from mimic_tf.data import augment, load_splits
from mimic_tf.data.spec import CIFAR10
from mimic_tf.distiller import Distiller
from mimic_tf.students import build_student
from mimic_tf.teachers import build_ensemble, build_teacher_member


@pytest.fixture(scope="module")
def setup():
    config = load_config("smoke")
    splits = load_splits(config.data)
    members = [build_teacher_member(config.teacher, index, seed=0, spec=CIFAR10)
               for index in range(2)]
    return config, splits, build_ensemble(members)


def first_batch(dataset):
    return next(iter(dataset.take(1)))


def test_cache_is_built_once_and_reused(setup, tmp_path, monkeypatch):
    config, splits, teacher = setup
    built = transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    assert built.logits.shape == (config.transfer.views, len(splits.train_labels), 10)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["fingerprint"]["views"] == config.transfer.views

    def fail(*args, **kwargs):
        raise AssertionError("a valid cache was recomputed")

    monkeypatch.setattr(transfer, "_compute_logits", fail)
    reused = transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    np.testing.assert_array_equal(reused.logits, built.logits)


def test_logits_are_the_teachers_on_the_regenerated_views(setup, tmp_path):
    config, splits, teacher = setup
    transfer_set = transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    images, logits, labels = first_batch(transfer_set.train_dataset(batch_size=16))
    indices = transfer_set.order[0][:16]
    np.testing.assert_array_equal(labels.numpy(), splits.train_labels[indices])
    np.testing.assert_allclose(logits.numpy(), transfer_set.logits[0, indices], rtol=1e-6)
    expected_images = augment(splits.train_images[indices], indices,
                              np.zeros_like(indices), config.augment)
    np.testing.assert_array_equal(images.numpy(), expected_images.numpy())
    np.testing.assert_allclose(teacher.predict(images, verbose=0), logits.numpy(), rtol=1e-4,
                               atol=1e-4)


def test_every_student_sees_the_same_order(setup, tmp_path):
    config, splits, teacher = setup
    transfer_set = transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    steps = transfer_set.steps_per_epoch(64)
    first = [b[2].numpy() for b in transfer_set.train_dataset(64).take(steps + 1)]
    second = [b[2].numpy() for b in transfer_set.train_dataset(64).take(steps + 1)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    # One Keras epoch is one view; the next view starts on a fresh batch boundary.
    view_1 = transfer_set.order[1][:64]
    np.testing.assert_array_equal(first[steps], splits.train_labels[view_1])


def test_stale_cache_is_rebuilt(setup, tmp_path):
    config, splits, teacher = setup
    before = transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    changed = dataclasses.replace(config, augment=dataclasses.replace(config.augment, seed=99))
    after = transfer.build_transfer_set(changed, splits, teacher, tmp_path, verbose=0)
    assert after.fingerprint != before.fingerprint
    assert not np.allclose(after.logits, before.logits)
    # New teacher weights: rebuilt as well.
    other = build_ensemble([build_teacher_member(config.teacher, 5, seed=1, spec=CIFAR10)])
    rebuilt = transfer.build_transfer_set(changed, splits, other, tmp_path, verbose=0)
    assert rebuilt.fingerprint != after.fingerprint
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["digest"] == rebuilt.fingerprint


def test_cached_and_online_modes_give_the_same_loss(setup, tmp_path):
    config, splits, teacher = setup
    cached = transfer.build_transfer_set(config, splits, teacher, tmp_path / "cached", verbose=0)
    online_config = dataclasses.replace(
        config, transfer=dataclasses.replace(config.transfer, mode="online"))
    online = transfer.build_transfer_set(online_config, splits, teacher, tmp_path / "online",
                                         verbose=0)
    assert online.logits is None
    student = build_student("mlp", 1, 3.0e4, seed=0, spec=CIFAR10)
    cached_batches = cached.train_dataset(32)  # infinite: one step of each is evaluated
    online_batches = online.train_dataset(32, with_logits=False)
    with_cache = Distiller(student)
    with_cache.compile(optimizer=keras.optimizers.SGD(0.01))
    with_teacher = Distiller(student, teacher)
    with_teacher.compile(optimizer=keras.optimizers.SGD(0.01))
    cached_loss = with_cache.evaluate(cached_batches, steps=1, verbose=0,
                                      return_dict=True)["loss"]
    online_loss = with_teacher.evaluate(online_batches, steps=1, verbose=0,
                                        return_dict=True)["loss"]
    assert online_loss == pytest.approx(cached_loss, rel=1e-4)


def test_views_made_once_in_memory_give_the_same_batches_as_augmenting_on_the_fly(
        setup, tmp_path, monkeypatch):
    config, splits, teacher = setup
    in_memory = transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    assert in_memory.views is not None and in_memory.views.shape[:2] == (
        config.transfer.views, len(splits.train_labels))
    monkeypatch.setattr(transfer, "VIEW_CACHE_BYTES", 0)  # too big to keep: augment as read
    on_the_fly = transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    assert on_the_fly.views is None
    steps = in_memory.steps_per_epoch(64) * config.transfer.views + 1  # every view, then again
    for cached, fresh in zip(in_memory.train_dataset(64).take(steps),
                             on_the_fly.train_dataset(64).take(steps), strict=True):
        for a, b in zip(cached, fresh, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_transfer_flip_average_turns_the_mirror_off_or_on_for_the_logits_only(setup, tmp_path):
    config, splits, plain_ensemble = setup
    members = [layer for layer in plain_ensemble.layers if isinstance(layer, keras.Model)]
    airbench = dataclasses.replace(config, teacher=dataclasses.replace(config.teacher,
                                                                       family="airbench"))
    view_only = dataclasses.replace(airbench, transfer=dataclasses.replace(
        airbench.transfer, flip_average="false"))
    assert transfer.flip_averaged(airbench) and not transfer.flip_averaged(view_only)
    teacher = build_ensemble(members, flip_average=True)  # airbench's: the mirror inside
    flipped = transfer.build_transfer_set(airbench, splits, teacher, tmp_path / "on", verbose=0)
    alone = transfer.build_transfer_set(view_only, splits, teacher, tmp_path / "off", verbose=0)
    assert alone.fingerprint != flipped.fingerprint
    indices = np.arange(len(splits.train_labels))
    view_0 = augment(splits.train_images, indices, np.zeros_like(indices), config.augment)
    np.testing.assert_allclose(alone.logits[0], plain_ensemble.predict(view_0, verbose=0),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(flipped.logits[0], teacher.predict(view_0, verbose=0),
                               rtol=1e-4, atol=1e-4)
    assert not np.allclose(alone.logits, flipped.logits)
    # The teacher's own evaluation (with its mirror) is what both report.
    np.testing.assert_array_equal(alone.test_logits, flipped.test_logits)

    # A teacher without the mirror, and the transfer set asking for it.
    mirrored = transfer.transfer_teacher(plain_ensemble, dataclasses.replace(
        config, transfer=dataclasses.replace(config.transfer, flip_average="true")))
    images = splits.test_images[:8]
    expected = (plain_ensemble(images) + plain_ensemble(images[:, :, ::-1])) / 2
    np.testing.assert_allclose(mirrored(images), expected, rtol=1e-5, atol=1e-5)


def test_transfer_flip_average_default_keeps_existing_fingerprints_and_is_validated(setup):
    from mimic_tf.config import ConfigError

    config, splits, teacher = setup
    airbench = dataclasses.replace(config, teacher=dataclasses.replace(config.teacher,
                                                                       family="airbench"))
    for experiment in (config, airbench):  # auto: the key the fingerprint always had
        assert experiment.transfer.flip_average == "auto"
        assert transfer.transfer_fingerprint(experiment, splits, teacher)[
            "teacher_flip_average"] == experiment.teacher.flip_average
    assert load_config("smoke", overrides={"transfer.flip_average": False}).transfer \
        .flip_average == "false"
    with pytest.raises(ConfigError, match="transfer.flip_average"):
        load_config("smoke", overrides={"transfer.flip_average": "sometimes"})


VIEW_TICK = 60.0  # seconds a view takes on the test's clock
VIEW_LOGITS = transfer._teacher_logits_of_view  # the real one, before any test patches it


class KilledAtView(Exception):
    """Stands for a kill part way through building the transfer set."""


def record_views(monkeypatch, computed: list[int], killed_at: int | None = None) -> None:
    """Count the views whose logits are computed; raise at view `killed_at`."""
    def counted(teacher, splits, augment_config, view, *args):
        if view == killed_at:
            raise KilledAtView(view)
        computed.append(view)
        return VIEW_LOGITS(teacher, splits, augment_config, view, *args)

    monkeypatch.setattr(transfer, "_teacher_logits_of_view", counted)


def test_a_build_killed_part_way_resumes_at_its_first_unfinished_view(setup, tmp_path,
                                                                       monkeypatch):
    config, splits, teacher = setup
    config = dataclasses.replace(config, transfer=dataclasses.replace(config.transfer, views=3))
    uninterrupted = transfer.build_transfer_set(config, splits, teacher, tmp_path / "whole",
                                                verbose=0)
    ticks = itertools.count(0.0, VIEW_TICK)  # each view: one tick of the build's clock
    monkeypatch.setattr(transfer, "time", types.SimpleNamespace(
        perf_counter=lambda: next(ticks), strftime=time.strftime))
    computed: list[int] = []
    record_views(monkeypatch, computed, killed_at=2)
    with pytest.raises(KilledAtView):
        transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    assert computed == [0, 1]
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "logits.npy").exists()

    computed.clear()
    record_views(monkeypatch, computed)
    resumed = transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    assert computed == [2]  # views 0 and 1 came from disk
    np.testing.assert_array_equal(resumed.logits, uninterrupted.logits)
    # What the teacher's passes cost: all three views, the two before the kill included.
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["logits_seconds"] == 3 * VIEW_TICK
    assert not list(tmp_path.glob(".logits.partial*"))  # renamed into place, record removed


def test_views_left_by_another_teacher_are_not_resumed(setup, tmp_path, monkeypatch):
    config, splits, teacher = setup
    computed: list[int] = []
    record_views(monkeypatch, computed, killed_at=1)
    with pytest.raises(KilledAtView):
        transfer.build_transfer_set(config, splits, teacher, tmp_path, verbose=0)
    assert computed == [0]

    other = build_ensemble([build_teacher_member(config.teacher, 5, seed=1, spec=CIFAR10)])
    computed.clear()
    record_views(monkeypatch, computed)
    rebuilt = transfer.build_transfer_set(config, splits, other, tmp_path, verbose=0)
    assert computed == list(range(config.transfer.views))  # view 0 was another teacher's
    indices = np.arange(len(splits.train_labels))
    view_0 = augment(splits.train_images, indices, np.zeros_like(indices), config.augment)
    np.testing.assert_allclose(rebuilt.logits[0], other.predict(view_0, verbose=0),
                               rtol=1e-4, atol=1e-4)
