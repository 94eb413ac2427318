"""The model server: the embedded gRPC (+ REST) server, or the real `tensorflow_model_server`.

    serve(ServerOptions(model_config="runs/EXP/models/models.config"), backend="auto")

`auto` runs `tensorflow_model_server` with the equivalent flags when it is on the PATH and the
embedded server otherwise. The embedded server (`EmbeddedServer`) is a grpcio server with the
official `PredictionService` and `ModelService` servicers over a `ModelManager`, plus TF
Serving's REST API; it binds 127.0.0.1 unless told otherwise, loads and warms every model
before it listens, and on SIGTERM stops taking requests, finishes those in flight and exits.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import threading
from concurrent import futures
from pathlib import Path

import grpc

from mimic_tf.files import atomic_write_text
from serving.model_config import (
    BATCHING_PARAMETERS_FILE,
    BatchingParameters,
    format_batching_parameters,
    read_model_server_config,
)
from serving.server.admission import ConcurrencyLimit
from serving.server.grpc_services import add_services
from serving.server.model_manager import ModelManager
from serving.server.request_checks import RequestLimits
from serving.server.rest import RestServer

logger = logging.getLogger(__name__)

TFSERVING_BINARY = "tensorflow_model_server"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a 20k-image uint8 batch; raise for more


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """Everything the server is started with (the CLI flags, as data)."""

    model_config_file: Path
    host: str = "127.0.0.1"  # 0.0.0.0 to listen on every interface
    port: int = 8500  # gRPC; 0 picks a free port
    rest_port: int | None = 8501  # None: no REST API; 0 picks a free port
    file_system_poll_wait_seconds: float = 1.0  # scan for new versions; 0: once, at start
    model_config_file_poll_wait_seconds: float = 0.0  # re-read models.config; 0: never
    batching: BatchingParameters | None = None  # None: no server-side batching (TF default)
    batching_parameters_file: Path | None = None  # where `batching` came from, if a file
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES  # gRPC send/receive limit
    # Elements one input tensor may declare; None: max_message_bytes (an honest request
    # spends at least a byte per element). Above it: INVALID_ARGUMENT, nothing allocated.
    max_tensor_elements: int | None = None
    grpc_max_threads: int = 32  # concurrent RPC handlers
    # Without batching: requests running at once (0: one per core) and waiting for a slot;
    # one more is answered UNAVAILABLE at once. Keep running + waiting < grpc_max_threads so
    # refusals are quick. gRPC itself refuses (RESOURCE_EXHAUSTED) beyond 4 x grpc_max_threads
    # RPCs in flight, batching or not.
    max_concurrent_requests: int = 0
    max_queued_requests: int = 16
    enable_model_warmup: bool = True  # replay assets.extra/tf_serving_warmup_requests
    grace_period_s: float = 30.0  # how long SIGTERM waits for requests in flight
    # Threads TensorFlow runs one op on (intra) and independent ops on (inter); 0 lets
    # TensorFlow choose (every core), as TF Serving's --tensorflow_*_parallelism flags.
    # With few cores shared with the gRPC threads, intra-op 1 cuts batch-1 latency.
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0


class ThreadSettingError(ValueError):
    """TensorFlow thread counts that are invalid or can no longer be applied."""


def configure_tensorflow_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """Set TensorFlow's intra- and inter-op thread counts (0: leave TensorFlow's choice).

    Raises:
        ThreadSettingError: a count is negative, or TensorFlow already runs in this process with
            other counts (they are fixed once it starts: start the server in its own process).
    """
    import tensorflow as tf

    for name, value, getter, setter in (
        ("intra", intra_op, tf.config.threading.get_intra_op_parallelism_threads,
         tf.config.threading.set_intra_op_parallelism_threads),
        ("inter", inter_op, tf.config.threading.get_inter_op_parallelism_threads,
         tf.config.threading.set_inter_op_parallelism_threads),
    ):
        flag = f"--tensorflow-{name}-op-parallelism"
        if value < 0:
            raise ThreadSettingError(f"{flag} is {value}; give a thread count, or 0 for "
                                     "TensorFlow's choice")
        if value == 0 or getter() == value:
            continue
        try:
            setter(value)
        except RuntimeError:
            raise ThreadSettingError(
                f"{flag} {value}: TensorFlow already runs in this process with its own thread "
                "counts, which cannot change once it starts; run the server in its own process "
                "(python -m serving.server) or leave the flag at 0"
            ) from None


def tensorflow_threads() -> str:
    """TensorFlow's thread settings in this process, as the ready line prints them."""
    import tensorflow as tf

    intra = tf.config.threading.get_intra_op_parallelism_threads() or "auto"
    inter = tf.config.threading.get_inter_op_parallelism_threads() or "auto"
    return f"intra_op_threads={intra} inter_op_threads={inter}"


class EmbeddedServer:
    """The in-process TF Serving stand-in: gRPC on `port`, REST on `rest_port`.

        with EmbeddedServer(ServerOptions(Path("models/models.config"), port=0)) as server:
            client = ServingClient(server.target)
    """

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.limits = RequestLimits.from_message_bytes(options.max_message_bytes,
                                                       options.max_tensor_elements)
        self.concurrency = None if options.batching is not None else ConcurrencyLimit(
            options.max_concurrent_requests or os.cpu_count() or 1,
            options.max_queued_requests, name="the server")
        self.manager = ModelManager(
            read_model_server_config(options.model_config_file),
            poll_interval_s=options.file_system_poll_wait_seconds,
            batching=options.batching,
            enable_warmup=options.enable_model_warmup,
            config_path=options.model_config_file,
            config_poll_interval_s=options.model_config_file_poll_wait_seconds,
            concurrency=self.concurrency,
        )
        self._grpc_server: grpc.Server | None = None
        self._rest_server: RestServer | None = None
        self.port: int | None = None
        self.rest_port: int | None = None
        self._stopped = threading.Event()

    @property
    def target(self) -> str:
        """The `host:port` clients connect to over gRPC."""
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "") else self.options.host
        return f"{host}:{self.port}"

    def start(self) -> EmbeddedServer:
        """Load and warm up the models, then listen. Returns self."""
        configure_tensorflow_threads(self.options.tensorflow_intra_op_parallelism,
                                     self.options.tensorflow_inter_op_parallelism)
        self.manager.start()
        limit = self.options.max_message_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.options.grpc_max_threads,
                                       thread_name_prefix="grpc-handler"),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=4 * self.options.grpc_max_threads,
        )
        add_services(server, self.manager, self.limits)
        address = f"{self.options.host}:{self.options.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        if not port:
            self.manager.stop()
            raise OSError(f"cannot bind gRPC to {address}: the port is in use or the address is "
                          "not local; pick another --port (0 picks a free one)")
        self.port = port
        server.start()
        self._grpc_server = server
        if self.options.rest_port is not None:
            try:
                self._rest_server = RestServer(self.manager, self.options.host,
                                               self.options.rest_port, limit).start()
            except OSError as error:
                self.stop(grace_s=0)
                raise OSError(f"cannot bind REST to {self.options.host}:"
                              f"{self.options.rest_port}: {error}; pick another --rest-port "
                              "(0 disables REST)") from None
            self.rest_port = self._rest_server.port
        logger.info("serving %s: gRPC on %s, REST on %s", ", ".join(self.manager.model_names),
                    self.target, self.rest_port)
        return self

    def stop(self, grace_s: float | None = None) -> None:
        """Refuse new requests, let those in flight finish (up to `grace_s`), then shut down."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace_s = self.options.grace_period_s if grace_s is None else grace_s
        if self._rest_server is not None:
            self._rest_server.stop()
        if self._grpc_server is not None:
            self._grpc_server.stop(grace_s).wait()
        self.manager.stop()

    def wait(self) -> None:
        """Block until `stop` has been called."""
        self._stopped.wait()

    def __enter__(self) -> EmbeddedServer:
        return self.start() if self.port is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop(grace_s=1.0)


def tfserving_command(options: ServerOptions, binary: str = TFSERVING_BINARY) -> list[str]:
    """The `tensorflow_model_server` command line equivalent to `options`.

    The real binary listens on every interface (it has no bind-address flag); when the
    options say loopback only, run it in a container published on 127.0.0.1 (see the docs).
    """
    def whole_seconds(seconds: float) -> int:  # the binary takes integers; 0 keeps its meaning
        return max(1, round(seconds)) if seconds > 0 else 0

    command = [
        binary,
        f"--port={options.port}",
        f"--rest_api_port={options.rest_port or 0}",
        f"--model_config_file={Path(options.model_config_file).absolute()}",
        f"--file_system_poll_wait_seconds={whole_seconds(options.file_system_poll_wait_seconds)}",
        f"--model_config_file_poll_wait_seconds="
        f"{whole_seconds(options.model_config_file_poll_wait_seconds)}",
        f"--grpc_max_threads={options.grpc_max_threads}",
        f"--grpc_channel_arguments=grpc.max_receive_message_length={options.max_message_bytes},"
        f"grpc.max_send_message_length={options.max_message_bytes}",
        f"--enable_model_warmup={'true' if options.enable_model_warmup else 'false'}",
    ]
    for name in ("intra", "inter"):
        threads = getattr(options, f"tensorflow_{name}_op_parallelism")
        if threads:
            command.append(f"--tensorflow_{name}_op_parallelism={threads}")
    if options.batching is not None:
        command.append("--enable_batching=true")
        if options.batching_parameters_file is not None:
            command.append(f"--batching_parameters_file="
                           f"{Path(options.batching_parameters_file).absolute()}")
    return command


def _batching_file_for(options: ServerOptions) -> ServerOptions:
    """Write the batching parameters to a file when the real binary needs one."""
    if options.batching is None or options.batching_parameters_file is not None:
        return options
    path = Path(options.model_config_file).absolute().parent / BATCHING_PARAMETERS_FILE
    atomic_write_text(path, format_batching_parameters(options.batching))
    return dataclasses.replace(options, batching_parameters_file=path)


def serve(options: ServerOptions, backend: str = "auto") -> int:
    """Run a server until SIGTERM or SIGINT; return the exit status.

    Args:
        backend: `embedded`, `tfserving` (the real binary, which must be on the PATH), or
            `auto` (the real binary when on the PATH, else embedded).
    """
    binary = shutil.which(TFSERVING_BINARY)
    if backend == "tfserving" and binary is None:
        raise FileNotFoundError(
            f"{TFSERVING_BINARY} is not on the PATH; install it or run it in Docker "
            "(docs/serving.md), or use --backend embedded"
        )
    if backend in ("tfserving", "auto") and binary is not None:
        command = tfserving_command(_batching_file_for(options), binary)
        print("exec:", " ".join(command), flush=True)
        os.execv(binary, command)
    server = EmbeddedServer(options).start()
    stop_requested = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    print(f"mimic-tf embedded server ready: models={','.join(server.manager.model_names)} "
          f"grpc={server.target} rest={server.rest_port} "
          f"{tensorflow_threads()}", flush=True)
    while not stop_requested.wait(0.5):
        pass
    print("stopping: draining requests in flight", flush=True)
    server.stop()
    return 0
