"""Serving exported students: SavedModel export, a TF Serving-compatible server, a client.

Modules (import the one you need; nothing else is imported or started here):

    serving.export          export_student(): Keras student -> <base>/<name>/<version>/
    serving.signatures      the exported signatures (names, dtypes, shapes), tf.Example encoding
    serving.model_config    models.config (ModelServerConfig) and batching parameters files
    serving.model_manager   ModelManager: versions loaded per policy, polling, labels, status
    serving.servable        Servable: one loaded version, request checks, warmup
    serving.batching        BatchScheduler: server-side batching of concurrent requests
    serving.validation      request checks in TF Serving's order, before any allocation
    serving.admission       client deadlines, the limit on unbatched requests in flight
    serving.grpc_services   PredictionService / ModelService servicers (official base classes)
    serving.rest            TF Serving's REST API
    serving.server          EmbeddedServer, the real tensorflow_model_server's command, the CLI
    serving.client          ServingClient over the official stubs
    serving.compare         accuracy / latency / throughput of served models, the CLI
    serving.infra_validation  SandboxServer, validate_candidate (INFRA_BLESSED or not)
    serving.evaluator       served metrics, value and change thresholds, the blessing
    serving.model_base      the serving base: atomic push, canary/stable labels, promote, rollback
    serving.gate            release_candidate: infra validation -> evaluation -> push
    serving.release         python -m serving.release push|promote|rollback|status
    serving.tensors         TensorProto <-> numpy
    serving.errors          ServingError (a gRPC status code and a message)
"""

import mimic_tf  # noqa: F401  (sets oneDNN's default before a module here loads TensorFlow)
