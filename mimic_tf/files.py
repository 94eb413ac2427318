"""Writing files whole or not at all: every file the project writes goes through here.

    atomic_write_text(path, text)                 # JSON, YAML, CSV, Markdown, text protos
    atomic_write_bytes(path, content)             # PNGs, serialized protos
    atomic_save_model(model, path)                # a `.keras` file
    with atomic_path(path) as temporary:          # writers that need a path of their own:
        np.savez(temporary, ...)                  # np.save(z), savefig, memmaps
    publish(partial, path)                        # a file built across runs, renamed when whole

One contract: the content goes to a temporary file beside the target (same folder, so the
rename stays on one file system; same suffix, so writers that check it are content), is flushed
to disk (`fsync`), gets the permissions of a normal new file (0666 minus the umask; `mkstemp`
alone would leave 0600), and is renamed over the target, which POSIX makes atomic. A reader, a
model server polling a folder, or a rerun after a crash or `kill -9` sees the old file or the
new one, never half of one. On any failure the temporary file is removed and the target left
untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(temporary: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """fsync `temporary`, give it normal permissions and rename it over `path`: for a file
    built in place under a name of its own across runs (a resumable build), where
    `atomic_path`'s block cannot span the whole write."""
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o666 & ~_umask())
    os.replace(temporary, path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `path`, renamed over it when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                                        dir=path.parent)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        publish(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], content: bytes) -> Path:
    """Write `content` to `path` whole or not at all; returns `path`."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(content)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 `text` to `path` whole or not at all; returns `path`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_model(model: Any, path: str | os.PathLike[str]) -> None:
    """Save a Keras model to a `.keras` file whole or not at all (`model.save` on a temporary
    path, then the rename); Keras is the caller's, not imported here."""
    with atomic_path(path) as temporary:
        model.save(temporary)
