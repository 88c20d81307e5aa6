"""Durable, atomic file writes: a temp file in the same filesystem, flushed, then renamed.

Shared by the client (keys, device token, folder marker, downloads) and the server's blob
folder, so a crash leaves either the old file or the complete new one, never a torn one.

An fsync per file caps a folder of small files at a few thousand per second. For a batch,
`write_batch_atomically` writes every temp file, flushes the whole filesystem once (syncfs),
renames them all into place and flushes again: each file still appears under its name only
complete, for two flushes per batch instead of one per file.
"""

from __future__ import annotations

import ctypes
import itertools
import os
from pathlib import Path

#: The C library the interpreter runs on (found without ctypes.util's ldconfig search).
_libc = ctypes.CDLL(None, use_errno=True)
#: Unique temp names without mkstemp's random retries (names are per process and counter).
_temp_numbers = itertools.count()


def write_atomically(path: Path, data: bytes, mode: int | None = None,
                     temp_dir: Path | None = None) -> None:
    """Replace `path` with `data` (temp file in `temp_dir`, default beside `path`)."""
    import tempfile  # (here: commands that only read, as `tandem status`, start sooner)

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


def write_temp_file(temp_dir: Path, data: bytes, mode: int = 0o600,
                    mtime_ns: int | None = None) -> Path:
    """A new file in `temp_dir` holding `data`, not yet flushed (the caller flushes a batch)."""
    path = temp_dir / f"t{os.getpid()}-{next(_temp_numbers)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mtime_ns is not None:
            os.utime(path, ns=(mtime_ns, mtime_ns))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def write_unnamed(folder: Path, data: bytes, mode: int, mtime_ns: int | None = None) -> int:
    """A file in `folder` holding `data` but no name yet (Linux's O_TMPFILE), as an open
    descriptor: no one sees it, not even a watcher of the folder, until `link_unnamed`
    names it, complete. Raises OSError where the filesystem cannot (then write a named temp
    file instead); the caller closes the descriptor."""
    fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, mode)
    try:
        with memoryview(data) as view:
            while view:
                view = view[os.write(fd, view):]
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
    except BaseException:
        os.close(fd)
        raise
    return fd


def link_unnamed(fd: int, target: Path) -> None:
    """Name a file made by `write_unnamed`, never over anything (FileExistsError)."""
    folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # linkat(AT_SYMLINK_FOLLOW) on the descriptor's /proc link, as open(2) describes (a
        # directory descriptor makes Python call linkat, not link, which would not follow).
        os.link(f"/proc/self/fd/{fd}", target.name, dst_dir_fd=folder, follow_symlinks=True)
    finally:
        os.close(folder)


def write_batch_atomically(items: list[tuple[Path, bytes]], temp_dir: Path) -> None:
    """Create each path with its data, durably and atomically (temp files in `temp_dir`, on
    the same filesystem as the targets). Existing targets are replaced."""
    temps: list[Path] = []
    try:
        for _, data in items:
            temps.append(write_temp_file(temp_dir, data))
        sync_filesystem(temp_dir)
        while temps:
            os.replace(temps[-1], items[len(temps) - 1][0])
            temps.pop()
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)
    sync_filesystem(temp_dir)


def sync_folder(folder: Path) -> None:
    """Make the names just created or renamed in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the filesystem holding `path` to stable storage."""
    syncfs = getattr(_libc, "syncfs", None)
    if syncfs is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(path))
    finally:
        os.close(fd)
