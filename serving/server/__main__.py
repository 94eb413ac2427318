"""`python -m serving.server`: serve a `models.config` over gRPC (and REST).

    python -m serving.server --model-config runs/EXP/models/models.config \
        [--port 8500] [--rest-port 8501] [--backend auto|embedded|tfserving]

`serving.server.model_server` says what each backend is.
"""
# ruff: noqa: E402 (TensorFlow is imported quietly first when run as a command)

from __future__ import annotations

if __name__ == "__main__":  # before the imports below load TensorFlow: no C++ start-up lines
    from mimic_tf.cli import import_tensorflow_quietly

    import_tensorflow_quietly()

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from serving.model_config import BatchingParameters, ModelConfigError, read_batching_parameters
from serving.server.model_server import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ServerOptions,
    ThreadSettingError,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags of `python -m serving.server`."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.server",
        description="Serve exported students over gRPC (TF Serving's API) and REST.",
    )
    parser.add_argument("--model-config", required=True, type=Path,
                        help="ModelServerConfig text proto, e.g. runs/EXP/models/models.config")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: a free one)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's C++ start-up and runtime log lines")
    parser.add_argument("--rest-port", type=int, default=8501,
                        help="REST port (0: no REST API, as TF Serving)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (embedded only; 0.0.0.0 for every interface)")
    parser.add_argument("--backend", choices=("auto", "embedded", "tfserving"), default="auto")
    parser.add_argument("--file-system-poll-wait-seconds", type=float, default=1.0,
                        help="seconds between scans for new versions (0: once)")
    parser.add_argument("--model-config-poll-wait-seconds", type=float, default=0.0,
                        help="seconds between re-reads of the model config (0: never)")
    parser.add_argument("--enable-batching", action="store_true",
                        help="batch concurrent requests (TF Serving's defaults unless a file)")
    parser.add_argument("--batching-parameters-file", type=Path,
                        help="BatchingParameters text proto; implies --enable-batching")
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="largest gRPC request or response, in bytes")
    parser.add_argument("--max-tensor-elements", type=int,
                        help="elements one input tensor may declare (default: the message "
                        "size limit in bytes)")
    parser.add_argument("--grpc-max-threads", type=int, default=32)
    parser.add_argument("--max-concurrent-requests", type=int, default=0,
                        help="without batching: requests running at once (0: one per core)")
    parser.add_argument("--max-queued-requests", type=int, default=16,
                        help="without batching: requests waiting before UNAVAILABLE")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip assets.extra/tf_serving_warmup_requests")
    parser.add_argument("--tensorflow-intra-op-parallelism", type=int, default=0,
                        metavar="THREADS",
                        help="threads one TensorFlow op may use (0: every core). 1 gives the "
                        "lowest batch-1 latency on a machine with few cores")
    parser.add_argument("--tensorflow-inter-op-parallelism", type=int, default=0,
                        metavar="THREADS",
                        help="threads running independent TensorFlow ops (0: every core)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags and serve (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        batching = None
        if args.batching_parameters_file is not None:
            batching = read_batching_parameters(args.batching_parameters_file)
        elif args.enable_batching:
            batching = BatchingParameters()
        options = ServerOptions(
            model_config_file=args.model_config,
            host=args.host,
            port=args.port,
            rest_port=args.rest_port or None,
            file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
            model_config_file_poll_wait_seconds=args.model_config_poll_wait_seconds,
            batching=batching,
            batching_parameters_file=args.batching_parameters_file,
            max_message_bytes=args.max_message_bytes,
            max_tensor_elements=args.max_tensor_elements,
            grpc_max_threads=args.grpc_max_threads,
            max_concurrent_requests=args.max_concurrent_requests,
            max_queued_requests=args.max_queued_requests,
            enable_model_warmup=not args.no_warmup,
            tensorflow_intra_op_parallelism=args.tensorflow_intra_op_parallelism,
            tensorflow_inter_op_parallelism=args.tensorflow_inter_op_parallelism,
        )
        return serve(options, args.backend)
    except (ModelConfigError, FileNotFoundError, OSError, ThreadSettingError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
