"""Compare served models over the wire: accuracy, logit agreement, latency and throughput.

    python -m serving.compare --target localhost:8500 --model-config runs/EXP/models/models.config \
        [--models a,b|all] [--config CONFIG] [--data auto|synthetic|tfds:NAME|folder:PATH] \
        [--out DIR]

The test split is the run's own: its `data` section (source, classes, image size, test size)
is read from the run's resolved `config.yaml` two folders above `models.config`, or from
`--config`; `--data` swaps only the source. Without either, CIFAR-10's defaults.

For each served model (the version the server reports as latest AVAILABLE): accuracy on the
test split over gRPC and in process (the same SavedModel loaded with `tf.saved_model.load`,
signature called directly, same batches), the max |served - in-process| logit, latency
p50/p95/p99 at batch 1 after warmup, and throughput (images/s) at batch 1, 32, 256 and
concurrency 1 and 8. Writes `comparison.csv`, `comparison.md` and `comparison.png`
(accuracy against p50 latency, marker size = parameters) and prints the table.
"""
# ruff: noqa: E402 (TensorFlow is imported quietly first when run as a command)

from __future__ import annotations

if __name__ == "__main__":  # before the imports below load TensorFlow: no C++ start-up lines
    from mimic_tf.cli import import_tensorflow_quietly

    import_tensorflow_quietly()

import argparse
import csv
import dataclasses
import io
import json
import os
import platform
import shlex
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np
import tensorflow as tf

from mimic_tf.files import atomic_write_bytes, atomic_write_text
from mimic_tf.layout import ExperimentLayout
from serving.client import ServingClient, predict_request, run_closed_loop
from serving.model_config import ModelConfigError, model_entries, read_model_server_config
from serving.signatures import IMAGES_INPUT, LOGITS_OUTPUT, METADATA_FILE, PREDICT_SIGNATURE

if TYPE_CHECKING:
    from mimic_tf.config import DataConfig

THROUGHPUT_BATCH_SIZES = (1, 32, 256)
THROUGHPUT_CONCURRENCIES = (1, 8)


@dataclasses.dataclass
class ModelComparison:
    """One served model measured over gRPC and in process."""

    model: str
    version: int
    params: int
    examples: int
    accuracy_grpc: float
    accuracy_in_process: float
    max_abs_logit_diff: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    throughput: dict[tuple[int, int], float]  # (batch size, concurrency) -> images/s

    @property
    def accuracy_match(self) -> bool:
        """Whether the served accuracy equals the in-process one exactly."""
        return self.accuracy_grpc == self.accuracy_in_process

    def row(self) -> dict[str, object]:
        """The flat CSV row."""
        row: dict[str, object] = {
            "model": self.model, "version": self.version, "params": self.params,
            "examples": self.examples, "accuracy_grpc": self.accuracy_grpc,
            "accuracy_in_process": self.accuracy_in_process,
            "accuracy_match": self.accuracy_match,
            "max_abs_logit_diff": self.max_abs_logit_diff,
            "latency_p50_ms": self.latency_p50_ms, "latency_p95_ms": self.latency_p95_ms,
            "latency_p99_ms": self.latency_p99_ms,
        }
        for (batch_size, concurrency), value in sorted(self.throughput.items()):
            row[f"throughput_b{batch_size}_c{concurrency}"] = value
        return row


DEFAULT_MODEL_CONFIG = Path("runs/default/models/models.config")  # `tuner.run` exports here

def percentiles_ms(seconds: Sequence[float]) -> tuple[float, float, float]:
    """p50, p95 and p99 of durations in seconds, in milliseconds."""
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1e3, [50, 95, 99])
    return float(p50), float(p95), float(p99)


def parameter_count(saved_model_dir: str | Path, loaded=None) -> int:
    """Trainable parameters: from `assets.extra/mimic_tf.json`, else the SavedModel's
    trainable variables."""
    metadata_path = Path(saved_model_dir) / METADATA_FILE
    if metadata_path.is_file():
        return int(json.loads(metadata_path.read_text(encoding="utf-8"))["params"])
    loaded = loaded if loaded is not None else tf.saved_model.load(str(saved_model_dir))
    variables = getattr(loaded, "trainable_variables", None) or getattr(loaded, "variables", [])
    return int(sum(np.prod(variable.shape) for variable in variables))


def _batches(count: int, batch_size: int):
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


def served_and_in_process_logits(
    client: ServingClient, name: str, signature, images: np.ndarray, batch_size: int = 256,
    version: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The logits of `images` served over gRPC and from the SavedModel's `signature` in process,
    the same batches of `batch_size` on both sides."""
    served_logits, local_logits = [], []
    for rows in _batches(len(images), batch_size):
        served_logits.append(client.predict(name, images[rows], version=version,
                                            output_filter=[LOGITS_OUTPUT])[LOGITS_OUTPUT])
        local = signature(**{IMAGES_INPUT: tf.constant(images[rows])})
        local_logits.append(local[LOGITS_OUTPUT].numpy())
    return np.concatenate(served_logits), np.concatenate(local_logits)


def batch1_durations(client: ServingClient, names: Sequence[str], images: np.ndarray,
                     requests: int = 1000, warmup: int = 50,
                     version: int | None = None) -> dict[str, list[float]]:
    """Seconds of sequential batch-1 `Predict` calls per model after `warmup` calls, the models'
    calls interleaved so that every model meets the same machine load."""
    prepared = {name: [predict_request(name, images[index % len(images)][None], version=version,
                                       output_filter=[LOGITS_OUTPUT]) for index in range(64)]
                for name in names}
    durations: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + requests):
        for name in names:
            started = time.perf_counter()
            client.prediction.Predict(prepared[name][index % 64], timeout=client.timeout_s)
            if index >= warmup:
                durations[name].append(time.perf_counter() - started)
    return durations


def interleaved_throughput(client: ServingClient, names: Sequence[str], images: np.ndarray,
                           batch_size: int = 32, requests: int = 20, warmup: int = 2,
                           version: int | None = None) -> dict[str, float]:
    """Images/s of sequential `Predict` calls of `batch_size` images per model, the models'
    calls interleaved round-robin (after `warmup` untimed calls each at that batch size)."""
    batch = np.resize(images, (batch_size, *images.shape[1:])).astype(images.dtype)
    prepared = {name: predict_request(name, batch, version=version,
                                      output_filter=[LOGITS_OUTPUT]) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    for index in range(warmup + requests):
        for name in names:
            started = time.perf_counter()
            client.prediction.Predict(prepared[name], timeout=client.timeout_s)
            if index >= warmup:
                seconds[name] += time.perf_counter() - started
    return {name: requests * batch_size / max(seconds[name], 1e-9) for name in names}


def measure_latency(client: ServingClient, name: str, version: int, images: np.ndarray,
                    requests: int = 1000, warmup: int = 50) -> tuple[float, float, float]:
    """p50/p95/p99 ms of sequential batch-1 `Predict` calls, after `warmup` calls."""
    durations = batch1_durations(client, [name], images, requests, warmup, version=version)
    return percentiles_ms(durations[name])


def measure_throughput(client: ServingClient, name: str, version: int, images: np.ndarray,
                       batch_size: int, concurrency: int, seconds: float = 2.0) -> float:
    """Images per second with `concurrency` callers each sending batches of `batch_size`."""
    batch = np.resize(images, (batch_size, *images.shape[1:])).astype(np.uint8)
    request = predict_request(name, batch, version=version, output_filter=[LOGITS_OUTPUT])
    for _ in range(2):  # warm the path for this batch size
        client.prediction.Predict(request, timeout=client.timeout_s)
    try:
        requests, elapsed = run_closed_loop(client, request, concurrency=concurrency,
                                            seconds=seconds)
    except RuntimeError as error:
        raise RuntimeError(f"throughput run (batch {batch_size}, concurrency {concurrency}) "
                           f"of '{name}' failed: {error}") from error
    return requests * batch_size / elapsed


def compare_model(
    client: ServingClient,
    name: str,
    base_path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    accuracy_batch_size: int = 256,
    latency_requests: int = 1000,
    throughput_seconds: float = 2.0,
    batch_sizes: Sequence[int] = THROUGHPUT_BATCH_SIZES,
    concurrencies: Sequence[int] = THROUGHPUT_CONCURRENCIES,
) -> ModelComparison:
    """Measure one served model against the same SavedModel run in process."""
    version = client.wait_until_available(name)
    saved_model_dir = Path(base_path) / str(version)
    loaded = tf.saved_model.load(str(saved_model_dir))
    signature = loaded.signatures[PREDICT_SIGNATURE]
    served, local = served_and_in_process_logits(client, name, signature, images,
                                                 accuracy_batch_size, version=version)
    labels = np.asarray(labels).reshape(-1)
    p50, p95, p99 = measure_latency(client, name, version, images, latency_requests)
    throughput = {
        (batch_size, concurrency): measure_throughput(client, name, version, images,
                                                      batch_size, concurrency,
                                                      throughput_seconds)
        for batch_size in batch_sizes for concurrency in concurrencies
    }
    return ModelComparison(
        model=name,
        version=version,
        params=parameter_count(saved_model_dir, loaded),
        examples=len(images),
        accuracy_grpc=float(np.mean(np.argmax(served, axis=1) == labels)),
        accuracy_in_process=float(np.mean(np.argmax(local, axis=1) == labels)),
        max_abs_logit_diff=float(np.max(np.abs(served - local))) if len(images) else 0.0,
        latency_p50_ms=p50, latency_p95_ms=p95, latency_p99_ms=p99,
        throughput=throughput,
    )


def compare_models(
    target: str,
    model_config: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    models: Sequence[str] | None = None,
    **measure_options,
) -> list[ModelComparison]:
    """Compare the served models named in `models` (all of `model_config` when None).

    `measure_options` go to `compare_model` (batch sizes, request counts, durations).
    """
    entries = {entry.name: entry for entry in model_entries(read_model_server_config(
        model_config))}
    names = list(entries) if not models else list(models)
    unknown = [name for name in names if name not in entries]
    if unknown:
        raise ModelConfigError(f"models {unknown} are not in {model_config}; it lists "
                               f"{sorted(entries)}")
    with ServingClient(target) as client:
        return [compare_model(client, name, entries[name].base_path, images, labels,
                              **measure_options) for name in names]


def format_table(results: Sequence[ModelComparison]) -> str:
    """The results as a markdown table."""
    if not results:
        return "(no models)\n"
    keys = sorted(results[0].throughput)
    header = ["model", "version", "params", "acc gRPC", "acc in-process", "match",
              "max abs logit diff", "p50 ms", "p95 ms", "p99 ms"]
    header += [f"img/s b{batch} c{conc}" for batch, conc in keys]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        cells = [result.model, str(result.version), f"{result.params:,}",
                 f"{result.accuracy_grpc:.4f}", f"{result.accuracy_in_process:.4f}",
                 "yes" if result.accuracy_match else "NO", f"{result.max_abs_logit_diff:.2e}",
                 f"{result.latency_p50_ms:.3f}", f"{result.latency_p95_ms:.3f}",
                 f"{result.latency_p99_ms:.3f}"]
        cells += [f"{result.throughput[key]:,.0f}" for key in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _figure_png(results: Sequence[ModelComparison], title: str) -> bytes:
    """Accuracy against batch-1 p50 latency (left) and against the largest batched throughput
    measured (right); one colour per model, named with its parameters in the legend."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, NullFormatter

    figure = Figure(figsize=(11, 4.8))
    FigureCanvasAgg(figure)
    latency_axes, throughput_axes = figure.subplots(1, 2, sharey=True)
    batched = max((key for result in results for key in result.throughput), default=None)
    colours = colormaps["tab10" if len(results) <= 10 else "tab20"]
    largest = max((result.params for result in results), default=1) or 1
    for index, result in enumerate(results):
        style = {"s": 40 + 200 * result.params / largest, "alpha": 0.75,
                 "color": colours(index % colours.N), "edgecolors": "black", "linewidths": 0.5}
        latency_axes.scatter(result.latency_p50_ms, result.accuracy_grpc,
                             label=f"{result.model} ({result.params:,} params)", **style)
        if batched is not None and batched in result.throughput:
            throughput_axes.scatter(result.throughput[batched], result.accuracy_grpc, **style)
    latency_axes.set_xlabel("p50 latency, batch 1, one caller (ms)")
    latency_axes.set_ylabel("test accuracy over gRPC")
    if batched is not None:
        throughput_axes.set_xscale("log")
        throughput_axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
        throughput_axes.xaxis.set_minor_formatter(NullFormatter())
        throughput_axes.set_xlabel(f"throughput, batch {batched[0]}, {batched[1]} callers "
                                   "(images/s, log)")
    for axes in (latency_axes, throughput_axes):
        axes.grid(alpha=0.3, which="both")
    if results:
        figure.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                      markerscale=0.6, frameon=False)
    figure.suptitle(title, fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_line() -> str:
    """The machine and versions measured on, for the headers of results."""
    return (f"{_cpu_name()}, {os.cpu_count()} CPUs, {platform.system()}; Python "
            f"{platform.python_version()}, TensorFlow {tf.__version__}, grpcio {grpc.__version__}")


def write_comparison(results: Sequence[ModelComparison], out_dir: str | Path, *,
                     command: str, data: str) -> dict[str, Path]:
    """Write `comparison.csv`, `comparison.md` and `comparison.png` into `out_dir` (an
    experiment folder: the files `ExperimentLayout` names)."""
    layout = ExperimentLayout(Path(out_dir))
    rows = [result.row() for result in results]
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    markdown = (
        "# Served students: accuracy and latency over gRPC\n\n"
        f"Command: `{command}`  \nMachine: {environment_line()}  \nData: {data}  \n"
        "Runs: 1. Latency: batch 1, sequential, after warmup; throughput in images/s "
        "(b = images per request, c = concurrent callers).\n\n" + format_table(results)
    )
    title = "\n".join(["Served students: accuracy against latency and throughput over gRPC",
                       *textwrap.wrap(f"{command} | {data} | {environment_line()} | 1 run", 150)])
    return {
        "csv": atomic_write_text(layout.comparison_csv, buffer.getvalue()),
        "md": atomic_write_text(layout.comparison_md, markdown),
        "png": atomic_write_bytes(layout.comparison_png, _figure_png(results, title)),
    }


def comparison_data_config(model_config: Path, config: str | None = None
                           ) -> tuple[DataConfig, str]:
    """The `DataConfig` whose test split the comparison uses, and where it came from.

    `config` (a YAML path or a shipped config's name) wins; else the run's resolved
    `config.yaml` two folders above `models.config` (`runs/EXP/models/models.config`); else
    CIFAR-10's defaults.
    """
    from mimic_tf.config import DataConfig, load_config

    if config is not None:
        return load_config(config).data, f"data section of {config}"
    run_config = model_config.absolute().parent.parent / "config.yaml"
    if run_config.is_file():
        return load_config(run_config).data, f"data section of {run_config}"
    return DataConfig(), "default data section"


def build_parser() -> argparse.ArgumentParser:
    """The command-line flags of `python -m serving.compare`."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.compare",
        description="Compare served models' accuracy, latency and throughput over gRPC.",
    )
    parser.add_argument("--target", default="localhost:8500", help="gRPC host:port")
    parser.add_argument("--model-config", type=Path, default=DEFAULT_MODEL_CONFIG,
                        help="the models.config the server serves (locates each SavedModel "
                             f"for the in-process comparison; default: {DEFAULT_MODEL_CONFIG})")
    parser.add_argument("--models", default="all", help="comma-separated names, or 'all'")
    parser.add_argument("--config",
                        help="the experiment config whose data section gives the test split "
                             "(default: the run's config.yaml two folders above "
                             "--model-config, else CIFAR-10's defaults)")
    parser.add_argument("--data",
                        help="override the data source: auto, synthetic, tfds:NAME, "
                             "folder:PATH (default: the config's)")
    parser.add_argument("--out", type=Path,
                        help="output folder (default: the folder above models.config)")
    parser.add_argument("--limit", type=int, help="use only the first N test images")
    parser.add_argument("--latency-requests", type=int, default=1000,
                        help="batch-1 requests timed per model (at least 1000 for the report)")
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's C++ start-up and runtime log lines")
    parser.add_argument("--throughput-seconds", type=float, default=2.0,
                        help="duration of each throughput run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, load the test split, compare, write and print the table."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.model_config.is_file():
        parser.error(f"--model-config {args.model_config} does not exist: pass the "
                     "models.config your server serves (`python -m tuner.run` writes "
                     "runs/<experiment>/models/models.config)")
    if args.latency_requests < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--latency-requests and --limit must be positive")
    from mimic_tf.config import ConfigError  # imported here: serving runs without mimic_tf
    from mimic_tf.data import DataError, load_splits

    try:
        data_config, data_origin = comparison_data_config(args.model_config, args.config)
        splits = load_splits(data_config, source=args.data)
    except (ConfigError, DataError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    images, labels = splits.test_images, splits.test_labels
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    models = None if args.models == "all" else [m for m in args.models.split(",") if m]
    try:
        results = compare_models(args.target, args.model_config, images, labels, models,
                                 latency_requests=args.latency_requests,
                                 throughput_seconds=args.throughput_seconds)
    except ModelConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    out_dir = args.out or args.model_config.absolute().parent.parent
    command = "python -m serving.compare " + " ".join(
        shlex.quote(arg) for arg in (sys.argv[1:] if argv is None else argv))
    paths = write_comparison(results, out_dir, command=command,
                             data=f"{getattr(splits, 'source', args.data)} "
                                  f"({data_origin}), {len(images)} test images")
    print(format_table(results), end="")
    print(f"wrote {paths['csv']}, {paths['md']}, {paths['png']}")
    return 0 if all(result.accuracy_match for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
