"""`models.config` and `batching_parameters.txt`: the two text files TF Serving is configured by.

`models.config` is a `tensorflow.serving.ModelServerConfig` text proto (parsed with the official
proto from `tensorflow-serving-api`); `ModelEntry` is one model of it after validation, with its
version policy (`latest` N by default, `all`, or `specific` versions) and version labels.
`batching_parameters.txt` is a `BatchingParameters` text proto; that proto is not shipped in the
pip package, so the handful of fields it has are parsed here and rejected when unknown.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from mimic_tf.files import atomic_write_text

BATCHING_PARAMETERS_FILE = "batching_parameters.txt"  # beside models.config
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VERSION_FOLDER_PATTERN = re.compile(r"^\d+$")
SUPPORTED_PLATFORMS = ("", "tensorflow")


class ModelConfigError(ValueError):
    """A `models.config` or batching parameters file that does not describe a valid setup."""


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which of the version folders found under a model's base path are served.

    `latest` serves the `num_versions` highest, `all` serves every one, `specific` serves the
    listed versions (those that exist), as TF Serving's `ServableVersionPolicy`.
    """

    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1  # for latest
    versions: tuple[int, ...] = ()  # for specific

    def select(self, available: Iterable[int]) -> list[int]:
        """The versions to serve out of those available on disk, ascending."""
        available = sorted(set(available))
        if self.kind == "all":
            return available
        if self.kind == "specific":
            return [version for version in available if version in self.versions]
        return available[-self.num_versions :] if self.num_versions > 0 else []

    @classmethod
    def from_proto(cls, policy) -> VersionPolicy:
        """Read a `FileSystemStoragePathSourceConfig.ServableVersionPolicy`."""
        choice = policy.WhichOneof("policy_choice")
        if choice == "all":
            return cls(kind="all")
        if choice == "specific":
            if not policy.specific.versions:
                raise ModelConfigError(
                    "model_version_policy { specific { } } lists no versions; add "
                    "'versions: N' lines or use latest { }"
                )
            return cls(kind="specific", versions=tuple(int(v) for v in policy.specific.versions))
        num_versions = policy.latest.num_versions if choice == "latest" else 0
        return cls(kind="latest", num_versions=int(num_versions) or 1)


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One served model: its name, base path (version folders inside), policy and labels."""

    name: str
    base_path: Path
    version_policy: VersionPolicy = VersionPolicy()
    version_labels: Mapping[str, int] = dataclasses.field(default_factory=dict)


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot be a model folder and URL part, or None when it can."""
    if MODEL_NAME_PATTERN.match(name or ""):
        return None
    return (f"model name {name!r} is not usable in paths and URLs; use letters, digits, '.', '_' "
            "and '-', starting with a letter or digit")


def next_version(model_dir: str | Path) -> int:
    """One more than the highest version folder in `model_dir` (1 when there is none)."""
    model_dir = Path(model_dir)
    existing = [int(child.name) for child in model_dir.iterdir()
                if VERSION_FOLDER_PATTERN.match(child.name)] if model_dir.is_dir() else []
    return max(existing, default=0) + 1


def versions_on_disk(base_path: str | Path) -> list[int]:
    """The numeric version folders under a model's base path that hold a SavedModel."""
    base_path = Path(base_path)
    if not base_path.is_dir():
        return []
    return sorted(
        int(child.name)
        for child in base_path.iterdir()
        if VERSION_FOLDER_PATTERN.match(child.name)
        and ((child / "saved_model.pb").is_file() or (child / "saved_model.pbtxt").is_file())
    )


def parse_model_server_config(
    text: str, source: str = "<text>"
) -> model_server_config_pb2.ModelServerConfig:
    """Parse a `ModelServerConfig` text proto, naming `source` in the error if it is invalid."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ModelConfigError(
            f"{source} is not a valid ModelServerConfig text proto: {error}. Expected "
            "'model_config_list { config { name: \"NAME\" base_path: \"/path/NAME\" "
            "model_platform: \"tensorflow\" } }'"
        ) from None
    return config


def read_model_server_config(path: str | Path) -> model_server_config_pb2.ModelServerConfig:
    """Read and parse a `models.config` file."""
    path = Path(path)
    if not path.is_file():
        raise ModelConfigError(
            f"model config file {path} does not exist; export a model first "
            "(python -m serving.export --model STUDENT.keras --base DIR --name NAME) and pass "
            "DIR/models.config"
        )
    return parse_model_server_config(path.read_text(encoding="utf-8"), source=str(path))


def model_entries(config: model_server_config_pb2.ModelServerConfig) -> list[ModelEntry]:
    """Validate a `ModelServerConfig` and return its models.

    Relative base paths are taken relative to the working directory, as TF Serving does.
    """
    if config.WhichOneof("config") == "custom_model_config":
        raise ModelConfigError(
            "custom_model_config is not supported; list models in model_config_list { }"
        )
    entries: list[ModelEntry] = []
    seen: set[str] = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ModelConfigError(f"a model config has no name: {model}; add name: \"NAME\"")
        if model.name in seen:
            raise ModelConfigError(f"model name '{model.name}' appears twice in the config")
        seen.add(model.name)
        if not model.base_path:
            raise ModelConfigError(f"model '{model.name}' has no base_path; add base_path: ...")
        if model.model_platform not in SUPPORTED_PLATFORMS:
            raise ModelConfigError(
                f"model '{model.name}' has model_platform '{model.model_platform}'; the "
                "embedded server serves only 'tensorflow' SavedModels"
            )
        entries.append(
            ModelEntry(
                name=model.name,
                base_path=Path(model.base_path).absolute(),
                version_policy=VersionPolicy.from_proto(model.model_version_policy),
                version_labels={label: int(v) for label, v in model.version_labels.items()},
            )
        )
    return entries


def format_model_server_config(config: model_server_config_pb2.ModelServerConfig) -> str:
    """The text proto of a `ModelServerConfig`, as TF Serving reads it."""
    return text_format.MessageToString(config)


def write_model_server_config(
    config: model_server_config_pb2.ModelServerConfig, path: str | Path
) -> Path:
    """Write a `ModelServerConfig` text proto (write-then-rename)."""
    return atomic_write_text(path, format_model_server_config(config))


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """Server-side batching, as TF Serving's `BatchingParameters` (its defaults when unset).

    A batch is run when it holds `max_batch_size` examples or `batch_timeout_micros` after its
    first request arrived, whichever comes first; `num_batch_threads` batches run at once.
    """

    max_batch_size: int = 1000  # examples per batch
    batch_timeout_micros: int = 0  # microseconds to wait for a batch to fill
    num_batch_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    max_enqueued_batches: int = 10  # queue depth in batches before UNAVAILABLE
    allowed_batch_sizes: tuple[int, ...] = ()  # pad batches up to the next of these sizes
    pad_variable_length_inputs: bool = False  # accepted for compatibility; inputs are fixed

    def validate(self) -> BatchingParameters:
        """Raise `ModelConfigError` naming the bad field; return self when valid."""
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) < 1:
                raise ModelConfigError(f"batching parameter {name} is {getattr(self, name)}; "
                                       "it must be at least 1")
        if self.batch_timeout_micros < 0:
            raise ModelConfigError(f"batching parameter batch_timeout_micros is "
                                   f"{self.batch_timeout_micros}; it must be at least 0")
        sizes = self.allowed_batch_sizes
        if sizes:
            if list(sizes) != sorted(set(sizes)) or sizes[0] < 1:
                raise ModelConfigError(f"allowed_batch_sizes {list(sizes)} must be positive and "
                                       "strictly increasing")
            if sizes[-1] != self.max_batch_size:
                raise ModelConfigError(
                    f"the last allowed_batch_sizes entry ({sizes[-1]}) must equal "
                    f"max_batch_size ({self.max_batch_size})"
                )
        return self


_WRAPPED_FIELDS = {
    "max_batch_size": int,
    "batch_timeout_micros": int,
    "num_batch_threads": int,
    "max_enqueued_batches": int,
    "thread_pool_name": str,
}
_PLAIN_FIELDS = {
    "allowed_batch_sizes": int,
    "pad_variable_length_inputs": bool,
    "enable_large_batch_splitting": bool,
}
_ENTRY = re.compile(
    r"(?P<key>\w+)\s*(?::\s*(?P<plain>\"[^\"]*\"|[^\s{}]+)|"
    r"\{\s*value\s*:\s*(?P<wrapped>\"[^\"]*\"|[^\s{}]+)\s*\})"
)


def _convert(key: str, raw: str, kind: type, source: str):
    raw = raw.strip('"')
    if kind is bool:
        if raw not in ("true", "false"):
            raise ModelConfigError(f"{source}: {key} must be true or false, got {raw!r}")
        return raw == "true"
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ModelConfigError(f"{source}: {key} must be an integer, got {raw!r}") from None
    return raw


def parse_batching_parameters(text: str, source: str = "<text>") -> BatchingParameters:
    """Parse a `BatchingParameters` text proto (`max_batch_size { value: 32 }` ...)."""
    text = re.sub(r"#[^\n]*", "", text)
    leftover = _ENTRY.sub("", text).strip()
    if leftover:
        raise ModelConfigError(f"{source}: cannot parse {leftover[:60]!r}; expected lines like "
                               "'max_batch_size { value: 32 }' or 'allowed_batch_sizes: 32'")
    values: dict[str, object] = {}
    allowed_sizes: list[int] = []
    known = sorted({*_WRAPPED_FIELDS, *_PLAIN_FIELDS})
    for match in _ENTRY.finditer(text):
        key = match["key"]
        if key in _WRAPPED_FIELDS and match["wrapped"] is not None:
            values[key] = _convert(key, match["wrapped"], _WRAPPED_FIELDS[key], source)
        elif key in _PLAIN_FIELDS and match["plain"] is not None:
            value = _convert(key, match["plain"], _PLAIN_FIELDS[key], source)
            if key == "allowed_batch_sizes":
                allowed_sizes.append(int(value))
            else:
                values[key] = value
        else:
            raise ModelConfigError(
                f"{source}: unknown or malformed batching parameter '{key}'; known: "
                f"{', '.join(known)} (wrapped ones as 'name {{ value: N }}')"
            )
    values.pop("thread_pool_name", None)
    values.pop("enable_large_batch_splitting", None)
    return BatchingParameters(**values, allowed_batch_sizes=tuple(allowed_sizes)).validate()


def read_batching_parameters(path: str | Path) -> BatchingParameters:
    """Read and parse a `batching_parameters.txt` file."""
    path = Path(path)
    if not path.is_file():
        raise ModelConfigError(f"batching parameters file {path} does not exist")
    return parse_batching_parameters(path.read_text(encoding="utf-8"), source=str(path))


def format_batching_parameters(parameters: BatchingParameters) -> str:
    """The `BatchingParameters` text proto that `tensorflow_model_server` reads."""
    lines = [
        f"max_batch_size {{ value: {parameters.max_batch_size} }}",
        f"batch_timeout_micros {{ value: {parameters.batch_timeout_micros} }}",
        f"num_batch_threads {{ value: {parameters.num_batch_threads} }}",
        f"max_enqueued_batches {{ value: {parameters.max_enqueued_batches} }}",
    ]
    lines += [f"allowed_batch_sizes: {size}" for size in parameters.allowed_batch_sizes]
    if parameters.pad_variable_length_inputs:
        lines.append("pad_variable_length_inputs: true")
    return "\n".join(lines) + "\n"
