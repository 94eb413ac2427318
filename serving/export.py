"""Export a Keras student as a SavedModel in TF Serving's layout, and keep `models.config` current.

    python -m serving.export --model STUDENT.keras --base runs/EXP/models --name NAME \
        --run runs/EXP [--version N]           # or --class-names airplane,automobile,...

`export_student` writes `<base>/<name>/<version>/` (next free version by default) with the
`serving_default` and `classify` signatures of `serving.signatures`, a few warmup requests in
`assets.extra/tf_serving_warmup_requests` and `assets.extra/mimic_tf.json` (parameter count,
source, versions). The SavedModel is written to a hidden temporary folder, checked against the
Keras model (outputs equal to 1e-5) and renamed into place, so a polling server never sees half
a model. A student trained in mixed precision is exported as a float32 copy (`float32_copy`).
`<base>/models.config` (host paths) and `<base>/models.docker.config` (paths under `/models`,
for the `tensorflow/serving` image) are then regenerated from the folders on disk.
"""
# ruff: noqa: E402 (TensorFlow is imported quietly first when run as a command)

from __future__ import annotations

if __name__ == "__main__":  # before the imports below load TensorFlow: no C++ start-up lines
    from mimic_tf.cli import import_tensorflow_quietly

    import_tensorflow_quietly()

import argparse
import datetime
import json
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    input_pb2,
    model_pb2,
    predict_pb2,
    prediction_log_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from mimic_tf.files import atomic_write_bytes, atomic_write_text
from mimic_tf.layout import MODELS_CONFIG_FILE as MODELS_CONFIG
from serving import tensors
from serving.model_config import (
    BATCHING_PARAMETERS_FILE,
    MODEL_NAME_PATTERN,
    BatchingParameters,
    ModelConfigError,
    format_batching_parameters,
    model_name_problem,
    next_version,
    read_model_server_config,
    versions_on_disk,
    write_model_server_config,
)
from serving.signatures import (
    CLASSIFY_METHOD,
    CLASSIFY_SIGNATURE,
    IMAGES_INPUT,
    LOGITS_OUTPUT,
    METADATA_FILE,
    PREDICT_SIGNATURE,
    WARMUP_FILE,
    build_signature_functions,
    encode_image_example,
)

DOCKER_MODELS_CONFIG = "models.docker.config"
DOCKER_MODEL_ROOT = "/models"  # where `docker run -v BASE:/models` mounts the base folder
WARMUP_BATCH_SIZES = (1, 8, 32)  # one predict record per size, plus one classify record
EXPORT_TOLERANCE = 1e-5  # max |SavedModel logits - Keras logits| accepted at export

# Batching a student benefits from: a batch per millisecond of up to 256 images.
RECOMMENDED_BATCHING = BatchingParameters(
    max_batch_size=256, batch_timeout_micros=1000, num_batch_threads=2, max_enqueued_batches=100
)


class ExportError(RuntimeError):
    """An export that cannot be done (bad name, taken version, outputs that do not match)."""


def load_student(path: str | Path) -> keras.Model:
    """Load a `.keras` student, with mimic_tf's custom layers registered."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"student file {path} does not exist; pass a .keras file saved "
                                "with model.save(...)")
    try:  # registers PerImageStandardization (and the student families, when present)
        import mimic_tf.preprocessing  # noqa: F401
        import mimic_tf.students  # noqa: F401
    except ImportError:
        pass
    return keras.saving.load_model(path, compile=False)


def _image_spec(model: keras.Model) -> tuple[tuple[int, int, int], tf.DType]:
    try:
        shape = tuple(model.inputs[0].shape[1:])
        dtype = tf.as_dtype(model.inputs[0].dtype)
    except (AttributeError, IndexError, TypeError, ValueError):
        raise ExportError("the student has no input yet (a subclassed model never called, or "
                          "one without keras.Input): call it on a batch of images, or build it "
                          "with keras.Input((height, width, channels)), then export") from None
    if len(shape) != 3 or any(size is None for size in shape):
        raise ExportError(f"the student takes inputs of shape {shape}; a fixed "
                          "(height, width, channels) is needed to export an image signature")
    return shape, dtype


def _parameter_counts(model: keras.Model) -> tuple[int, int]:
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    total = sum(int(np.prod(weight.shape)) for weight in model.weights)
    return trainable, total


def _warmup_records(name: str, images: np.ndarray) -> list[bytes]:
    records = []
    for batch_size in WARMUP_BATCH_SIZES:
        request = predict_pb2.PredictRequest(
            model_spec=model_pb2.ModelSpec(name=name, signature_name=PREDICT_SIGNATURE))
        request.inputs[IMAGES_INPUT].CopyFrom(tensors.to_tensor_proto(images[:batch_size]))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        records.append(log.SerializeToString())
    examples = [tf.train.Example.FromString(encode_image_example(image)) for image in images[:2]]
    classify_request = classification_pb2.ClassificationRequest(
        model_spec=model_pb2.ModelSpec(name=name, signature_name=CLASSIFY_SIGNATURE),
        input=input_pb2.Input(example_list=input_pb2.ExampleList(examples=examples)),
    )
    records.append(prediction_log_pb2.PredictionLog(
        classify_log=prediction_log_pb2.ClassifyLog(request=classify_request)
    ).SerializeToString())
    return records


def _set_classify_method(saved_model_dir: Path) -> None:
    """Mark the classify signature as `tensorflow/serving/classify` (tf.saved_model.save
    writes every signature as predict), then refresh the fingerprint."""
    proto_path = saved_model_dir / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(proto_path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if CLASSIFY_SIGNATURE in meta_graph.signature_def:
            meta_graph.signature_def[CLASSIFY_SIGNATURE].method_name = CLASSIFY_METHOD
    atomic_write_bytes(proto_path, saved_model.SerializeToString())
    try:
        from tensorflow.python.saved_model import fingerprinting_utils

        fingerprinting_utils.write_fingerprint(str(saved_model_dir))
    except (ImportError, ValueError):  # an older fingerprint only affects TF's own metrics
        pass


def _verify(saved_model_dir: Path, model: keras.Model, images: np.ndarray,
            model_input_dtype: tf.DType) -> float:
    loaded = tf.saved_model.load(str(saved_model_dir))
    served = loaded.signatures[PREDICT_SIGNATURE](**{IMAGES_INPUT: tf.constant(images)})
    inputs = images if model_input_dtype == tf.uint8 else tf.cast(images, model_input_dtype)
    expected = tf.cast(model(inputs, training=False), tf.float32).numpy()
    difference = float(np.max(np.abs(served[LOGITS_OUTPUT].numpy() - expected)))
    if not difference <= EXPORT_TOLERANCE:
        raise ExportError(f"the exported SavedModel's logits differ from the Keras model's by "
                          f"{difference:.3g} (> {EXPORT_TOLERANCE}); the model may use layers "
                          "that behave differently when traced (check training=False paths)")
    return difference


def float32_copy(model: keras.Model) -> keras.Model:
    """`model` itself if it computes in float32, else a float32 clone with the same weights.

    A student trained under a mixed precision policy (`mixed_bfloat16`, `mixed_float16`) keeps
    float32 weights; serving it in float32 gives outputs that do not depend on the server's
    hardware (many CPUs have no bfloat16 units, float16 is slow on CPUs) and that the export
    check can compare to 1e-5.
    """
    if all(layer.compute_dtype in (None, "float32") for layer in model.layers
           if not isinstance(layer, keras.layers.InputLayer)):
        return model

    def float32_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    copy = keras.models.clone_model(model, clone_function=float32_layer)
    copy.set_weights(model.get_weights())
    return copy


def export_student(
    student: keras.Model | str | Path,
    base: str | Path,
    name: str,
    version: int | None = None,
    *,
    class_names: Sequence[str],
    warmup_images: np.ndarray | None = None,
    lineage: dict | None = None,
) -> Path:
    """Export a student as `<base>/<name>/<version>/` and regenerate `<base>/models.config`.

    Args:
        student: a Keras model taking uint8 images `[N, H, W, C]` and returning logits, or
            the path of a `.keras` file holding one.
        base: the folder of all exported models (`runs/EXP/models`).
        name: the model name clients ask for (letters, digits, `.`, `_`, `-`).
        version: the version number; None takes the next free one.
        class_names: one per logit, in logit order: what Classify answers (a run's
            `dataset.json` names them: `class_names_of_run`).
        warmup_images: uint8 images for the warmup requests (32 seeded random ones by
            default).
        lineage: where the student came from (run, trial, fingerprints...), stored in
            `assets.extra/mimic_tf.json`; the release gate copies it beside pushed versions.

    Returns:
        The version folder written.

    Raises:
        ExportError: bad name, version already taken, or outputs that do not match.
    """
    if model_name_problem(name):
        raise ExportError(model_name_problem(name))
    if version is not None and version < 1:
        raise ExportError(f"version {version} is not a positive integer; TF Serving reads "
                          "version folders 1, 2, ...")
    source = str(student) if isinstance(student, (str, Path)) else f"<in-memory {student.name}>"
    model = float32_copy(load_student(student) if isinstance(student, (str, Path)) else student)
    image_shape, model_input_dtype = _image_spec(model)
    if warmup_images is None:
        warmup_images = np.random.default_rng(0).integers(
            0, 256, size=(max(WARMUP_BATCH_SIZES), *image_shape), dtype=np.uint8)
    warmup_images = np.asarray(warmup_images, dtype=np.uint8)
    num_classes = int(model(warmup_images[:1], training=False).shape[-1])
    if len(class_names) != num_classes:
        raise ExportError(f"{len(class_names)} class names ({', '.join(class_names)}) for a "
                          f"model of {num_classes} logits; pass one name per logit, in order")

    base = Path(base).absolute()
    model_dir = base / name
    model_dir.mkdir(parents=True, exist_ok=True)
    if version is not None and (model_dir / str(version)).exists():
        raise ExportError(f"version {version} of model '{name}' already exists at "
                          f"{model_dir / str(version)}; omit --version to take the next free "
                          f"one ({next_version(model_dir)}) or delete that folder")
    temporary = model_dir / f".tmp-export-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for signature_name, (function, input_signature) in build_signature_functions(
            model, image_shape, class_names, model_input_dtype
        ).items():
            archive.add_endpoint(signature_name, function, input_signature=input_signature)
        archive.write_out(str(temporary), verbose=False)
        _set_classify_method(temporary)
        (temporary / "assets.extra").mkdir(exist_ok=True)
        with tf.io.TFRecordWriter(str(temporary / WARMUP_FILE)) as writer:
            for record in _warmup_records(name, warmup_images):
                writer.write(record)
        difference = _verify(temporary, model, warmup_images, model_input_dtype)
        trainable, total = _parameter_counts(model)
        metadata = {
            "model_name": name,
            "params": trainable,
            "total_params": total,
            "source": source,
            "image_shape": list(image_shape),
            "class_names": list(class_names),
            "max_abs_logit_difference_at_export": difference,
            "keras_version": keras.__version__,
            "tensorflow_version": tf.__version__,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        }
        if lineage:
            metadata["lineage"] = lineage
        atomic_write_text(temporary / METADATA_FILE, json.dumps(metadata, indent=2) + "\n")
        version_dir = _rename_into_place(temporary, model_dir, version)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    write_models_config(base)
    return version_dir


def _rename_into_place(temporary: Path, model_dir: Path, version: int | None) -> Path:
    """Rename the finished export to its version folder; retry the next number on a race."""
    while True:
        chosen = version if version is not None else next_version(model_dir)
        target = model_dir / str(chosen)
        try:
            os.rename(temporary, target)  # fails if target exists and is not empty
            return target
        except OSError:
            if version is not None or not target.exists():
                raise ExportError(f"cannot move the export to {target}: it already exists or "
                                  "the folder is not writable") from None


def write_models_config(base: str | Path) -> Path:
    """Regenerate `<base>/models.config` and `<base>/models.docker.config` from the disk.

    Every `<base>/<name>/` holding at least one numeric version folder is listed; version
    policies and labels already set in `models.config` for a model are kept.

    Returns:
        The path of `models.config`.
    """
    base = Path(base).absolute()
    previous: dict[str, model_server_config_pb2.ModelConfig] = {}
    if (base / MODELS_CONFIG).is_file():
        try:
            existing = read_model_server_config(base / MODELS_CONFIG)
            previous = {model.name: model for model in existing.model_config_list.config}
        except ModelConfigError:
            previous = {}
    host_config = model_server_config_pb2.ModelServerConfig()
    docker_config = model_server_config_pb2.ModelServerConfig()
    names = sorted(child.name for child in base.iterdir()
                   if child.is_dir() and MODEL_NAME_PATTERN.match(child.name)
                   and versions_on_disk(child))
    for name in names:
        for config, base_path in ((host_config, str(base / name)),
                                  (docker_config, f"{DOCKER_MODEL_ROOT}/{name}")):
            model = config.model_config_list.config.add(
                name=name, base_path=base_path, model_platform="tensorflow")
            if name in previous and previous[name].model_version_policy.WhichOneof(
                    "policy_choice"):
                model.model_version_policy.CopyFrom(previous[name].model_version_policy)
            if name in previous:
                for label, label_version in previous[name].version_labels.items():
                    model.version_labels[label] = label_version
    write_model_server_config(docker_config, base / DOCKER_MODELS_CONFIG)
    return write_model_server_config(host_config, base / MODELS_CONFIG)


def write_batching_parameters(
    base: str | Path, parameters: BatchingParameters = RECOMMENDED_BATCHING
) -> Path:
    """Write `<base>/batching_parameters.txt` (for `--batching-parameters-file`)."""
    return atomic_write_text(Path(base) / BATCHING_PARAMETERS_FILE,
                             format_batching_parameters(parameters.validate()))


def class_names_of_run(run: str | Path) -> list[str]:
    """The class names a run recorded (`<run>/dataset.json`), one per logit in order."""
    from mimic_tf.layout import ExperimentLayout

    path = ExperimentLayout(Path(run)).dataset_file
    try:
        names = json.loads(path.read_text(encoding="utf-8"))["class_names"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ExportError(f"{path}: no class names to read ({error}); pass --run with the run "
                          "folder the student came from, or --class-names") from None
    return [str(name) for name in names]


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags of `python -m serving.export`."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.export",
        description="Export a Keras student as a TF Serving SavedModel and update models.config.",
    )
    parser.add_argument("--model", required=True, type=Path, help="the student .keras file")
    parser.add_argument("--base", required=True, type=Path,
                        help="folder of exported models, e.g. runs/EXP/models")
    parser.add_argument("--name", required=True, help="model name clients ask for")
    parser.add_argument("--version", type=int, help="version number (default: next free)")
    names = parser.add_mutually_exclusive_group(required=True)
    names.add_argument("--run", type=Path,
                       help="the run folder the student came from: its dataset.json names the "
                       "classes, one per logit")
    names.add_argument("--class-names", metavar="NAMES",
                       help="the classes, one per logit in order, comma-separated "
                       "(airplane,automobile,...)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's C++ start-up and runtime log lines")
    parser.add_argument("--write-batching-parameters", action="store_true",
                        help=f"also write <base>/{BATCHING_PARAMETERS_FILE}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, export, print where the model went."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"--model {args.model} does not exist; pass a .keras file")
    if not MODEL_NAME_PATTERN.match(args.name):
        parser.error(f"--name {args.name!r} must be letters, digits, '.', '_' or '-'")
    if args.version is not None and args.version < 1:
        parser.error(f"--version {args.version} must be a positive integer")
    try:
        class_names = (class_names_of_run(args.run) if args.run is not None
                       else [name.strip() for name in args.class_names.split(",")])
        version_dir = export_student(args.model, args.base, args.name, args.version,
                                     class_names=class_names)
    except ExportError as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    if args.write_batching_parameters:
        print(f"batching parameters: {write_batching_parameters(args.base)}")
    metadata = json.loads((version_dir / METADATA_FILE).read_text(encoding="utf-8"))
    print(f"exported '{args.name}' version {version_dir.name} ({metadata['params']:,} params) "
          f"to {version_dir}")
    print(f"model config: {Path(args.base).absolute() / MODELS_CONFIG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
