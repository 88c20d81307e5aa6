"""How many bytes a backup run will read, for the time left in its progress line: a walk
beside the run that only stats (as restic counts files while it backs up). A file whose
(inode, size, mtime, ctime) is as the last run's scan saw it will not be read; every other
file will. Ignored folders are skipped as the scan skips them. An estimate: a file that
changes meanwhile, or a racily clean one, may make it a little off."""

from __future__ import annotations

import os
import stat
import threading

from tandem.sync.ignore import IgnoreRules
from tandem.sync.model import LocalTree, join, normalize


def bytes_to_read(root: str, previous: LocalTree, rules: IgnoreRules,
                  stop: threading.Event | None = None) -> int | None:
    """The estimate; None if `stop` was set before the walk ended (the run ended first)."""
    total = 0
    folders = [("", root)]
    while folders:
        if stop is not None and stop.is_set():
            return None
        relative, disk = folders.pop()
        try:
            with os.scandir(disk) as entries:
                listing = list(entries)
        except OSError:
            continue  # the run reports it
        for entry in listing:
            path = join(relative, normalize(entry.name))
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode):
                if rules.match(path, True) is None:
                    folders.append((path, entry.path))
            elif stat.S_ISREG(info.st_mode) and rules.match(path, False) is None:
                old = previous.get(path)
                if old is None or (old.inode, old.size, old.mtime_ns, old.ctime_ns) != (
                        info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns):
                    total += info.st_size
    return total
