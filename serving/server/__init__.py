"""The model server: TF Serving's gRPC and REST APIs over the models a `models.config` names.

    serving.server.model_server    EmbeddedServer, ServerOptions, serve(), the real
                                   tensorflow_model_server's command; `python -m serving.server`
    serving.server.model_manager   ModelManager: versions loaded per policy, polling, labels
    serving.server.servable        Servable: one loaded version, its checks and warmup
    serving.server.batching        BatchScheduler: server-side batching of concurrent requests
    serving.server.request_checks  request checks in TF Serving's order, before any allocation
    serving.server.admission       client deadlines, the limit on unbatched requests in flight
    serving.server.grpc_services   PredictionService / ModelService servicers (official bases)
    serving.server.rest            TF Serving's REST API
    serving.server.errors          ServingError (a gRPC status code and a message)

May import `serving`'s shared modules (signatures, model_config, tensors) and `mimic_tf.files`;
never `serving.release`, `tuner` or the rest of `mimic_tf`.
"""
