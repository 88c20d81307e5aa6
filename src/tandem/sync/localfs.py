"""The sync folder as the executor sees it: tree paths to disk paths, the guard against acting
through a symlink, the precondition check made right before every local effect, and the one
line a user reads about a failed local operation."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from tandem.sync.model import LocalEntry, LocalTree


class PreconditionFailed(Exception):
    """The disk no longer holds what the plan was made for: skip, the next plan will see it."""


def matches(path: Path, expect: LocalEntry | None) -> bool:
    """Whether `path` is still what the plan expects (None: nothing there)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return expect is None
    if expect is None:
        return False
    if expect.kind == "folder":
        return os.path.isdir(path) and not os.path.islink(path)
    # ctime too: a same-size rewrite with its old mtime put back still moves the ctime.
    return ((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            == (expect.inode, expect.size, expect.mtime_ns, expect.ctime_ns))


class FolderPaths:
    """Paths inside one sync folder. Folders found real are remembered until `forget_checked`
    (once per executor run)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._real_folders: set[Path] = set()

    def forget_checked(self) -> None:
        self._real_folders.clear()

    def disk(self, path: str, local: LocalTree) -> Path:
        """The on-disk path for a tree path (names as they are on disk, e.g. NFD)."""
        parts, prefix = [], ""
        for name in path.split("/"):
            prefix = f"{prefix}/{name}" if prefix else name
            entry = local.get(prefix)
            parts.append(entry.disk_name if entry is not None and entry.disk_name else name)
        return self.root.joinpath(*parts)

    def check_inside(self, target: Path) -> None:
        """Never act through a symlink: every folder between the root and `target` must be a
        real folder (nothing is read, written or deleted outside the sync folder). Folders
        checked once in a run are remembered for that run."""
        if target.parent in self._real_folders:  # (the common case: a sibling was checked)
            return
        current = self.root
        for part in target.relative_to(self.root).parts[:-1]:
            current = current / part
            if current in self._real_folders:
                continue
            if current.is_symlink():
                raise PreconditionFailed(f"{current} is a symbolic link")
            if current.is_dir():
                self._real_folders.add(current)


    def make_folders(self, folder: Path) -> None:
        """`folder` and the folders above it, inside the root; never the root itself: a
        root gone meanwhile (renamed away, unmounted) is not made again empty in its place."""
        missing = []
        while folder != self.root and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        if not self.root.is_dir():
            raise PreconditionFailed(f"the sync folder {self.root} is gone")
        for each in reversed(missing):
            each.mkdir(exist_ok=True)


def describe(exc: BaseException) -> str:
    """One line for a user about a failed local operation."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return "no space left on the disk: will retry"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        return exc.strerror or str(exc)
    return str(exc)
