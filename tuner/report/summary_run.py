"""The report as a TensorBoard run, `logs/summary/`: the results table and the figures.

`tensorboard --logdir runs/<experiment>` lists it as `logs/summary`, beside the runs of the
searches (`logs/<cell>/<trial>/train`, `.../validation`, and the trial's HParams session at
`logs/<cell>/<trial>`), so the result sits where the curves are:

    TEXT     Results/table                results.md: Table 2, the hard-label baselines, the
                                          teacher, how it was made
    IMAGES   Results/Figure 1             figure.png: test accuracy against parameters
             Results/served comparison    comparison.png: the served students
                                          (`serving.compare`), when the folder has one
             Results/frontier             frontier.png: accuracy against served p99 of
                                          every trial (`tuner.frontier`), when measured
             Results/reliability          reliability.png: calibration of the best students
    TEXT     Results/frontier table       frontier.md: the Pareto-optimal students

TensorBoard's legacy dashboards (SCALARS, IMAGES, TEXT) enable no run by default when more
than 40 runs match their run filter, as any experiment of a few searches has; a filter in the
address selects what it names: `#text&regexInput=summary` (the table, `TABLE_PAGE`) or
`#scalars&regexInput=<cell>` (one search's trials). The TIME SERIES page (the first one) enables
every run and shows the figures first.

Each report replaces the run (one event file, step 0). The events are written with the
`tensorboard` package's protos and TFRecord framing; its summary writers are not used because
they import TensorFlow to open a file, and the report imports none.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import time
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.compat.proto.types_pb2 import DT_STRING
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter

from mimic_tf.files import atomic_write_bytes
from mimic_tf.layout import SUMMARY_RUN, ExperimentLayout

# "Results" with a capital: the Time Series page sorts tag groups by name, capitals first, and
# opens the first two, so the figures lead TensorBoard's first page.
TABLE_TAG = "Results/table"
FIGURE_TAG = "Results/Figure 1"
SERVED_TAG = "Results/served comparison"
FRONTIER_TAG = "Results/frontier"
FRONTIER_TABLE_TAG = "Results/frontier table"
RELIABILITY_TAG = "Results/reliability"
TABLE_PAGE = f"#text&regexInput={SUMMARY_RUN}"  # TensorBoard's address of the table
EVENT_FILE_MARK = "tfevents"  # TensorBoard reads the files whose names contain it
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _string_tensor(values: list[bytes], shape: list[int]) -> tensor_pb2.TensorProto:
    return tensor_pb2.TensorProto(
        dtype=DT_STRING,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape]),
        string_val=values,
    )


def text_value(tag: str, markdown: str, description: str) -> summary_pb2.Summary.Value:
    """A text summary (the TEXT dashboard renders it as markdown)."""
    return summary_pb2.Summary.Value(
        tag=tag,
        metadata=text_metadata.create_summary_metadata(display_name=tag,
                                                       description=description),
        tensor=_string_tensor([markdown.encode("utf-8")], []),
    )


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's header; ValueError if it is not a PNG."""
    if png[:8] != PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


def image_value(tag: str, png: bytes, description: str) -> summary_pb2.Summary.Value:
    """An image summary of one PNG, as `tf.summary.image` lays it out: width, height, image."""
    width, height = png_size(png)
    return summary_pb2.Summary.Value(
        tag=tag,
        metadata=image_metadata.create_summary_metadata(display_name=tag,
                                                        description=description),
        tensor=_string_tensor([str(width).encode(), str(height).encode(), png], [3]),
    )


def event_file_bytes(values: list[summary_pb2.Summary.Value], wall_time: float) -> bytes:
    """An event file: the version record, then one event at step 0 holding `values`."""
    records = [
        event_pb2.Event(wall_time=wall_time, file_version="brain.Event:2"),
        event_pb2.Event(wall_time=wall_time, step=0, summary=summary_pb2.Summary(value=values)),
    ]

    buffer = io.BytesIO()
    writer = RecordWriter(buffer)  # TFRecord framing: length, CRCs, the serialised event
    for record in records:
        writer.write(record.SerializeToString())
    return buffer.getvalue()


def write_summary_run(layout: ExperimentLayout) -> Path:
    """Write `logs/summary/` from the report's files; returns the event file written.

    Needs `results.md` and `figure.png`; the comparison's and the frontier's files are added
    when present.
    """
    values = [text_value(TABLE_TAG, layout.results_md.read_text(),
                         "results.md: the paper's Table 2 from this experiment's searches")]
    if layout.frontier_md.is_file():
        values.append(text_value(FRONTIER_TABLE_TAG, layout.frontier_md.read_text(),
                                 "frontier.md: the students no other beats on accuracy and "
                                 "served p99 at once"))
    images = ((FIGURE_TAG, layout.figure, "figure.png: test accuracy against parameters"),
              (SERVED_TAG, layout.comparison_png,
               "comparison.png: the served students' accuracy, latency and throughput"),
              (FRONTIER_TAG, layout.frontier_png,
               "frontier.png: every trial's test accuracy against its served p99 latency"),
              (RELIABILITY_TAG, layout.reliability_png,
               "reliability.png: the best student of each family beside the teacher"))
    for tag, path, description in images:
        if path.is_file():
            values.append(image_value(tag, path.read_bytes(), description))
    nanoseconds = time.time_ns()
    folder = layout.summary_logs
    earlier = list(folder.glob(f"*{EVENT_FILE_MARK}*")) if folder.is_dir() else []
    # A new name for each report: a running TensorBoard never sees a file change under it.
    name = (f"events.out.{EVENT_FILE_MARK}.{nanoseconds // 10**9}.{socket.gethostname()}."
            f"{os.getpid()}.{nanoseconds % 10**9}.report")
    written = atomic_write_bytes(folder / name, event_file_bytes(values, nanoseconds / 1e9))
    for path in earlier:
        if path != written:
            path.unlink(missing_ok=True)
    return written
