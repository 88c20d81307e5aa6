"""Scanning the sync folder into a LocalTree: the truth the planner compares (events are hints).

A scan never invents a deletion (DESIGN.md promise 2): a missing or unreadable root stops it
with `RootUnavailable`, and a path it cannot read keeps its previous entries and gets a
problem record. A path is gone only when its parent folder was listed without it. Content
is hashed only when a file's stat changed or its last hash was racily clean.
"""

from __future__ import annotations

import bisect
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path

from tandem.core.chunking import MIN_CHUNK, iter_chunk_views
from tandem.core.crypto import AccountKeys
from tandem.sync.ignore import IgnoreRules
from tandem.sync.model import (
    LocalEntry,
    LocalTree,
    content_id,
    join,
    name_of,
    normalize,
    parent_of,
    within_any,
)

#: A file whose mtime is this close to (or after) the moment its hash was taken may
#: have been written again within the same timestamp tick, unseen by stat: hash it again
#: (git's "racily clean" rule; Unison missed a same-size edit within one second this way).
#: The tick is the filesystem's timestamp granularity: whole seconds (FAT, HFS+, some network
#: filesystems) get the wide window; nanosecond timestamps (a kernel clock tick of a few ms)
#: the narrow one, so files just synced are not all hashed again by the next scan.
RACY_WINDOW_NS = 2_000_000_000
FINE_RACY_WINDOW_NS = 100_000_000

Hasher = Callable[[Path], str]
ListDir = Callable[[str], AbstractContextManager[Iterator[os.DirEntry[str]]]]
Listing = dict[str, os.DirEntry[str]]
#: A path to rescan, with its entry in the parent's listing (None: gone from there).
Target = tuple[str, os.DirEntry[str] | None]


class RootUnavailable(Exception):
    """The sync folder is missing, not a folder, or unreadable: the pass must stop, because an
    empty scan would read as "the user deleted everything" (promise 2)."""


class FileChangedWhileReading(Exception):
    """A hasher saw the file change under it: its content id is not a version of the file."""


@dataclass
class ScanResult:
    """The new tree, plus what the user should see: per-path problems and ignored paths.

    A problem's path is normally a tree path; for two names that are equal once
    NFC-normalised it is the path of the name left out, spelled as it is on disk.
    An ignored folder is listed once; nothing under it is looked at. A partial scan reports
    only what it looked at.
    """

    tree: LocalTree
    problems: dict[str, str] = field(default_factory=dict)
    ignored: dict[str, str] = field(default_factory=dict)


def scan(
    root: Path,
    previous: LocalTree,
    hasher: Hasher,
    rules: IgnoreRules,
    subtrees: Sequence[str] | None = None,
    now_ns: Callable[[], int] = time.time_ns,
    list_dir: ListDir = os.scandir,
) -> ScanResult:
    """Scan all of `root` (subtrees None or containing ''), or only the given subtrees.

    A partial scan starts from `previous` and replaces what lies at and under each subtree
    with what is on disk now. `list_dir` is `os.scandir` except in tests, which use it to
    fail a listing (tests run as root, where permissions do not fail).
    """
    return _Scan(root, previous, hasher, rules, now_ns, list_dir).run(subtrees)


#: Given a file of several chunks about to be read (its path and size), where its chunks go
#: as they are read, `(chunk id, chunk)`: sent ahead of the upload. None: nowhere.
ChunkSink = Callable[[str, bytes], None]


def make_hasher(keys: AccountKeys,
                remember: Callable[[str, list[tuple[str, int]]], None] | None = None,
                sink_for: Callable[[Path, int], ChunkSink | None] | None = None,
                stored: Callable[[str], bool] | None = None) -> Hasher:
    """The account's content id of a file, streamed in chunks as an upload would cut it.
    `remember(content id, manifest)` hears of every file hashed, so an upload right after
    the scan need not read and cut the file again; `sink_for(path, size)` may give a file a
    sink that hears of its chunks as they are read, except those `stored` says the server
    has (the unchanged chunks of an edited file: neither copied nor offered)."""

    def hasher(path: Path) -> str:
        # O_NOFOLLOW: a file swapped for a symlink after the listing must not be followed
        # outside the root; O_NONBLOCK: one swapped for a fifo must not hang the scan.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, "rb") as handle:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FileChangedWhileReading(f"{path} is no longer a regular file")
            manifest = []
            if info.st_size < MIN_CHUNK:
                # Below the chunker's minimum a file is one chunk: skip the chunker's set-up.
                data = handle.read(MIN_CHUNK)
                if handle.read(1):
                    raise FileChangedWhileReading(f"{path} grew while it was read")
                chunks: Iterable[bytes | memoryview] = [data] if data else []
            else:
                chunks = iter_chunk_views(handle)  # hashed in place, copied only to be sent
            sink = sink_for(path, info.st_size) if sink_for is not None else None
            for chunk in chunks:
                chunk_id = keys.chunk_id(chunk)
                manifest.append((chunk_id, len(chunk)))
                if sink is not None and (stored is None or not stored(chunk_id)):
                    sink(chunk_id, chunk if isinstance(chunk, bytes) else bytes(chunk))
        content = content_id(manifest)
        if remember is not None:
            remember(content, manifest)
        return content

    return hasher


def _signature(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _reusable(old: LocalEntry, info: os.stat_result) -> bool:
    """Whether a previous hash still holds: same stat, and not racily clean.

    Racily clean is git's rule, on the mtime: a write after the hash sets the mtime to its
    own time, which differs from a recorded mtime older than the hash by more than a tick. A
    write that also puts an old mtime back (`cp -p`, `touch -d`) still moves the ctime, which
    the stat comparison catches unless it lands in the very clock tick of the recorded ctime.
    """
    return (
        old.kind == "file"
        and old.content is not None
        and (old.inode, old.size, old.mtime_ns, old.ctime_ns) == _signature(info)
        and old.mtime_ns < old.hashed_at_ns - _racy_window(old)
    )


def _racy_window(entry: LocalEntry) -> int:
    coarse = entry.mtime_ns % 1_000_000_000 == 0 and entry.ctime_ns % 1_000_000_000 == 0
    return RACY_WINDOW_NS if coarse else FINE_RACY_WINDOW_NS


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "named pipe (not synced)"
    if stat.S_ISSOCK(mode):
        return "socket (not synced)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device (not synced)"
    return "not a regular file or folder (not synced)"


def _outermost(paths: Iterable[str]) -> list[str]:
    """The paths not inside another one of them: an ancestor's scan covers its descendants."""
    unique = set(paths)
    if "" in unique:
        return [""]
    return sorted(p for p in unique if not within_any(parent_of(p), unique))


def _check_subtree(subtree: str) -> str:
    path = normalize(subtree.strip("/"))
    if path and any(part in ("", ".", "..") for part in path.split("/")):
        raise ValueError(f"not a relative path inside the sync folder: {subtree!r}")
    return path


class _Scan:
    """One scan's state: the tree being built and the records for the user."""

    def __init__(
        self,
        root: Path,
        previous: LocalTree,
        hasher: Hasher,
        rules: IgnoreRules,
        now_ns: Callable[[], int],
        list_dir: ListDir,
    ) -> None:
        self.root = os.fspath(root)
        self.previous = previous
        self.hasher = hasher
        self.rules = rules
        self.now_ns = now_ns
        self.list_dir = list_dir
        self.tree: LocalTree = {}
        self.problems: dict[str, str] = {}
        self.ignored: dict[str, str] = {}
        self._folders_to_list: list[tuple[str, str]] = []
        self._sorted_previous: list[str] | None = None
        self._files_by_inode: dict[int, LocalEntry] | None = None

    def run(self, subtrees: Sequence[str] | None) -> ScanResult:
        root_listing = self._list_root()
        wanted = _outermost(_check_subtree(s) for s in subtrees) if subtrees is not None else [""]
        if wanted == [""]:
            for name, entry in root_listing.items():
                self._visit("", name, entry)
        else:
            self.tree = dict(self.previous)
            listings = {"": root_listing}
            found = [t for t in (self._resolve(s, listings) for s in wanted) if t is not None]
            # Resolving may widen a subtree to an ancestor that covers another one.
            outer = set(_outermost(path for path, _ in found))
            targets = {path: target for path, target in found if path in outer}
            for path in targets:
                for key in self._previous_within(path):
                    del self.tree[key]
            for path, target in targets.items():
                if target is not None:
                    self._visit(parent_of(path), name_of(path), target)
        self._walk()
        return ScanResult(self.tree, self.problems, self.ignored)

    def _list_root(self) -> Listing:
        try:
            info = os.stat(self.root)
        except OSError as exc:
            raise RootUnavailable(f"the sync folder {self.root} is unavailable: {exc.strerror}") from exc
        if not stat.S_ISDIR(info.st_mode):
            raise RootUnavailable(f"the sync folder {self.root} is not a folder")
        try:
            return self._list("", self.root)
        except OSError as exc:
            raise RootUnavailable(f"the sync folder {self.root} cannot be read: {exc.strerror}") from exc

    def _list(self, path: str, disk: str) -> Listing:
        """A folder's entries by NFC name; of two names equal in NFC, one is kept (the one
        already in NFC, else the smaller) and the other reported, whatever the listing order."""
        listing: Listing = {}
        with self.list_dir(disk) as entries:
            for entry in entries:
                name = normalize(entry.name)
                kept = listing.setdefault(name, entry)
                if kept is entry:
                    continue
                if (entry.name != name, entry.name) < (kept.name != name, kept.name):
                    listing[name], kept, entry = entry, entry, kept
                self.problems[join(path, entry.name)] = (
                    f"same name as {kept.name!r} once Unicode-normalised; not synced"
                )
        return listing

    def _resolve(self, subtree: str, listings: dict[str, Listing]) -> Target | None:
        """What to rescan for `subtree`: (path, its entry or None if gone), or None if unknown.

        Walking down from the root, an ancestor that is not a folder the tree already knows
        (new, replaced, ignored, a symlink) is rescanned whole instead; a name missing from a
        listed folder is gone, with everything under it.
        """
        parent, disk = "", self.root
        for name in subtree.split("/")[:-1]:
            path = join(parent, name)
            listing = self._cached_listing(parent, disk, listings)
            if listing is None:
                return None
            entry = listing.get(name)
            if entry is None or not self._known_folder(path, entry):
                return path, entry
            parent, disk = path, entry.path
        listing = self._cached_listing(parent, disk, listings)
        return None if listing is None else (subtree, listing.get(name_of(subtree)))

    def _cached_listing(self, path: str, disk: str, listings: dict[str, Listing]) -> Listing | None:
        if path not in listings:
            try:
                listings[path] = self._list(path, disk)
            except OSError as exc:
                # No evidence either way: the old entries stay (promise 2).
                self.problems[path] = f"cannot list folder: {exc.strerror}"
                return None
        return listings[path]

    def _known_folder(self, path: str, entry: os.DirEntry[str]) -> bool:
        known = self.tree.get(path)
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            return False
        return (
            is_dir and known is not None and known.kind == "folder" and self.rules.match(path, True) is None
        )

    def _walk(self) -> None:
        while self._folders_to_list:
            path, disk = self._folders_to_list.pop()
            try:
                listing = self._list(path, disk)
            except OSError as exc:
                self.problems[path] = f"cannot list folder: {exc.strerror}"
                self._carry_over(path, include_self=False)
                continue
            for name, entry in listing.items():
                self._visit(path, name, entry)

    def _visit(self, parent: str, name: str, entry: os.DirEntry[str]) -> None:
        """Record one listed name: a tree entry, an ignored path, or a problem."""
        path = join(parent, name)
        disk_name = entry.name if entry.name != name else None
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            self._keep_previous(path, f"cannot read: {exc.strerror}")
            return
        if stat.S_ISLNK(info.st_mode):
            self.ignored[path] = "symbolic link (not synced)"
        elif not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
            self.ignored[path] = _special_kind(info.st_mode)
        elif (rule := self.rules.match(path, stat.S_ISDIR(info.st_mode))) is not None:
            self.ignored[path] = rule
        elif stat.S_ISDIR(info.st_mode):
            self.tree[path] = LocalEntry("folder", inode=info.st_ino, disk_name=disk_name)
            self._folders_to_list.append((path, entry.path))
        else:
            self._file(path, entry.path, info, disk_name)

    def _file(self, path: str, disk: str, info: os.stat_result, disk_name: str | None) -> None:
        old = self.previous.get(path)
        if old is None:
            # A new path may be a file moved here (its folder renamed): same inode, same stat.
            old = self._previous_by_inode().get(info.st_ino)
        if old is not None and _reusable(old, info):
            self.tree[path] = old if old.disk_name == disk_name else replace(old, disk_name=disk_name)
            return
        hashed_at = self.now_ns()
        try:
            content = self.hasher(Path(disk))
            after = os.stat(disk, follow_symlinks=False)
        except FileChangedWhileReading:
            self._keep_previous(path, "changed while reading; will retry")
            return
        except OSError as exc:
            self._keep_previous(path, f"cannot read: {exc.strerror or exc}")
            return
        if _signature(after) != _signature(info):
            self._keep_previous(path, "changed while reading; will retry")
            return
        self.tree[path] = LocalEntry(
            "file",
            size=info.st_size,
            mtime_ns=info.st_mtime_ns,
            ctime_ns=info.st_ctime_ns,
            inode=info.st_ino,
            content=content,
            disk_name=disk_name,
            hashed_at_ns=hashed_at,
        )

    def _previous_by_inode(self) -> dict[int, LocalEntry]:
        """The previous tree's files by inode, built on first use (only when paths are new)."""
        if self._files_by_inode is None:
            self._files_by_inode = {e.inode: e for e in self.previous.values() if e.kind == "file"}
        return self._files_by_inode

    def _keep_previous(self, path: str, problem: str) -> None:
        self.problems[path] = problem
        self._carry_over(path, include_self=True)

    def _carry_over(self, path: str, include_self: bool) -> None:
        """Put back the previous entries at (optionally) and under `path`: an unreadable path
        is an error for that path, never a deletion (promise 2)."""
        for key in self._previous_within(path):
            if include_self or key != path:
                self.tree[key] = self.previous[key]

    def _previous_within(self, path: str) -> list[str]:
        """The previous tree's paths at and under `path`.

        Only a folder has entries under it, so a file costs one lookup; for a folder the
        previous paths are sorted once per scan and the range found by bisection.
        """
        old = self.previous.get(path)
        if old is None:
            return []
        if old.kind != "folder":
            return [path]
        if self._sorted_previous is None:
            self._sorted_previous = sorted(self.previous)
        keys = self._sorted_previous
        # Every "path/..." sorts between "path/" and "path0" ('0' follows '/').
        start = bisect.bisect_left(keys, path + "/")
        end = bisect.bisect_left(keys, path + "0", start)
        return [path, *keys[start:end]]
