"""The airbench teacher family: whitening, dirac init, schedule, lookahead, TTA, config."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from mimic_tf import runtime, teachers
from mimic_tf.config import AirbenchConfig, ConfigError, load_config
from mimic_tf.data import load_splits
from mimic_tf.teachers import airbench, airbench_recipe

TINY = AirbenchConfig(widths=(8, 16, 16), epochs=1, batch_size=32, whitening_images=64)


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def test_whitened_patches_have_identity_covariance():
    rng = np.random.default_rng(0)
    # Correlated channels and neighbouring pixels, so whitening has work to do.
    noise = rng.normal(size=(64, 32, 32, 3))
    smooth = noise + 0.8 * np.roll(noise, 1, axis=1) + 0.5 * np.roll(noise, 1, axis=2)
    images = smooth @ np.array([[1.0, 0.6, 0.2], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    kernel = airbench.whitening_kernel(images, epsilon=1e-8)
    assert kernel.shape == (2, 2, 3, 24)
    patches = airbench.image_patches(images)
    whitened = patches @ kernel[..., :12].reshape(12, 12)
    covariance = whitened.T @ whitened / len(whitened)
    np.testing.assert_allclose(covariance, np.eye(12), atol=1e-4)
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])


def test_whitening_conv_in_the_model_matches_the_patch_formula():
    images = _images(40)
    model = airbench.build_airbench_member(TINY, images, num_classes=10)
    whiten = model.get_layer("whiten")
    assert not whiten.trainable and model.get_layer("whiten_bias").trainable
    mean, std = airbench.channel_statistics(images)
    expected = airbench.whitening_kernel((images[:TINY.whitening_images] - mean) / std)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(whiten.kernel), expected, rtol=1e-6)


@pytest.mark.parametrize("channels_in,channels_out", [(4, 4), (4, 7)])
def test_dirac_conv_passes_its_input_channels_through(channels_in, channels_out):
    conv = keras.layers.Conv2D(channels_out, 3, padding="same", use_bias=False,
                               kernel_initializer=airbench.PartialDirac(seed=1))
    inputs = np.random.default_rng(0).normal(size=(2, 8, 8, channels_in)).astype(np.float32)
    outputs = keras.ops.convert_to_numpy(conv(inputs))
    np.testing.assert_allclose(outputs[..., :channels_in], inputs, atol=1e-6)
    if channels_out > channels_in:  # the extra outputs are random, not zero
        assert np.abs(outputs[..., channels_in:]).mean() > 0.01


def test_scaled_bias_moves_scale_squared_faster_under_sgd():
    def one_step(scale: float) -> float:
        layer = airbench.ScaledBias(scale)
        layer.build((None, 1))
        optimizer = keras.optimizers.SGD(0.1)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(tf.ones((1, 1))))
        optimizer.apply_gradients(
            zip(tape.gradient(loss, [layer.bias]), [layer.bias], strict=True))
        return float(scale * layer.bias.numpy()[0])

    assert one_step(8.0) == pytest.approx(64 * one_step(1.0))


def test_schedule_warms_up_from_a_fifth_then_decays_to_zero():
    schedule = airbench_recipe.WarmupLinearDecay(peak=1.0, total_steps=100, warmup=0.2)
    values = [float(schedule(step)) for step in (0, 10, 20, 60, 100)]
    assert values == pytest.approx([0.2, 0.6, 1.0, 0.5, 0.0])
    airbench94 = airbench_recipe.WarmupLinearDecay(peak=1.0, total_steps=100, warmup=0.2, final=0.1)
    values = [float(airbench94(step)) for step in (0, 20, 60, 100, 120)]
    assert values == pytest.approx([0.2, 1.0, 0.55, 0.1, 0.1])


def test_lookahead_pulls_the_weights_towards_their_average():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    lookahead = airbench_recipe.Lookahead(total_steps=10, every=1, final_decay=0.5)
    lookahead.set_model(model)
    lookahead.on_train_begin()
    start = model.weights[0].numpy().copy()
    model.weights[0].assign(start + 1.0)
    lookahead._sync(0.25)
    np.testing.assert_allclose(model.weights[0].numpy(), start + 0.75, rtol=1e-6)


def test_flip_translate_batches_are_deterministic_and_alternate_flips():
    images, labels = _images(8), np.arange(8) % 10
    kwargs = dict(batch_size=8, translate=0, alternating_flip=True, seed=3, num_classes=10)
    first = list(airbench_recipe.flip_translate_dataset(images, labels, **kwargs).take(2))
    again = list(airbench_recipe.flip_translate_dataset(images, labels, **kwargs).take(2))
    for (a, _), (b, _) in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # Without translation, each image appears once flipped and once not across two epochs.
    for epoch_images, epoch_labels in first:
        assert epoch_images.shape == (8, 32, 32, 3) and epoch_labels.shape == (8, 10)
    seen = {}
    for epoch_images, epoch_labels in first:
        for image, label in zip(epoch_images.numpy(), np.argmax(epoch_labels, -1), strict=True):
            seen.setdefault(int(label), []).append(np.array_equal(image, images[label]))
    assert all(sorted(flags) == [False, True] for flags in seen.values())


def test_translation_stays_within_the_padding():
    images = _images(4)
    batch, _ = next(iter(airbench_recipe.flip_translate_dataset(
        images, np.zeros(4), batch_size=4, translate=2, alternating_flip=False, seed=0,
        num_classes=10)))
    assert batch.dtype == tf.uint8 and batch.shape == (4, 32, 32, 3)
    # Each output's centre 28x28 is a shifted copy of the (possibly mirrored) input.
    for output in batch.numpy():
        assert any(
            np.array_equal(output[2:30, 2:30], source[2 + dy:30 + dy, 2 + dx:30 + dx])
            for source in (*images, *images[:, :, ::-1])
            for dy in range(-2, 3) for dx in range(-2, 3)
        )


def test_member_has_airbench94_parameter_count():
    model = airbench.build_airbench_member(AirbenchConfig(), _images(16), num_classes=10)
    assert model.count_params() == 1_973_944
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 1_971_352


def test_member_trains_saves_and_loads(tmp_path):
    images, labels = _images(96), np.arange(96) % 10
    plan = airbench_recipe.training_plan(TINY, images, labels, images[:32], labels[:32],
                                         member_index=0, seed=0, num_classes=10)
    before = [w.numpy().copy() for w in plan.model.trainable_weights]
    history = plan.model.fit(plan.train, epochs=1, steps_per_epoch=plan.steps_per_epoch,
                             validation_data=plan.validation, callbacks=plan.callbacks,
                             verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(before, plan.model.trainable_weights,
                                                             strict=True))
    path = tmp_path / "member.keras"
    plan.model.save(path)
    loaded = teachers.load_model(path)
    np.testing.assert_allclose(loaded.predict(images[:8], verbose=0),
                               plan.model.predict(images[:8], verbose=0), atol=1e-5)


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_float32_weights_and_logits(precision):
    config = dataclasses.replace(TINY, precision=precision)
    images, labels = _images(64), np.arange(64) % 10
    plan = airbench_recipe.training_plan(config, images, labels, images[:32], labels[:32],
                                         member_index=0, seed=0, num_classes=10)
    plan.model.fit(plan.train, epochs=1, steps_per_epoch=1, verbose=0, shuffle=False)
    assert plan.model.output.dtype == "float32"
    assert {w.dtype for w in plan.model.weights} == {"float32"}
    assert plan.model.get_layer("group1_conv1").compute_dtype == precision.split("_")[1]
    assert np.isfinite(plan.model.predict(images[:4], verbose=0)).all()


def test_auto_precision_builds_the_devices_policy(monkeypatch):
    monkeypatch.setattr(runtime, "device_kind", lambda: "cpu")
    monkeypatch.setattr(runtime, "onednn_enabled", lambda: True)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"amx_bf16"})
    model = airbench.build_airbench_member(dataclasses.replace(TINY, precision="auto"),
                                           _images(64), num_classes=10)
    assert model.get_layer("group1_conv1").compute_dtype == "bfloat16"
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: {"avx2"})
    model = airbench.build_airbench_member(dataclasses.replace(TINY, precision="auto"),
                                           _images(64), num_classes=10)
    assert model.get_layer("group1_conv1").compute_dtype == "float32"


def test_trains_under_mirrored_strategy():
    images, labels = _images(64), np.arange(64) % 10
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        plan = airbench_recipe.training_plan(TINY, images, labels, images[:32], labels[:32],
                                             member_index=0, seed=0, num_classes=10)
    history = plan.model.fit(plan.train, epochs=1, steps_per_epoch=2, callbacks=plan.callbacks,
                             verbose=0, shuffle=False)
    assert np.isfinite(history.history["loss"]).all()


def test_flip_averaged_ensemble_is_the_mean_of_both_passes():
    images = _images(8)
    members = [airbench.build_airbench_member(TINY, images, index, seed=0, num_classes=10)
               for index in range(2)]
    ensemble = teachers.build_ensemble(members, flip_average=True)
    passes = [m.predict(view, verbose=0) for m in members for view in (images, images[:, :, ::-1])]
    np.testing.assert_allclose(ensemble.predict(images, verbose=0), np.mean(passes, axis=0),
                               atol=1e-5)
    member_tta = teachers.member_logits(members[0], images, flip_average=True)
    np.testing.assert_allclose(member_tta, np.mean(passes[:2], axis=0), atol=1e-5)


def test_ensure_teacher_trains_an_airbench_ensemble_and_refuses_another_config(tmp_path):
    overrides = {"teacher.family": "airbench", "teacher.airbench.widths": [4, 8, 8],
                 "teacher.airbench.epochs": 1, "teacher.airbench.batch_size": 100,
                 "teacher.airbench.whitening_images": 50}
    config = load_config("smoke", overrides=overrides)
    splits = load_splits(config.data)
    ensemble = teachers.ensure_teacher(config, splits, tmp_path, verbose=0)
    assert ensemble.predict(splits.test_images[:4], verbose=0).shape == (4, 10)
    summary = json.loads((tmp_path / teachers.SUMMARY_FILE).read_text())
    assert summary["family"] == "airbench" and summary["flip_average"] is True
    assert "test_accuracy_without_flip" in summary["members"][0]
    other = load_config("smoke", overrides={**overrides, "teacher.airbench.epochs": 2})
    with pytest.raises(teachers.TeacherMismatchError, match="delete that folder"):
        teachers.ensure_teacher(other, splits, tmp_path, verbose=0)
    bigger = load_config("smoke", overrides={**overrides, "teacher.members": 3})
    teachers.check_teacher_config(bigger, tmp_path)  # adding members is allowed


@pytest.mark.parametrize("key,value,allowed", [
    ("teacher.family", "resnet", "'paper' or 'airbench'"),
    ("teacher.airbench.widths", [64, 128], "3 positive widths"),
    ("teacher.airbench.label_smoothing", 1.5, "[0, 1)"),
    ("teacher.airbench.precision", "float64", "'float32' or 'mixed_float16'"),
    ("teacher.airbench.warmup", 0, "0 < fraction < 1"),
])
def test_bad_teacher_config_names_the_key_and_the_allowed_values(key, value, allowed):
    with pytest.raises(ConfigError) as error:
        load_config("smoke", overrides={key: value})
    assert key in str(error.value) and allowed in str(error.value)


def test_teacher_cli_refuses_a_folder_of_another_teacher_config(tmp_path, capsys):
    from mimic_tf import train_teacher as teacher_cli
    from mimic_tf.config import save_config
    from mimic_tf.layout import ExperimentLayout

    other = load_config("smoke", overrides={"teacher.family": "airbench"})
    save_config(other, ExperimentLayout.for_config(other, tmp_path).teacher / "config.yaml")
    assert teacher_cli.main(["--config", "smoke", "--out", str(tmp_path), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "teacher" in error and "delete that folder" in error and "Traceback" not in error


def test_transfer_fingerprint_records_flip_averaging():
    from mimic_tf.transfer import transfer_fingerprint

    splits = load_splits(load_config("smoke").data)
    member = airbench.build_airbench_member(TINY, splits.train_images, num_classes=10)
    prints = {}
    for flip in (True, False):
        config = load_config("smoke", overrides={"teacher.family": "airbench",
                                                 "teacher.airbench.flip_tta": flip})
        teacher = teachers.build_ensemble([member], flip_average=config.teacher.flip_average)
        prints[flip] = transfer_fingerprint(config, splits, teacher)
    assert prints[True]["teacher_flip_average"] is True
    assert prints[False]["teacher_flip_average"] is False
    assert prints[True]["teacher_weights"] == prints[False]["teacher_weights"]
