"""Datasets other than CIFAR-10: real grayscale digits, other sizes, other class counts.

scikit-learn's bundled handwritten digits (1,797 real 8x8 grayscale images, 10 classes) are
written to an ImageFolder tree with no test/ part; random colour images in a few class
folders stand in for a resized CIFAR-10 subset.
"""

from __future__ import annotations

import numpy as np
import pytest
from image_trees import write_colour_tree, write_digits_tree

from mimic_tf import data
from mimic_tf.config import ConfigError, DataConfig, load_config
from mimic_tf.data.spec import DatasetSpec


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_real_digits_load_as_8x8_grayscale_with_a_test_part_split_from_train(tmp_path, cache):
    images, labels = write_digits_tree(tmp_path / "digits")
    config = DataConfig(source=f"folder:{tmp_path / 'digits'}", validation_size=300,
                        test_size=300)
    splits = data.load_splits(config)
    assert splits.spec == DatasetSpec(8, 8, 1, tuple(str(d) for d in range(10)))
    assert (len(splits.train_labels), len(splits.validation_labels),
            len(splits.test_labels)) == (1197, 300, 300)
    assert splits.train_images.dtype == np.uint8 and splits.train_images.shape[1:] == (8, 8, 1)
    # Every image is one of the digits, pixel for pixel, with its own label.
    by_bytes = {image.tobytes(): label for image, label in zip(images, labels, strict=True)}
    for split_images, split_labels in ((splits.train_images, splits.train_labels),
                                       (splits.test_images, splits.test_labels)):
        assert [by_bytes[image.tobytes()] for image in split_images] == split_labels.tolist()
    # The test part is stratified: every digit is in it, in proportion.
    assert np.bincount(splits.test_labels).min() >= 25
    # Seeded: the same split again.
    again = data.load_splits(config)
    np.testing.assert_array_equal(again.test_images, splits.test_images)


def test_a_source_without_a_test_split_needs_test_size(tmp_path, cache):
    write_digits_tree(tmp_path / "digits", limit=200)
    with pytest.raises(data.DataError, match="no test split; set data.test_size"):
        data.load_splits(DataConfig(source=f"folder:{tmp_path / 'digits'}",
                                    validation_size=20))


def test_test_size_is_refused_where_the_source_has_a_test_split(tmp_path, cache):
    write_colour_tree(tmp_path / "tree", {"a": (12, 12), "b": (12, 12)}, per_class=8)
    with pytest.raises(data.DataError, match="remove data.test_size"):
        data.load_splits(DataConfig(source=f"folder:{tmp_path / 'tree'}", validation_size=10,
                                    test_size=2))


def test_images_of_different_sizes_need_image_size_and_are_resized_with_it(tmp_path, cache):
    sizes = {"airplane": (32, 32), "bird": (40, 28), "cat": (20, 20), "deer": (32, 32),
             "dog": (64, 48)}
    write_colour_tree(tmp_path / "subset", sizes)
    source = f"folder:{tmp_path / 'subset'}"
    with pytest.raises(data.DataError, match="set data.image_size"):
        data.load_splits(DataConfig(source=source, validation_size=10))
    splits = data.load_splits(DataConfig(source=source, validation_size=10,
                                         image_size=(24, 24)))
    assert splits.spec == DatasetSpec(24, 24, 3, tuple(sizes))
    assert splits.test_images.shape == (20, 24, 24, 3)
    assert len(splits.train_labels) == 10 and sorted(set(splits.train_labels)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("problem", ["one class", "unreadable image", "mixed sizes"])
def test_bad_folders_stop_the_main_job_before_anything_is_written(problem, tmp_path, cache,
                                                                  capsys):
    from tuner import run

    sizes = {"cat": (16, 16)} if problem == "one class" else {"cat": (16, 16), "dog": (16, 16)}
    if problem == "mixed sizes":
        sizes["dog"] = (20, 12)
    write_colour_tree(tmp_path / "tree", sizes, per_class=12)
    if problem == "unreadable image":
        (tmp_path / "tree" / "train" / "dog" / "5.png").write_bytes(b"not an image")
    status = run.main(["--family", "mlp", "--config", "smoke", "--data",
                       f"folder:{tmp_path / 'tree'}", "--out", str(tmp_path / "runs")])
    error = capsys.readouterr().err
    expected = {"one class": "two or more label folders", "unreadable image": "cannot decode",
                "mixed sizes": "set data.image_size"}[problem]
    assert status == 1 and expected in error and "Traceback" not in error  # a data error
    written = [path.name for path in (tmp_path / "runs").rglob("*")] \
        if (tmp_path / "runs").exists() else []
    assert not {"teacher", "transfer", "searches"} & set(written), written


def test_a_resized_copy_is_cached_apart_from_the_original_size(tmp_path, cache):
    write_colour_tree(tmp_path / "tree", {"a": (16, 16), "b": (16, 16)})
    source = f"folder:{tmp_path / 'tree'}"
    original = data.load_raw(source)
    resized = data.load_raw(source, config=DataConfig(image_size=(8, 8)))
    assert original[0].shape[1:] == (16, 16, 3) and resized[0].shape[1:] == (8, 8, 3)
    assert len(list(cache.rglob("decoded-*.npz"))) == 2  # one per size, side by side
    np.testing.assert_array_equal(data.load_raw(source)[0], original[0])


def test_bad_data_keys_are_named():
    with pytest.raises(ConfigError, match="data.image_size"):
        load_config("smoke", overrides={"data.image_size": [0, 8]})
    with pytest.raises(ConfigError, match="data.image_size"):
        load_config("smoke", overrides={"data.image_size": [8]})
    with pytest.raises(ConfigError, match="data.test_size"):
        load_config("smoke", overrides={"data.test_size": -1})
    with pytest.raises(ConfigError, match="tfds:NAME"):
        load_config("smoke", overrides={"data.source": "tfds:"})
    assert load_config("smoke", overrides={"data.source": "tfds:mnist"}).data.source == \
        "tfds:mnist"


@pytest.mark.parametrize("spec", [DatasetSpec(8, 8, 1, tuple("0123456789")),
                                  DatasetSpec(24, 24, 3, ("a", "b", "c", "d", "e"))],
                         ids=DatasetSpec.describe)
def test_the_paper_teacher_family_and_its_ensemble_take_any_shape(spec):
    from mimic_tf.config import TeacherConfig
    from mimic_tf.teachers import build_ensemble, build_teacher_member

    small = TeacherConfig(conv_widths=(4,) * 8, fc_widths=(8, 8))
    members = [build_teacher_member(small, index, spec=spec) for index in range(2)]
    ensemble = build_ensemble(members, flip_average=True)
    images = np.random.default_rng(0).integers(0, 256, (3, *spec.image_shape), np.uint8)
    assert ensemble(images).shape == (3, spec.num_classes)
    expected = np.mean([(m(images) + m(images[:, :, ::-1])) / 2 for m in members], axis=0)
    np.testing.assert_allclose(ensemble(images), expected, rtol=1e-5, atol=1e-5)


def test_the_airbench_family_takes_other_sizes_and_refuses_tiny_images():
    from mimic_tf.config import AirbenchConfig
    from mimic_tf.teachers import airbench

    config = AirbenchConfig(widths=(8, 8, 8), whitening_images=20)
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (20, 24, 20, 1), np.uint8)
    member = airbench.build_airbench_member(config, gray, num_classes=4)
    assert member(gray[:2]).shape == (2, 4)
    with pytest.raises(ValueError, match="teacher.family: paper"):
        airbench.build_airbench_member(config, rng.integers(0, 256, (20, 8, 8, 1), np.uint8),
                                       num_classes=10)


def test_a_subset_of_classes_is_kept_and_relabelled_in_the_given_order(tmp_path, cache):
    sizes = {name: (16, 16) for name in ("airplane", "bird", "cat", "dog", "ship")}
    write_colour_tree(tmp_path / "tree", sizes, per_class=6)
    source = f"folder:{tmp_path / 'tree'}"
    full = data.load_splits(DataConfig(source=source, validation_size=10))
    subset = data.load_splits(DataConfig(source=source, validation_size=10,
                                         classes=("ship", "cat")))
    assert subset.spec == DatasetSpec(16, 16, 3, ("ship", "cat"))
    assert len(subset.test_labels) == 12
    assert len(subset.train_labels) + len(subset.validation_labels) == 12
    # Every kept image is one of the source's, its label renamed: ship -> 0, cat -> 1.
    name_of = {image.tobytes(): full.class_names[label]
               for image, label in zip(full.test_images, full.test_labels, strict=True)}
    assert [name_of[image.tobytes()] for image in subset.test_images] == [
        subset.class_names[label] for label in subset.test_labels]
    assert sorted(np.bincount(subset.test_labels).tolist()) == [6, 6]
    resized = data.load_splits(DataConfig(source=source, validation_size=10,
                                          classes=("ship", "cat"), image_size=(8, 8)))
    assert resized.spec == DatasetSpec(8, 8, 3, ("ship", "cat"))
    with pytest.raises(data.DataError, match=r"\['horse'\].*'airplane'"):
        data.load_splits(DataConfig(source=source, validation_size=10,
                                    classes=("horse", "cat")))
    with pytest.raises(ConfigError, match="data.classes"):
        load_config("smoke", overrides={"data.classes": ["cat"]})


def test_the_transfer_set_and_a_student_follow_the_datas_shape_and_classes(tmp_path, cache):
    from mimic_tf.teachers import build_ensemble, build_teacher_member
    from mimic_tf.transfer import build_transfer_set
    from tuner.search.hypermodel import TrainingData

    sizes = {name: (16, 16) for name in ("a", "b", "c", "d", "e")}
    write_colour_tree(tmp_path / "tree", sizes, per_class=6)
    config = load_config("smoke", overrides={"data.source": f"folder:{tmp_path / 'tree'}",
                                             "data.validation_size": 10})
    splits = data.load_splits(config.data)
    member = build_teacher_member(config.teacher, spec=splits.spec)
    transfer = build_transfer_set(config, splits, build_ensemble([member]), tmp_path / "t",
                                  verbose=0)
    assert transfer.logits.shape == (config.transfer.views, 20, 5)
    assert transfer.test_logits.shape == (30, 5)
    batch = next(iter(TrainingData.from_transfer_set(transfer, 8).train))
    assert batch[0].shape == (8, 16, 16, 3) and batch[1].shape == (8, 5)


def test_any_tfds_image_classification_dataset_is_read(cache):
    """TFDS's own mock (no download): mnist's features, random examples."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=30):
        splits = data.load_splits(DataConfig(source="tfds:mnist", validation_size=10))
        resized = data.load_splits(DataConfig(source="tfds:mnist", validation_size=10,
                                              image_size=(14, 14)))
    assert splits.source == "tfds:mnist"
    assert splits.spec == DatasetSpec(28, 28, 1, tuple(str(digit) for digit in range(10)))
    assert (len(splits.train_labels), len(splits.test_labels)) == (20, 30)
    assert resized.spec.image_shape == (14, 14, 1) and resized.train_images.dtype == np.uint8
