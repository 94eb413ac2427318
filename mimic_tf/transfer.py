"""The transfer set: the teacher ensemble's logits on K augmented views of the training images.

The paper generated 160 epochs' worth of augmented images once, computed the ensemble's logits
on them and stored them, so every student saw the same examples in the same order. Here view k
of image i is a pure function of (augmentation seed, i, k) (`data.augment`), so only the logits
are stored; images are regenerated from their seeds, once, into memory when the K views fit
in `VIEW_CACHE_BYTES` (students then read them without paying the augmentation again), or as
the dataset is read otherwise.

On disk (`runs/<experiment>/transfer/`):

    config.yaml                the resolved config that built the cache
    logits.npy                 float32 [K, N, classes]: logits[k, i] = teacher(view k of image i),
                               averaged with teacher(mirror of that view) when
                               `transfer.flip_average` says so (`auto`: when the teacher has
                               flip test-time augmentation, `teacher.flip_average`)
    evaluation_logits.npz      teacher logits on the unaugmented validation and test images
    manifest.json              fingerprint of teacher weights, data, augmentation, K, order
                               seed; `logits_seconds`: the teacher's passes, across resumes

A manifest whose fingerprint differs from the current one means a rebuild, never a silent
reuse. Files are written under temporary names and renamed, the manifest last. The logits are
built view by view into `.logits.partial.npy`, with `.logits.partial.json` counting the views
on disk and naming the fingerprint's digest, so a build that is killed resumes at its first
unfinished view.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from mimic_tf import data
from mimic_tf.config import AugmentConfig, ExperimentConfig, save_config
from mimic_tf.files import atomic_path, atomic_write_text, publish
from mimic_tf.layout import TRANSFER_EVALUATION_FILE as EVALUATION_FILE
from mimic_tf.layout import TRANSFER_MANIFEST_FILE as MANIFEST_FILE
from mimic_tf.teachers import build_ensemble, predict_logits, weights_fingerprint
from mimic_tf.teachers.published import PublishedTeacher, compare_views

FORMAT_VERSION = 1
VIEW_CACHE_BYTES = 4 * 2**30  # augmented views kept in memory up to this size (8 views: 1 GB)
LOGITS_FILE = "logits.npy"
# While the logits are built: the views done so far, and the record of how many and for what.
PARTIAL_LOGITS_FILE = ".logits.partial.npy"
PARTIAL_PROGRESS_FILE = ".logits.partial.json"


def view_order(num_examples: int, view: int, seed: int) -> np.ndarray:
    """The fixed order in which view `view` of the training images is presented."""
    return np.random.default_rng([seed, view]).permutation(num_examples).astype(np.int32)


@dataclasses.dataclass
class TransferSet:
    """K augmented views of the training images with the teacher's logits, in a fixed order.

    `logits` is None in online mode, where a teacher inside `Distiller.train_step` computes
    them from the same images.
    """

    splits: data.Splits
    augment: AugmentConfig
    order: np.ndarray  # int32 [K, N]: order[k] lists the example indices of view k
    logits: np.ndarray | None  # float32 [K, N, classes], indexed by (view, example)
    validation_logits: np.ndarray  # float32 [N_val, classes]
    test_logits: np.ndarray  # float32 [N_test, classes]
    fingerprint: str
    # uint8 [K, N, 32, 32, 3]: the augmented views made once (None: augmented as read)
    views: np.ndarray | None = None

    @property
    def num_examples(self) -> int:
        return int(self.order.shape[1])

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches in one view: one Keras epoch is one augmented view."""
        return data.steps_per_epoch(self.num_examples, batch_size)

    def train_dataset(self, batch_size: int, with_logits: bool = True) -> tf.data.Dataset:
        """Infinite `(image, teacher_logits, label)` batches, view 0, 1, ..., K-1, 0, ...

        Every student reads the same images in the same order: `data.view_batches` with
        `data.fixed_order(self.order)`. With `with_logits=False` (online mode) batches are
        `(image, label)` and the teacher computes the logits.
        """
        if with_logits and self.logits is None:
            raise ValueError("this transfer set is online (no cached logits): "
                             "use with_logits=False and give the Distiller the teacher")
        return data.view_batches(
            self.splits.train_images, self.splits.train_labels, batch_size=batch_size,
            order=data.fixed_order(self.order), augment_config=self.augment,
            logits=self.logits if with_logits else None, views=self.views,
        )

    def _evaluation_dataset(self, split: str, batch_size: int) -> tf.data.Dataset:
        images = getattr(self.splits, f"{split}_images")
        labels = getattr(self.splits, f"{split}_labels").astype(np.int64)
        logits = getattr(self, f"{split}_logits")
        return (
            tf.data.Dataset.from_tensor_slices((images, logits, labels))
            .batch(batch_size)
            .prefetch(tf.data.AUTOTUNE)
        )

    def validation_dataset(self, batch_size: int = 500) -> tf.data.Dataset:
        """`(image, teacher_logits, label)` batches of the unaugmented validation split."""
        return self._evaluation_dataset("validation", batch_size)

    def test_dataset(self, batch_size: int = 500) -> tf.data.Dataset:
        """`(image, teacher_logits, label)` batches of the unaugmented test split."""
        return self._evaluation_dataset("test", batch_size)


def flip_averaged(config: ExperimentConfig) -> bool:
    """Whether each view's logits are averaged with its mirror's (`transfer.flip_average`;
    `auto`: as the teacher's own test-time augmentation, `teacher.flip_average`)."""
    if config.transfer.flip_average == "auto":
        return config.teacher.flip_average
    return config.transfer.flip_average == "true"


def transfer_teacher(teacher: keras.Model, config: ExperimentConfig) -> keras.Model:
    """The model whose logits the transfer set holds: `teacher`, with or without the flip
    averaging that `transfer.flip_average` asks for (the same member weights either way)."""
    wanted, built_in = flip_averaged(config), config.teacher.flip_average
    if wanted == built_in:
        return teacher
    if wanted:
        return build_ensemble([teacher], flip_average=True)
    members = [layer for layer in teacher.layers if isinstance(layer, keras.Model)]
    return build_ensemble(members, flip_average=False)


def transfer_fingerprint(
    config: ExperimentConfig, splits: data.Splits, teacher: keras.Model
) -> dict[str, Any]:
    """Everything the cached logits depend on."""
    return _fingerprint(config, splits, weights_fingerprint(teacher), flip_averaged(config))


def _fingerprint(config: ExperimentConfig, splits: data.Splits, teacher_weights: str,
                 flip_average: bool) -> dict[str, Any]:
    """The transfer set's fingerprint, its teacher named by the digest of its weights."""
    return {
        "format": FORMAT_VERSION,
        "teacher_weights": teacher_weights,
        # Each view's logits averaged with its mirror's (transfer.flip_average; by default the
        # teacher's own flip_average, the key's name from before it could differ).
        "teacher_flip_average": flip_average,
        "data": splits.fingerprint(),
        "augment": dataclasses.asdict(config.augment),
        "views": config.transfer.views,
        "order_seed": config.seed,
    }


def _views_in_memory(config: ExperimentConfig, splits: data.Splits) -> np.ndarray | None:
    """The K augmented views of the training images, made once, when they fit in
    `VIEW_CACHE_BYTES` (None: they are augmented as the dataset is read)."""
    if config.transfer.views * splits.train_images.nbytes > VIEW_CACHE_BYTES:
        return None
    return data.augmented_views(splits.train_images, config.augment, config.transfer.views)


def _digest(fingerprint: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def _teacher_logits_of_view(
    teacher: keras.Model, splits: data.Splits, augment: AugmentConfig, view: int,
    batch_size: int, views: np.ndarray | None = None,
) -> np.ndarray:
    """Teacher logits on view `view` of every training image, in example order (from
    `views[view]` when the views were made already)."""
    images = (views[view] if views is not None else
              data.view_in_example_order(splits.train_images, augment, view, batch_size))
    return np.asarray(teacher.predict(images, batch_size=batch_size if views is not None
                                      else None, verbose=0), dtype=np.float32)


def _views_done(partial: Path, progress: Path, digest: str,
                shape: tuple[int, ...]) -> tuple[int, float]:
    """How many views of a build killed part way `partial` holds for `digest`, and the
    seconds they took ((0, 0.0): none usable, as when another teacher, views or data left it)."""
    try:
        record = json.loads(progress.read_text())
        held = np.lib.format.open_memmap(partial, mode="r")
    except (OSError, ValueError):
        return 0, 0.0
    if record.get("digest") != digest or held.shape != shape or held.dtype != np.float32:
        return 0, 0.0
    return min(int(record.get("views_done", 0)), shape[0]), float(record.get("seconds", 0.0))


def _compute_logits(
    config: ExperimentConfig, splits: data.Splits, teacher: keras.Model, path: Path,
    digest: str, verbose: int, view_images: np.ndarray | None = None,
) -> float:
    """Write the [K, N, classes] logits to `path`, view by view, resumably; returns the
    seconds the teacher's passes took, those before a kill included.

    The views are written into `PARTIAL_LOGITS_FILE` beside `path`; after each one it is
    flushed to disk and `PARTIAL_PROGRESS_FILE` records how many views it holds, for which
    digest, and their seconds. A build killed part way (an hour of teacher passes in a
    campaign) resumes at its first unfinished view; the whole file is renamed to `path` when
    the last view is in.
    """
    views, num_examples = config.transfer.views, len(splits.train_labels)
    shape = (views, num_examples, splits.spec.num_classes)
    partial, progress = path.parent / PARTIAL_LOGITS_FILE, path.parent / PARTIAL_PROGRESS_FILE
    first, seconds_before = _views_done(partial, progress, digest, shape)
    if first:
        logits = np.lib.format.open_memmap(partial, mode="r+")
        if verbose:
            print(f"transfer set: resuming at view {first + 1}/{views} "
                  f"({first} done before the last stop)", flush=True)
    else:
        progress.unlink(missing_ok=True)
        logits = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=shape)
    started, elapsed = time.perf_counter(), 0.0
    for view in range(first, views):
        logits[view] = _teacher_logits_of_view(
            teacher, splits, config.augment, view, config.transfer.batch_size, view_images
        )
        logits.flush()  # the view on disk before the record that counts it
        elapsed, done = time.perf_counter() - started, view + 1 - first
        atomic_write_text(progress, json.dumps({"digest": digest, "views_done": view + 1,
                                                "seconds": seconds_before + elapsed}))
        if verbose:
            remaining = elapsed / done * (views - view - 1)
            line = (f"transfer set: view {view + 1}/{views} "
                    f"({done * num_examples / elapsed:,.0f} img/s, ETA {remaining:.0f}s)")
            # Rewrite one line on a terminal; one line per view in a log file.
            if sys.stdout.isatty():
                print(f"\r{line}", end="" if view + 1 < views else "\n", flush=True)
            else:
                print(line, flush=True)
    del logits
    publish(partial, path)
    progress.unlink()
    return seconds_before + elapsed


def build_transfer_set(
    config: ExperimentConfig,
    splits: data.Splits,
    teacher: keras.Model,
    directory: str | Path,
    verbose: int = 1,
    evaluation_logits: dict[str, np.ndarray] | None = None,
) -> TransferSet:
    """The transfer set of `config`: cached logits reused when the fingerprint matches.

    In `transfer.mode: online` only the evaluation logits are stored; the training logits
    are computed by the teacher inside `Distiller.train_step`. `evaluation_logits`
    (`teachers.saved_evaluation_logits`: the teacher's on the validation and test splits,
    computed when it was evaluated) spares running it over both splits again.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fingerprint = transfer_fingerprint(config, splits, teacher)
    digest = _digest(fingerprint)
    online = config.transfer.mode == "online"
    manifest_path = directory / MANIFEST_FILE
    logits_path, evaluation_path = directory / LOGITS_FILE, directory / EVALUATION_FILE

    num_examples, views = len(splits.train_labels), config.transfer.views
    # Augmented once: for the teacher's logits (on a rebuild) and for the students' batches.
    view_images = _views_in_memory(config, splits)
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    cached = (
        manifest.get("digest") == digest
        and evaluation_path.exists()
        and (online or manifest.get("has_logits") and logits_path.exists())
    )
    if not cached:
        if manifest and verbose:
            changed = sorted(k for k in fingerprint if manifest.get("fingerprint", {}).get(k)
                             != fingerprint[k])
            print(f"transfer set: cache is stale ({', '.join(changed)} changed); rebuilding")
        manifest_path.unlink(missing_ok=True)  # a half-rebuilt cache never looks valid
        seconds = None
        if not online:
            seconds = _compute_logits(config, splits, transfer_teacher(teacher, config),
                                      logits_path, digest, verbose, view_images)
        if evaluation_logits is not None:
            validation_logits, test_logits = (evaluation_logits["validation"],
                                              evaluation_logits["test"])
        else:
            validation_logits = predict_logits(teacher, splits.validation_images)
            test_logits = predict_logits(teacher, splits.test_images)
        with atomic_path(evaluation_path) as temporary:
            np.savez(temporary, validation=validation_logits, test=test_logits)
        manifest = {"digest": digest, "fingerprint": fingerprint, "has_logits": not online,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if seconds is not None:  # the teacher's passes over the K views, across resumes
            manifest["logits_seconds"] = round(seconds, 1)
        save_config(config, directory / "config.yaml")
        atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")
    elif verbose:
        print(f"transfer set: reusing {directory} ({config.transfer.views} views)")

    evaluation = np.load(evaluation_path)
    return TransferSet(
        splits=splits,
        augment=config.augment,
        order=np.stack([view_order(num_examples, view, config.seed)
                        for view in range(views)]),
        logits=None if online else np.load(logits_path),
        validation_logits=evaluation["validation"],
        test_logits=evaluation["test"],
        fingerprint=digest,
        views=view_images,
    )



def published_transfer_set(
    config: ExperimentConfig, splits: data.Splits, teacher: PublishedTeacher, verbose: int = 1,
    directory: str | Path | None = None, in_memory: bool = True, announce: bool = True,
) -> TransferSet:
    """The transfer set of a published teacher (`mimic_tf.teachers.published`): its members'
    mean logits on the first `transfer.views` views, no teacher run. `directory`: the run's
    transfer folder, where the ensemble's validation and test logits are written as for a
    trained teacher (the frontier reads them); None: nothing is written. `in_memory`: make
    the views now, and check them against the published ones (False: augmented as read, for
    a process that trains nothing itself, such as the parent of lanes of searches);
    `announce`: print the line that says what the transfer set is (a lane leaves it to the
    parent and prints only where its views differ from the published ones).

    The views are regenerated here as for a trained teacher; where they are not bit for bit
    the published ones (another CPU kind's float rounding) the log says how far they differ,
    and the published logits are used as they are.
    """
    num_examples, views = len(splits.train_labels), config.transfer.views
    view_images = _views_in_memory(config, splits) if in_memory else None
    if view_images is not None:
        note = compare_views(teacher, view_images)
        if note and verbose:
            print(f"transfer set: {note}", flush=True)
    fingerprint = _fingerprint(config, splits, teacher.weights_sha256,
                               bool(teacher.manifests[0].get("transfer_flip_average")))
    if directory is not None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        with atomic_path(Path(directory) / EVALUATION_FILE) as temporary:
            np.savez(temporary, **teacher.evaluation_logits)
    if verbose and announce:
        print(f"transfer set: {views} views of the published teacher in {teacher.folder} "
              f"({len(teacher.manifests)} member{'' if len(teacher.manifests) == 1 else 's'}; "
              "no teacher pass)", flush=True)
    return TransferSet(
        splits=splits,
        augment=config.augment,
        order=np.stack([view_order(num_examples, view, config.seed) for view in range(views)]),
        logits=teacher.transfer_logits,
        validation_logits=teacher.evaluation_logits["validation"],
        test_logits=teacher.evaluation_logits["test"],
        fingerprint=_digest(fingerprint),
        views=view_images,
    )
