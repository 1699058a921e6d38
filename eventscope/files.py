"""Writing the store's files: whole or not at all, and readable by their owner alone."""
from __future__ import annotations

import os
import uuid
from pathlib import Path


def write_atomically(path: Path, write) -> None:
    """``write(file)`` under a temporary name, flushed to disk, then renamed: a crash leaves
    the old file or the new one, never a truncated one under the real name.

    The temporary file is created here and only here (``O_EXCL``, an unguessable name: never
    through a link someone put in its place) with mode 0600: what a store holds (payloads,
    failure reasons, names) is its owner's alone."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def open_private(path: Path, mode: str = "a+", **kwargs):
    """``open(path, mode)`` for appending (``a``, ``ab``, ``a+``: logs, lock files), a file it
    creates made 0600 like the rest of the store, whatever the umask."""
    flags = os.O_CREAT | os.O_APPEND | (os.O_RDWR if "+" in mode else os.O_WRONLY)
    return os.fdopen(os.open(path, flags, 0o600), mode, **kwargs)


class DamagedPart(Exception):
    """A part of the store that cannot be read (a truncated or corrupted file)."""
