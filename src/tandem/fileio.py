"""Durable, atomic file writes: a temp file in the same filesystem, fsync, rename.

Shared by the client (keys, device token, folder marker) and the server's blob folder, so a
crash leaves either the old file or the complete new one, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int | None = None,
                     temp_dir: Path | None = None) -> None:
    """Replace `path` with `data` (temp file in `temp_dir`, default beside `path`)."""
    fd, tmp = tempfile.mkstemp(dir=temp_dir or path.parent, prefix=f".{path.name}.")
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
