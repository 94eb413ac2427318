"""Bring your own teacher: a Keras model trained elsewhere, checked at load, never trained."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from mimic_tf.config import load_config
from mimic_tf.data import load_splits
from mimic_tf.data.spec import CIFAR10
from mimic_tf.teachers import ensure_teacher
from mimic_tf.teachers.keras_teacher import TeacherLoadError, load_keras_teacher
from tuner import run


def users_model(shape=(32, 32, 3), classes=10, scale_inside=False) -> keras.Model:
    """A small model as a user would have trained it: float pixels in, logits out."""
    keras.utils.set_random_seed(0)
    images = keras.Input(shape, dtype="float32")
    x = keras.layers.Rescaling(1 / 255)(images) if scale_inside else images
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(classes)(x))


@pytest.fixture(scope="module")
def smoke_splits():
    return load_splits(load_config("smoke").data)


def teacher_config(path, **overrides):
    return load_config("smoke", overrides={"teacher.family": "keras", "teacher.path": str(path),
                                           **overrides})


def test_a_keras_file_becomes_a_one_member_teacher_with_its_own_numbers(tmp_path,
                                                                        smoke_splits):
    model = users_model()
    model.save(tmp_path / "mine.keras")
    config = teacher_config(tmp_path / "mine.keras", **{"teacher.pixel_scale": 1 / 255})
    teacher = ensure_teacher(config, smoke_splits, tmp_path / "teacher", verbose=0)
    images = smoke_splits.test_images[:16]
    np.testing.assert_allclose(teacher(images), model(images.astype("float32") / 255),
                               rtol=1e-5, atol=1e-5)
    summary = json.loads((tmp_path / "teacher" / "teacher.json").read_text())
    assert summary["family"] == "keras" and summary["ensemble"]["members"] == 1
    assert summary["members"][0]["path"] == str((tmp_path / "mine.keras").absolute())
    logits = np.asarray(model.predict(smoke_splits.test_images.astype("float32") / 255,
                                      verbose=0))
    assert summary["ensemble"]["test_accuracy"] == pytest.approx(
        np.mean(logits.argmax(1) == smoke_splits.test_labels))
    assert "epochs" not in summary["members"][0]  # never trained here


def test_a_savedmodel_folder_is_read_too(tmp_path, smoke_splits):
    model = users_model(scale_inside=True)
    model.export(tmp_path / "saved")
    config = teacher_config(tmp_path / "saved", **{"teacher.pixel_scale": 1.0})
    teacher = load_keras_teacher(config.teacher, CIFAR10)
    images = smoke_splits.test_images[:4]
    np.testing.assert_allclose(teacher(images), model(images.astype("float32")), rtol=1e-5,
                               atol=1e-5)


def test_a_teacher_that_does_not_fit_the_data_is_named_with_the_fix(tmp_path):
    users_model(shape=(24, 24, 3)).save(tmp_path / "small.keras")
    with pytest.raises(TeacherLoadError, match=r"takes images \[24, 24, 3\].*\[32, 32, 3\]"
                                               r".*data.image_size"):
        load_keras_teacher(teacher_config(tmp_path / "small.keras").teacher, CIFAR10)
    users_model(classes=5).save(tmp_path / "five.keras")
    with pytest.raises(TeacherLoadError, match=r"\[None, 5\].*10 classes"):
        load_keras_teacher(teacher_config(tmp_path / "five.keras").teacher, CIFAR10)
    with pytest.raises(TeacherLoadError, match="does not exist"):
        load_keras_teacher(teacher_config(tmp_path / "nowhere.keras").teacher, CIFAR10)
    (tmp_path / "broken.keras").write_bytes(b"not a model")
    with pytest.raises(TeacherLoadError, match="cannot load the teacher"):
        load_keras_teacher(teacher_config(tmp_path / "broken.keras").teacher, CIFAR10)


def test_the_teacher_flag_and_its_config_keys():
    args = run.build_parser().parse_args(["--family", "mlp", "--teacher", "/models/mine.keras"])
    overrides = run.overrides_from(args)
    assert overrides["teacher.family"] == "keras"
    assert overrides["teacher.path"] == "/models/mine.keras"
    from mimic_tf.config import ConfigError

    with pytest.raises(ConfigError, match="teacher.path"):
        load_config("smoke", overrides={"teacher.family": "keras"})
    with pytest.raises(ConfigError, match="teacher.pixel_scale"):
        load_config("smoke", overrides={"teacher.family": "keras", "teacher.path": "x",
                                        "teacher.pixel_scale": -1})


def test_a_bad_teacher_exits_2_with_the_message_and_no_traceback(tmp_path, capsys):
    users_model(classes=3).save(tmp_path / "three.keras")
    status = run.main(["--family", "mlp", "--config", "smoke", "--teacher",
                       str(tmp_path / "three.keras"), "--out", str(tmp_path / "runs")])
    error = capsys.readouterr().err
    assert status == 2 and "10 classes" in error and "Traceback" not in error


def test_the_main_job_runs_end_to_end_on_a_users_teacher(tmp_path, capsys):
    users_model(scale_inside=True).save(tmp_path / "mine.keras")
    status = run.main(["--family", "mlp", "--depths", "1", "--config", "smoke", "--teacher",
                       str(tmp_path / "mine.keras"), "--out", str(tmp_path / "runs"),
                       "--no-frontier", "--quiet"])
    assert status == 0, capsys.readouterr().err
    results = (tmp_path / "runs" / "smoke" / "results.md").read_text()
    assert f"Teacher: your model {(tmp_path / 'mine.keras').absolute()}" in results
    manifest = json.loads((tmp_path / "runs" / "smoke" / "transfer" / "manifest.json")
                          .read_text())
    assert manifest["fingerprint"]["teacher_weights"]  # the user's weights, fingerprinted
