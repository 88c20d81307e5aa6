"""Restore from a snapshot: a whole backup or one path in it, into a destination folder.

Which snapshot: the one asked for, else the newest that holds the path (so a file deleted
before the latest run is found in an older one). Nothing at the destination is replaced
without `overwrite`: existing files are found before anything is written, and each file is
linked into place (which refuses an existing name) rather than renamed over it. Each file is
written to a temp file beside it, verified chunk by chunk (ids are keyed hashes), flushed,
and only then appears under its name.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tandem.backup import document
from tandem.backup.document import Item
from tandem.backup.local import BackupError
from tandem.client.transfer import NEW_FILE_MODE, Transfers

#: Files written at once (each fetches its chunks through the transfer pool).
WRITERS = 8


@dataclass
class RestoreProgress:
    files: int = 0
    bytes_total: int = 0
    bytes_done: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, size: int) -> None:
        with self._lock:
            self.bytes_done += size


def load_items(transfers: Transfers, snapshot: dict[str, Any]) -> list[Item]:
    data = b"".join(transfers.iter_content([(c, int(s)) for c, s in snapshot["document"]]))
    return document.decode(data)[1]


def choose(transfers: Transfers, backup_id: str, folder: str, wanted: str | None,
           subpath: str) -> tuple[dict[str, Any], list[tuple[Item, str]]]:
    """The snapshot of backup `backup_id` (of `folder`, whichever device made it) to restore
    from, and what to restore from it (item, path under DEST)."""
    snapshots = transfers.api.snapshots(backup_id)
    if not snapshots:
        raise BackupError(f"{folder} has no snapshot yet: run `tandem backup run`")
    candidates = [_by_id(snapshots, wanted)] if wanted is not None else snapshots[::-1]
    for snapshot in candidates:
        selection = document.select(load_items(transfers, snapshot), subpath)
        if selection is not None:
            return snapshot, selection
    where = f"snapshot {wanted}" if wanted is not None else f"any snapshot of {folder}"
    raise BackupError(f"{subpath} is not in {where}: see `tandem backup list`")


def _by_id(snapshots: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    if wanted == "latest":
        return snapshots[-1]
    found = [s for s in snapshots if s["id"].startswith(wanted.lower())] if wanted else []
    if len(found) != 1:
        problem = "matches several snapshots" if found else "is not a snapshot of this backup"
        raise BackupError(f"{wanted!r} {problem}: see `tandem backup list`")
    return found[0]


def restore(transfers: Transfers, selection: list[tuple[Item, str]], dest: Path,
            overwrite: bool, progress: RestoreProgress | None = None) -> RestoreProgress:
    """Write the selection under `dest`; returns what was written."""
    progress = progress or RestoreProgress()
    dest.mkdir(parents=True, exist_ok=True)
    _check_destination(selection, dest, overwrite)
    files = [(item, dest / rel) for item, rel in selection if item.kind == "file"]
    progress.bytes_total = sum(item.size for item, _ in files)
    for item, rel in selection:
        if item.kind == "folder":
            _make_folder(dest / rel)
    with ThreadPoolExecutor(WRITERS, thread_name_prefix="tandem-restore") as pool:
        for _ in pool.map(lambda job: _write(transfers, job[0], job[1], overwrite, progress), files):
            progress.files += 1
    return progress


def _check_destination(selection: list[tuple[Item, str]], dest: Path, overwrite: bool) -> None:
    """Refuse before writing anything: an existing file without `overwrite`, or something of
    another kind in the way of a folder or a file."""
    in_the_way = []
    for item, rel in selection:
        try:
            info = os.lstat(dest / rel)
        except FileNotFoundError:
            continue
        is_folder = stat.S_ISDIR(info.st_mode)
        if item.kind == "folder" and not is_folder:
            raise BackupError(f"{dest / rel} is in the way of a folder: move it or choose another --to")
        if item.kind == "file" and (is_folder or not stat.S_ISREG(info.st_mode)):
            raise BackupError(f"{dest / rel} is in the way of a file: move it or choose another --to")
        if item.kind == "file":
            in_the_way.append(dest / rel)
    if in_the_way and not overwrite:
        more = f" (and {len(in_the_way) - 1} more)" if len(in_the_way) > 1 else ""
        raise BackupError(f"{in_the_way[0]} exists{more}: pass --overwrite to replace,"
                          " or choose another --to")


def _make_folder(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    # Never write through a symbolic link put there in the meantime: it could lead anywhere.
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise BackupError(f"{path} is not a folder")


def _write(transfers: Transfers, item: Item, target: Path, overwrite: bool,
           progress: RestoreProgress) -> None:
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tandem-restore-")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), NEW_FILE_MODE)
            for plaintext in transfers.iter_content(list(item.manifest)):
                handle.write(plaintext)
                progress.add(len(plaintext))
            handle.flush()
            os.fsync(handle.fileno())
        os.utime(temp, ns=(item.mtime_ns, item.mtime_ns))
        if overwrite:
            os.replace(temp, target)
        else:
            try:
                os.link(temp, target)
            except FileExistsError:
                raise BackupError(f"{target} appeared while restoring: not replaced") from None
    finally:
        Path(temp).unlink(missing_ok=True)

