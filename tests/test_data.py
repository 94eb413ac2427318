"""Data: sources, caches, splits, the deterministic augmentation and the tf.data pipelines."""

from __future__ import annotations

import dataclasses
import tarfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mimic_tf import data
from mimic_tf.config import AugmentConfig, DataConfig

NO_JITTER = dict(
    hue_shift=0.0, saturation_shift=0.0, value_shift=0.0, saturation_scale=0.0, value_scale=0.0
)


def random_images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


# ----- augmentation --------------------------------------------------------------------------


def test_augment_is_a_pure_function_of_seed_example_and_view():
    images = random_images(12)
    indices = np.arange(12) + 100
    config = AugmentConfig(seed=3)
    first = data.augment(images, indices, 5, config).numpy()
    assert first.dtype == np.uint8 and first.shape == images.shape
    np.testing.assert_array_equal(data.augment(images, indices, 5, config).numpy(), first)
    # The same images in a smaller batch, in another order, come out the same.
    order = [7, 2, 9, 0]
    regrouped = data.augment(images[order], indices[order], 5, config).numpy()
    np.testing.assert_array_equal(regrouped, first[order])
    # A per-example view vector: the first half view 5, the second half view 6.
    views = np.array([5] * 6 + [6] * 6)
    mixed = data.augment(images, indices, views, config).numpy()
    np.testing.assert_array_equal(mixed[:6], first[:6])
    np.testing.assert_array_equal(mixed[6:], data.augment(images, indices, 6, config)[6:])


def test_augment_differs_across_views_and_seeds():
    images = random_images(12)
    indices = np.arange(12)
    config = AugmentConfig(seed=3)
    reference = data.augment(images, indices, 0, config).numpy()
    other_view = data.augment(images, indices, 1, config).numpy()
    other_seed = data.augment(images, indices, 0, dataclasses.replace(config, seed=4)).numpy()
    for other in (other_view, other_seed):
        assert all(not np.array_equal(a, b) for a, b in zip(reference, other, strict=True))
    assert not np.array_equal(reference, images)


def test_augment_without_jitter_flip_or_crop_is_the_identity():
    images = random_images(8)
    config = AugmentConfig(flip=False, crop_min=32, crop_max=32, **NO_JITTER)
    np.testing.assert_array_equal(data.augment(images, np.arange(8), 7, config), images)


def test_flip_only_mirrors_about_half_the_images():
    images = random_images(24)
    config = AugmentConfig(flip=True, crop_min=32, crop_max=32, **NO_JITTER)
    augmented = np.concatenate([  # batches of 12, like the other tests: fewer XLA compiles
        data.augment(images[:12], np.arange(12), 0, config),
        data.augment(images[12:], np.arange(12, 24), 0, config),
    ])
    same = [np.array_equal(a, b) for a, b in zip(augmented, images, strict=True)]
    mirrored = [np.array_equal(a, b[:, ::-1]) for a, b in zip(augmented, images, strict=True)]
    assert all(s != m for s, m in zip(same, mirrored, strict=True))
    assert 6 <= sum(mirrored) <= 18


def test_crop_is_a_square_crop_resized_like_tf_image_resize():
    images = random_images(12, seed=1)
    config = AugmentConfig(flip=True, crop_min=24, crop_max=30, **NO_JITTER)
    augmented = data.augment(images, np.arange(12), 2, config).numpy().astype(np.int32)
    for image, output in zip(images[:3], augmented[:3], strict=True):
        best = 255
        for side in range(24, 31):
            crops = np.stack([image[top:top + side, left:left + side]
                              for top in range(33 - side) for left in range(33 - side)])
            resized = tf.image.resize(crops.astype(np.float32), (32, 32)).numpy()
            for candidate in (resized, resized[:, :, ::-1]):
                errors = np.abs(np.rint(candidate) - output).max(axis=(1, 2, 3))
                best = min(best, errors.min())
        assert best <= 1  # equal up to float rounding of values right at x.5


def test_hsv_jitter_keeps_values_in_range_and_changes_colours():
    images = random_images(12)
    config = AugmentConfig(flip=False, crop_min=32, crop_max=32)
    augmented = data.augment(images, np.arange(12), 0, config).numpy().astype(np.int32)
    assert np.abs(augmented - images).mean() > 3
    # Gray pixels have no hue and no saturation: value jitter alone keeps them gray.
    gray = np.repeat(random_images(12)[..., :1], 3, axis=-1)
    value_only = AugmentConfig(flip=False, crop_min=32, crop_max=32, saturation_shift=0.0)
    gray_augmented = data.augment(gray, np.arange(12), 0, value_only).numpy()
    np.testing.assert_array_equal(gray_augmented[..., 0], gray_augmented[..., 1])
    np.testing.assert_array_equal(gray_augmented[..., 0], gray_augmented[..., 2])


def test_augment_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        data.augment(np.zeros((2, 32, 32, 3), np.float32), [0, 1], 0, AugmentConfig())


# ----- splits --------------------------------------------------------------------------------


def test_stratified_split_sizes_proportions_and_determinism():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    train, validation = data.stratified_split(labels, 10, seed=0)
    assert len(train) == 90 and len(validation) == 10
    assert np.bincount(labels[validation]).tolist() == [5, 3, 2]
    assert np.intersect1d(train, validation).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, validation])), np.arange(100))
    assert np.all(np.diff(train) > 0) and np.all(np.diff(validation) > 0)
    again_train, again_validation = data.stratified_split(labels, 10, seed=0)
    np.testing.assert_array_equal(again_train, train)
    np.testing.assert_array_equal(again_validation, validation)
    assert not np.array_equal(data.stratified_split(labels, 10, seed=1)[1], validation)
    # Largest remainder rounding still gives exactly validation_size.
    assert len(data.stratified_split(labels, 7, seed=0)[1]) == 7
    with pytest.raises(ValueError, match="validation_size"):
        data.stratified_split(labels, 100, seed=0)


def test_synthetic_splits_honour_sizes_and_are_deterministic():
    config = DataConfig(source="synthetic", validation_size=50, synthetic_examples=200)
    splits = data.load_splits(config)
    assert splits.train_images.shape == (200, 32, 32, 3)
    assert splits.validation_images.shape == (50, 32, 32, 3)
    assert splits.test_images.shape == (200, 32, 32, 3)
    for name in ("train_images", "validation_images", "test_images"):
        assert getattr(splits, name).dtype == np.uint8
    for name in ("train_labels", "validation_labels", "test_labels"):
        assert getattr(splits, name).dtype == np.int64
    assert np.bincount(splits.validation_labels).tolist() == [5] * 10
    assert np.bincount(splits.train_labels[:10], minlength=10).max() <= 3  # order is shuffled
    assert splits.source == "synthetic"
    assert data.load_splits(config).fingerprint() == splits.fingerprint()
    half = data.load_splits(dataclasses.replace(config, train_fraction=0.5))
    assert np.bincount(half.train_labels).tolist() == [10] * 10
    assert half.fingerprint() != splits.fingerprint()


def test_synthetic_classes_are_separable_by_mean_colour():
    splits = data.load_splits(DataConfig(source="synthetic", validation_size=50))
    features = splits.train_images.reshape(-1, 1024, 3).mean(axis=1)
    centroids = np.stack([features[splits.train_labels == c].mean(0) for c in range(10)])
    test_features = splits.test_images.reshape(-1, 1024, 3).mean(axis=1)
    distances = np.linalg.norm(test_features[:, None] - centroids[None], axis=-1)
    assert (distances.argmin(axis=1) == splits.test_labels).mean() > 0.9


# ----- folder:PATH ---------------------------------------------------------------------------


def write_image_folder(root: Path) -> dict[str, list[Path]]:
    """3 classes x (4 train + 2 test) JPEGs; classes written out of sorted order."""
    rng = np.random.default_rng(0)
    files: dict[str, list[Path]] = {"train": [], "test": []}
    for split, count in (("train", 4), ("test", 2)):
        for name in ("frog", "cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for number in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                path = folder / f"{number:04d}.jpg"
                tf.io.write_file(str(path), tf.io.encode_jpeg(pixels, quality=90))
                files[split].append(path)
    return files


def decode_directly(path: Path) -> np.ndarray:
    return tf.io.decode_jpeg(tf.io.read_file(str(path)), dct_method="INTEGER_ACCURATE").numpy()


def check_tree_arrays(arrays, files: dict[str, list[Path]]) -> None:
    train_images, train_labels, test_images, test_labels = arrays
    class_index = {"cat": 0, "dog": 1, "frog": 2}  # sorted folder names
    for split, images, labels in (("train", train_images, train_labels),
                                  ("test", test_images, test_labels)):
        expected = sorted(files[split], key=lambda p: (class_index[p.parent.name], p.name))
        assert images.dtype == np.uint8 and labels.dtype == np.int64
        assert labels.tolist() == [class_index[path.parent.name] for path in expected]
        np.testing.assert_array_equal(images, np.stack([decode_directly(p) for p in expected]))


def test_image_folder_tree_is_decoded_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    files = write_image_folder(tmp_path / "mini")
    decodes = []
    original_decode = data.image_folders._decode_images
    monkeypatch.setattr(data.image_folders, "_decode_images", lambda *args: decodes.append(1)
                        or original_decode(*args))
    check_tree_arrays(data.load_raw(f"folder:{tmp_path / 'mini'}"), files)
    check_tree_arrays(data.load_raw(f"folder:{tmp_path / 'mini'}"), files)
    assert len(decodes) == 1
    assert len(list((tmp_path / "cache").rglob("decoded-*.npz"))) == 1
    # Changing the tree invalidates the cache.
    (tmp_path / "mini" / "train" / "cat" / "0000.jpg").unlink()
    assert len(data.load_raw(f"folder:{tmp_path / 'mini'}")[0]) == 11
    assert len(decodes) == 2


def test_archive_is_unpacked_once_and_decoded_once(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.CACHE_ENV, str(cache))
    files = write_image_folder(tmp_path / "tree" / "mini")
    archive = tmp_path / "mini-jpeg.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "tree" / "mini", arcname="mini")
    unpacks, decodes = [], []
    folders = data.image_folders
    original_unpack, original_decode = folders._unpack_archive, folders._decode_images
    monkeypatch.setattr(data.image_folders, "_unpack_archive", lambda *args: unpacks.append(1)
                        or original_unpack(*args))
    monkeypatch.setattr(data.image_folders, "_decode_images", lambda *args: decodes.append(1)
                        or original_decode(*args))
    for _ in range(2):
        arrays = data.load_raw(f"folder:{archive}")
        unpacked_files = {p.relative_to(cache / p.relative_to(cache).parts[0])
                          for p in cache.rglob("*.jpg")}
        tree_files = {p.relative_to(tmp_path / "tree") for p in (tmp_path / "tree").rglob("*.jpg")}
        assert unpacked_files == tree_files
        check_tree_arrays(arrays, files)
    assert unpacks == [1] and decodes == [1]
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporaries left
    splits = data.load_splits(DataConfig(source=f"folder:{archive}", validation_size=10))
    assert splits.source == f"folder:{archive}"
    assert len(splits.train_labels) == 2 and len(splits.test_labels) == 6
    assert sorted(np.bincount(splits.validation_labels).tolist()) == [3, 3, 4]


def test_image_of_the_wrong_size_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    write_image_folder(tmp_path / "mini")
    bad = tmp_path / "mini" / "test" / "dog" / "0001.jpg"
    tf.io.write_file(str(bad), tf.io.encode_jpeg(np.zeros((16, 16, 3), np.uint8)))
    with pytest.raises(data.DataError, match="0001.jpg.*16, 16, 3"):
        data.load_raw(f"folder:{tmp_path / 'mini'}")


def test_undecodable_image_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    write_image_folder(tmp_path / "mini")
    (tmp_path / "mini" / "train" / "cat" / "0002.jpg").write_bytes(b"not an image")
    with pytest.raises(data.DataError, match="cat/0002.jpg"):
        data.load_raw(f"folder:{tmp_path / 'mini'}")


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(data.DataError, match="/nonexistent/cifar"):
        data.load_raw("folder:/nonexistent/cifar")
    (tmp_path / "empty").mkdir()
    with pytest.raises(data.DataError, match="train/<label>"):
        data.load_raw(f"folder:{tmp_path / 'empty'}", cache_dir=tmp_path / "cache")


def test_auto_without_any_data_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setattr(data.sources, "_prepared_tfds_dir", lambda name: None)
    monkeypatch.setattr(data.sources, "_archive_candidates", lambda: [tmp_path / "nowhere.tar.gz"])

    def no_network(name, data_dir, download, image_size=None):
        raise data.DataError("download failed: no network")

    monkeypatch.setattr(data.sources, "_load_tfds", no_network)
    with pytest.raises(data.DataError) as raised:
        data.load_splits(DataConfig(source="auto"))
    message = str(raised.value)
    assert data.DATA_ENV in message and "folder:" in message and "tfds build cifar10" in message
    assert "no network" in message
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "missing.tar.gz"))
    with pytest.raises(data.DataError, match="missing.tar.gz does not exist"):
        data.load_splits(DataConfig(source="auto"))


def test_auto_uses_the_archive_named_by_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(data.sources, "_prepared_tfds_dir", lambda name: None)
    write_image_folder(tmp_path / "mini")
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "mini"))
    splits = data.load_splits(DataConfig(source="auto", validation_size=10))
    assert splits.source == f"folder:{tmp_path / 'mini'}"
    assert len(splits.test_labels) == 6


# ----- tf.data pipelines ---------------------------------------------------------------------


def test_training_dataset_epochs_views_and_determinism():
    num_examples, batch_size = 20, 8
    images = random_images(num_examples)
    example_ids = np.arange(num_examples)  # labels double as example indices
    config = AugmentConfig(seed=1)

    def two_epochs():
        dataset = data.training_dataset(images, example_ids, batch_size=batch_size,
                                        augment_config=config, shuffle_seed=5, first_view=2)
        assert dataset.element_spec == (
            tf.TensorSpec([None, 32, 32, 3], tf.uint8), tf.TensorSpec([None], tf.int64)
        )
        steps = data.steps_per_epoch(num_examples, batch_size)
        batches = [(x.numpy(), y.numpy()) for x, y in dataset.take(2 * steps)]
        assert [len(y) for _, y in batches] == [8, 8, 4, 8, 8, 4]
        return [batches[:steps], batches[steps:]]

    epochs = two_epochs()
    views = []
    for epoch, batches in enumerate(epochs):
        ids = np.concatenate([y for _, y in batches])
        assert sorted(ids.tolist()) == list(range(num_examples))  # every example once
        for batch_images, batch_ids in batches:  # view first_view + epoch of each example
            expected = data.augment(images[batch_ids], batch_ids, 2 + epoch, config)
            np.testing.assert_array_equal(batch_images, expected)
        views.append((ids, np.concatenate([x for x, _ in batches])[np.argsort(ids)]))
    assert not np.array_equal(views[0][0], views[1][0])  # a new order each epoch
    assert not np.array_equal(views[0][1], views[1][1])  # and a new view
    again = two_epochs()
    for first, second in zip(epochs, again, strict=True):
        for (x1, y1), (x2, y2) in zip(first, second, strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)


def test_training_dataset_without_augmentation_passes_images_through():
    images = random_images(10)
    dataset = data.training_dataset(images, np.arange(10), batch_size=4, augment_config=None,
                                    shuffle_seed=0)
    for batch_images, ids in dataset.take(3):
        np.testing.assert_array_equal(batch_images.numpy(), images[ids.numpy()])


def test_evaluation_dataset_is_in_order_and_complete():
    images = random_images(10)
    labels = np.arange(10) % 3
    batches = list(data.evaluation_dataset(images, labels, batch_size=4))
    assert [len(y) for _, y in batches] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), images)
    np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), labels)
    assert batches[0][1].dtype == tf.int64
    assert data.steps_per_epoch(40_000, 128) == 313
    assert data.steps_per_epoch(256, 128) == 2


def test_shuffled_order_is_pinned():
    # The teachers' order (TF's stateless Philox shuffle seeded by (seed, epoch)), as trained
    # teachers saw it: a change here changes every teacher.
    batches = data.view_batch_indices(10, 4, data.shuffled_order(10, seed=5, first_view=2))
    seen = [(ids.numpy().tolist(), int(view), int(epoch), int(step))
            for ids, view, epoch, step in batches.take(6)]
    assert seen == [
        ([3, 5, 7, 2], 2, 0, 0), ([1, 0, 9, 6], 2, 0, 1), ([8, 4], 2, 0, 2),
        ([6, 1, 7, 0], 3, 1, 0), ([4, 9, 8, 3], 3, 1, 1), ([5, 2], 3, 1, 2),
    ]


def test_view_batches_follow_a_fixed_order_and_pair_each_view_with_its_logits():
    num_examples, views = 10, 2
    images = random_images(num_examples)
    example_ids = np.arange(num_examples)
    orders = np.stack([np.arange(num_examples)[::-1], (np.arange(num_examples) * 3) % 10])
    logits = np.random.default_rng(0).normal(size=(views, num_examples, 10)).astype(np.float32)
    config = AugmentConfig(seed=2)
    dataset = data.view_batches(images, example_ids, batch_size=4, augment_config=config,
                                order=data.fixed_order(orders), logits=logits, epochs=3)
    assert dataset.cardinality() == 3 * data.steps_per_epoch(num_examples, 4)
    batches = list(dataset)
    for epoch in range(3):  # views 0, 1, 0: one epoch a view, each on fresh batches
        view = epoch % views
        epoch_batches = batches[3 * epoch:3 * epoch + 3]
        ids = np.concatenate([y.numpy() for _, _, y in epoch_batches])
        np.testing.assert_array_equal(ids, orders[view])
        for batch_images, batch_logits, batch_ids in epoch_batches:
            np.testing.assert_array_equal(batch_logits, logits[view, batch_ids.numpy()])
            expected = data.augment(images[batch_ids.numpy()], batch_ids, view, config)
            np.testing.assert_array_equal(batch_images, expected)
    with pytest.raises(ValueError, match="logits must be"):
        data.view_batches(images, example_ids, batch_size=4, augment_config=None,
                          order=data.fixed_order(orders), logits=logits[:, :5])


def test_auto_looks_for_the_shared_archive_beside_the_checkout():
    checkout = Path(__file__).resolve().parents[1]
    beside = checkout.parent / "shared" / "data" / data.ARCHIVE_NAME
    assert data.sources._archive_candidates()[0] == beside
