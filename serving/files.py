"""Write-then-rename helpers: every file the serving package writes appears whole or not at all.

A reader (a model server polling a folder, a user opening a CSV) never sees a half-written
file: the content goes to a temporary file beside the target, is flushed to disk, and is then
renamed over the target, which POSIX makes atomic.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, content: bytes) -> Path:
    """Write `content` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 `text` to `path` through a temporary file and a rename."""
    return atomic_write_bytes(path, text.encode("utf-8"))
