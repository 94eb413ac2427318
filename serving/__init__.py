"""Serving exported students: SavedModel export, a TF Serving-compatible server, the release.

Two systems, a folder each, and the contract they share (import the module you need; nothing
is imported or started here):

    serving.export          export_student(): Keras student -> <base>/<name>/<version>/
    serving.signatures      the exported signatures (names, dtypes, shapes), tf.Example encoding
    serving.model_config    models.config (ModelServerConfig) and batching parameters files
    serving.tensors         TensorProto <-> numpy
    serving.client          ServingClient over the official stubs
    serving.compare         accuracy / latency / throughput of served models, the CLI

    serving/server/         the model server (`python -m serving.server`): TF Serving's role
    serving/release/        TFX's release of a student (`python -m serving.release`):
                            infra validation, evaluation, push into a serving base, labels

The server knows nothing of releases; the release runs the server as a sandbox and writes the
serving base that a server then follows.
"""

import mimic_tf  # noqa: F401  (sets oneDNN's default before a module here loads TensorFlow)
