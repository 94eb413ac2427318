"""Export round trip: Keras student -> SavedModel in TF Serving's layout -> same outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from mimic_tf.data.spec import CIFAR10
from mimic_tf.preprocessing import PerImageStandardization
from serving import export
from serving.server.servable import read_signature_defs
from serving.signatures import encode_image_example

IMAGES = np.random.default_rng(7).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)


def tiny_cnn(seed: int = 0) -> keras.Model:
    """uint8 images -> PerImageStandardization -> conv -> BN -> pool -> Dense(10), seeded."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = PerImageStandardization(input_scale=0.5)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", kernel_initializer=init)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, kernel_initializer=init)(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    model = tiny_cnn()
    version_dir = export.export_student(model, base, "cnn", class_names=CIFAR10.class_names)
    return model, base, version_dir


def test_export_layout_and_version(exported):
    _, base, version_dir = exported
    assert version_dir == base / "cnn" / "1"
    assert (version_dir / "saved_model.pb").is_file()
    assert [p.name for p in (base / "cnn").iterdir()] == ["1"], "no temporary folder left"


def test_saved_model_outputs_equal_keras(exported):
    model, _, version_dir = exported
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    outputs = signature(images=tf.constant(IMAGES))
    expected = model(IMAGES, training=False).numpy()
    np.testing.assert_allclose(outputs["logits"].numpy(), expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(outputs["probabilities"].numpy(),
                               tf.nn.softmax(expected).numpy(), atol=1e-5, rtol=0)
    assert outputs["classes"].dtype == tf.int64
    np.testing.assert_array_equal(outputs["classes"].numpy(), np.argmax(expected, axis=1))


def test_signatures_and_classify(exported):
    model, _, version_dir = exported
    signatures = read_signature_defs(version_dir)
    predict, classify = signatures["serving_default"], signatures["classify"]
    assert predict.method_name == "tensorflow/serving/predict"
    assert classify.method_name == "tensorflow/serving/classify"
    images = predict.inputs["images"]
    assert images.dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in images.tensor_shape.dim] == [-1, 32, 32, 3]
    assert {k: v.dtype for k, v in predict.outputs.items()} == {
        "logits": tf.float32.as_datatype_enum, "probabilities": tf.float32.as_datatype_enum,
        "classes": tf.int64.as_datatype_enum}
    assert set(classify.inputs) == {"inputs"} and set(classify.outputs) == {"classes", "scores"}
    loaded = tf.saved_model.load(str(version_dir))
    examples = [encode_image_example(image) for image in IMAGES[:3]]
    result = loaded.signatures["classify"](inputs=tf.constant(examples))
    np.testing.assert_allclose(result["scores"].numpy(),
                               tf.nn.softmax(model(IMAGES[:3], training=False)).numpy(),
                               atol=1e-5)
    assert result["classes"].numpy()[0, 0] == b"airplane"


def test_saved_model_cli_lists_signatures(exported):
    _, _, version_dir = exported
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run([str(cli), "show", "--dir", str(version_dir), "--all"],
                           capture_output=True, text=True, timeout=120, check=True).stdout
    assert "signature_def['serving_default']" in shown
    assert "signature_def['classify']" in shown
    assert "Method name is: tensorflow/serving/classify" in shown


def test_warmup_file_parses(exported):
    _, _, version_dir = exported
    records = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
               for r in tf.data.TFRecordDataset(str(version_dir / export.WARMUP_FILE))]
    kinds = [r.WhichOneof("log_type") for r in records]
    assert kinds == ["predict_log"] * 3 + ["classify_log"]
    request = records[1].predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert [d.size for d in request.inputs["images"].tensor_shape.dim] == [8, 32, 32, 3]
    assert len(records[3].classify_log.request.input.example_list.examples) == 2


def test_metadata_json(exported):
    model, _, version_dir = exported
    metadata = json.loads((version_dir / export.METADATA_FILE).read_text())
    assert metadata["params"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert metadata["total_params"] == model.count_params()
    assert metadata["keras_version"] == keras.__version__


def test_models_config_parses(exported):
    _, base, _ = exported
    config = text_format.Parse((base / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    (entry,) = config.model_config_list.config
    assert (entry.name, entry.base_path, entry.model_platform) == (
        "cnn", str(base / "cnn"), "tensorflow")
    docker = text_format.Parse((base / "models.docker.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    assert docker.model_config_list.config[0].base_path == "/models/cnn"


def test_next_version_explicit_version_and_kept_labels(tmp_path):
    model = tiny_cnn(seed=1)
    assert export.export_student(model, tmp_path, "m", class_names=CIFAR10.class_names).name == "1"
    config_path = tmp_path / "models.config"
    config = text_format.Parse(config_path.read_text(), model_server_config_pb2.ModelServerConfig())
    config.model_config_list.config[0].version_labels["stable"] = 1
    config_path.write_text(text_format.MessageToString(config))
    assert export.export_student(model, tmp_path, "m", class_names=CIFAR10.class_names).name == "2"
    assert export.export_student(model, tmp_path, "m", version=7,
                                 class_names=CIFAR10.class_names).name == "7"
    with pytest.raises(export.ExportError, match="already exists"):
        export.export_student(model, tmp_path, "m", version=2, class_names=CIFAR10.class_names)
    with pytest.raises(export.ExportError, match="not usable"):
        export.export_student(model, tmp_path, "bad name", class_names=CIFAR10.class_names)
    config = text_format.Parse(config_path.read_text(), model_server_config_pb2.ModelServerConfig())
    assert dict(config.model_config_list.config[0].version_labels) == {"stable": 1}
    assert not config.model_config_list.config[0].HasField("model_version_policy")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2", "7"]


def test_cli_exports_a_keras_file(tmp_path, capsys):
    model_path = tmp_path / "student.keras"
    tiny_cnn(seed=2).save(model_path)
    assert export.main(["--model", str(model_path), "--base", str(tmp_path / "models"),
                        "--name", "best", "--version", "3", "--write-batching-parameters",
                        "--class-names", ",".join(CIFAR10.class_names)]) == 0
    out = capsys.readouterr().out
    assert "exported 'best' version 3" in out
    assert (tmp_path / "models" / "best" / "3" / "saved_model.pb").is_file()
    assert "max_batch_size { value: 256 }" in (
        tmp_path / "models" / "batching_parameters.txt").read_text()


@pytest.mark.parametrize("argv, message", [
    ([], "the following arguments are required: --model, --base, --name"),
    (["--model", __file__, "--base", "b", "--name", "n"], "one of the arguments --run "
     "--class-names is required"),
    (["--model", "missing.keras", "--base", "b", "--name", "n", "--class-names", "a,b"],
     "does not exist"),
    (["--model", __file__, "--base", "b", "--name", "n", "--version", "x", "--class-names",
      "a,b"], "invalid int"),
])
def test_cli_usage_error_exits_2(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        export.main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_mixed_precision_student_is_served_in_float32(tmp_path):
    from mimic_tf.students import build_student

    student = build_student("cnn", 2, 1.0e5, seed=0, dtype_policy="mixed_bfloat16", spec=CIFAR10)
    plain = tiny_cnn()
    assert export.float32_copy(plain) is plain  # already float32: exported as it is
    copy = export.float32_copy(student)
    assert {layer.compute_dtype for layer in copy.layers[1:]} == {"float32"}
    # checks to 1e-5
    version_dir = export.export_student(student, tmp_path, "mixed", class_names=CIFAR10.class_names)
    served = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    logits = served(images=tf.constant(IMAGES))["logits"].numpy()
    np.testing.assert_allclose(logits, copy.predict(IMAGES, verbose=0), atol=1e-5)
    np.testing.assert_allclose(logits, student.predict(IMAGES, verbose=0), atol=0.1)


def test_cli_names_a_non_cifar_students_classes_from_its_run(tmp_path, capsys):
    """A 10-class student of another dataset answers Classify with its own class names."""
    model_path = tmp_path / "digits.keras"
    tiny_cnn(seed=2).save(model_path)
    digits = [f"digit {number}" for number in range(10)]
    run = tmp_path / "runs" / "digits"
    run.mkdir(parents=True)
    (run / "dataset.json").write_text(json.dumps({"height": 32, "width": 32, "channels": 3,
                                                  "class_names": digits}))
    assert export.main(["--model", str(model_path), "--base", str(tmp_path / "models"),
                        "--name", "digits", "--run", str(run)]) == 0
    version_dir = tmp_path / "models" / "digits" / "1"
    metadata = json.loads((version_dir / export.METADATA_FILE).read_text())
    assert metadata["class_names"] == digits
    served = tf.saved_model.load(str(version_dir))
    result = served.signatures["classify"](inputs=tf.constant([encode_image_example(IMAGES[0])]))
    assert [name.decode() for name in result["classes"].numpy()[0]] == digits


def test_cli_refuses_names_that_do_not_fit_the_logits(tmp_path, capsys):
    model_path = tmp_path / "student.keras"
    tiny_cnn(seed=2).save(model_path)
    with pytest.raises(SystemExit) as raised:
        export.main(["--model", str(model_path), "--base", str(tmp_path / "models"),
                     "--name", "m", "--class-names", "cat,dog"])
    assert raised.value.code == 1
    error = capsys.readouterr().err
    assert "2 class names (cat, dog) for a model of 10 logits" in error
    assert "Traceback" not in error
    with pytest.raises(SystemExit) as raised:
        export.main(["--model", str(model_path), "--base", str(tmp_path / "models"),
                     "--name", "m", "--run", str(tmp_path / "no-run")])
    assert "no class names to read" in capsys.readouterr().err


def test_a_student_without_an_input_shape_is_refused_not_given_cifars(tmp_path):
    class Unbuilt(keras.Model):  # subclassed and never called: no input shape to export
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(10)

        def call(self, images):
            return self.dense(keras.ops.reshape(images, (-1, 8)))

    with pytest.raises(export.ExportError, match="no input yet"):
        export.export_student(Unbuilt(), tmp_path, "unbuilt", class_names=CIFAR10.class_names)
    assert not (tmp_path / "unbuilt").exists()
