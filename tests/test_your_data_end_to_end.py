"""Your teacher, your data, end to end: data other than CIFAR-10 through the whole main job.

Each case is an ImageFolder tree of its own shape and class count (three of made-up images,
and scikit-learn's real 8x8 grayscale digits with no test/ part) and a Keras teacher made
outside the project for it. `tuner.run` checks the teacher against the data, builds the
transfer set, runs one student trial and exports the student; the embedded server then
answers Predict and Classify with the dataset's class count and names, and
`serving.compare` reads the test split of the run's own data section from its config.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from image_trees import write_colour_tree, write_digits_tree
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from mimic_tf import data
from mimic_tf.config import load_config, resolve_config_path
from mimic_tf.data.spec import DatasetSpec
from serving import compare
from serving.model_config import model_entries, read_model_server_config
from serving.server.model_server import EmbeddedServer, ServerOptions
from serving.signatures import encode_image_example
from tuner import run


def users_teacher(shape: tuple[int, int, int], classes: int) -> keras.Model:
    """A teacher as a user would bring it: uint8 pixels in (rescaled inside), logits out."""
    images = keras.Input(shape, dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(images)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(images, keras.layers.Dense(classes)(x))


CASES = {
    # name: (family, image shape, class names, data keys)
    "8x8x1-3-classes": ("cnn", (8, 8, 1), ("circle", "square", "star"),
                        {"validation_size": 12}),
    "24x24x3-5-classes": ("mlp", (24, 24, 3), ("a", "b", "c", "d", "e"),
                          {"validation_size": 15}),
    "48x48x3-10-classes": ("cnn", (48, 48, 3), tuple(f"class{i}" for i in range(10)),
                           {"validation_size": 30}),
    "digits": ("mlp", (8, 8, 1), tuple("0123456789"),
               {"validation_size": 60, "test_size": 60}),
}


def write_case(root: Path, name: str) -> str:
    """The case's ImageFolder tree under `root`; returns its `folder:` source."""
    _, (height, width, channels), classes, _ = CASES[name]
    if name == "digits":
        write_digits_tree(root, limit=360)
    else:
        write_colour_tree(root, {label: (height, width) for label in classes}, per_class=12,
                          channels=channels)
    return f"folder:{root}"


def case_config(tmp_path: Path, name: str, source: str) -> Path:
    """configs/smoke.yaml on the case's data: one trial of one epoch a search."""
    settings = yaml.safe_load(resolve_config_path("smoke").read_text())
    settings["name"] = "yours"
    settings["data"] = {"source": source, **CASES[name][3]}
    settings["search"]["trials"] = 1
    path = tmp_path / "yours.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.mark.parametrize("name", list(CASES))
def test_your_teacher_and_data_through_the_main_job_the_server_and_compare(
        name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    family, shape, classes, _ = CASES[name]
    source = write_case(tmp_path / "tree", name)
    config_path = case_config(tmp_path, name, source)
    users_teacher(shape, len(classes)).save(tmp_path / "teacher.keras")

    status = run.main(["--family", family, "--depths", "1", "--config", str(config_path),
                       "--teacher", str(tmp_path / "teacher.keras"),
                       "--out", str(tmp_path / "runs"), "--no-frontier", "--quiet"])
    assert status == 0, capsys.readouterr().err
    run_dir = tmp_path / "runs" / "yours"
    spec = DatasetSpec.from_dict(json.loads((run_dir / "dataset.json").read_text()))
    assert spec == DatasetSpec(*shape, classes)
    teacher = json.loads((run_dir / "teacher" / "teacher.json").read_text())
    assert 0.0 <= teacher["ensemble"]["test_accuracy"] <= 1.0

    models_config = run_dir / "models" / "models.config"
    (model_name, _), = [(entry.name, entry.base_path) for entry in
                        model_entries(read_model_server_config(models_config))]
    splits = data.load_splits(load_config(run_dir / "config.yaml").data)
    images = splits.test_images[:4]
    options = ServerOptions(models_config, port=0, rest_port=0,
                            file_system_poll_wait_seconds=0)
    with EmbeddedServer(options) as server:
        channel = grpc.insecure_channel(server.target)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
        logits = tf.make_ndarray(stub.Predict(request, timeout=30).outputs["logits"])
        assert logits.shape == (len(images), len(classes))

        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name, classify.model_spec.signature_name = model_name, "classify"
        for image in images:
            classify.input.example_list.examples.add().ParseFromString(
                encode_image_example(image))
        result = stub.Classify(classify, timeout=30).result
        assert [[c.label for c in r.classes] for r in result.classifications] == \
            [list(classes)] * len(images)
        scores = [[c.score for c in r.classes] for r in result.classifications]
        np.testing.assert_allclose(scores, tf.nn.softmax(logits).numpy(), atol=1e-5)
        channel.close()

        status = compare.main(["--target", server.target, "--model-config",
                               str(models_config), "--out", str(tmp_path / "compare"),
                               "--latency-requests", "5", "--throughput-seconds", "0.1"])
    assert status == 0  # served and in-process accuracy agree on the run's own test split
    report = (tmp_path / "compare" / "comparison.md").read_text()
    assert f"data section of {run_dir.absolute() / 'config.yaml'}" in report
    assert f"{len(splits.test_labels)} test images" in report
