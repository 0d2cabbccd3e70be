"""Files the session writes for itself and its successors (the ledger, the shared directory
of an xdist session): whole or not at all, and one error type naming the path."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path


class SharedDirError(OSError):
    """The shared directory could not be written or read."""


def append(path: Path, line: bytes) -> None:
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError as exc:
        raise SharedDirError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SharedDirError(f"cannot write {path}: {exc.strerror or exc}") from None
