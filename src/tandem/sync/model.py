"""The sync engine's vocabulary: paths, the entries of the three trees, and content identity.

A tree is a dict from path to entry. Paths are relative, '/'-separated and NFC-normalised;
the sync root itself is not in any tree. All three trees use the same paths, so the planner
can compare them key by key (DESIGN.md, "three trees").
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import blake3

Kind = Literal["file", "folder"]
Manifest = tuple[tuple[str, int], ...]


def content_id(manifest: Iterable[tuple[str, int]]) -> str:
    """What a file holds, as one string: a hash of its ordered chunk ids and sizes.

    Chunk ids are keyed per account, so this identifies content within the account only.
    Equal content gives equal ids on every device, whatever its name or time.
    """
    digest = blake3.blake3()
    for chunk_id, size in manifest:
        digest.update(bytes.fromhex(chunk_id))
        digest.update(size.to_bytes(8, "big"))
    return digest.hexdigest()


EMPTY_CONTENT = content_id(())


def normalize(name: str) -> str:
    """Names are compared and stored in NFC: an NFD name on disk is the same file."""
    return unicodedata.normalize("NFC", name)


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def within_any(path: str, folders: set[str]) -> bool:
    """Whether `path` or one of its folders is in `folders` (the root '' is not checked)."""
    while path:
        if path in folders:
            return True
        path = parent_of(path)
    return False


def is_within(path: str, folder: str) -> bool:
    """True if `path` is `folder` or inside it ('' is the root, which holds everything)."""
    return not folder or path == folder or path.startswith(folder + "/")


@dataclass(frozen=True)
class LocalEntry:
    """A file or folder as last seen on disk.

    `content` is the content id of a file, or None while it has not been hashed (the
    scanner hashes only when inode, size, mtime or ctime changed, or the entry is racy).
    `disk_name` is the name as it is on disk when it differs from the NFC path's last part.
    """

    kind: Kind
    size: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0
    inode: int = 0
    content: str | None = None
    disk_name: str | None = None
    #: When `content` was known (wall clock, ns): an entry whose mtime is this close to it
    #: is "racily clean" (a write in the same clock tick would not show) and is re-hashed.
    hashed_at_ns: int = 0


@dataclass(frozen=True)
class RemoteEntry:
    """A node of the server tree as last read from the journal, with its name decrypted."""

    node_id: str
    kind: Kind
    rev: int
    size: int = 0
    mtime_ns: int = 0
    manifest: Manifest = ()

    @functools.cached_property
    def content(self) -> str | None:
        """Computed once per entry: the planner asks for it on every path of every pass."""
        return content_id(self.manifest) if self.kind == "file" else None


@dataclass(frozen=True)
class SyncedEntry:
    """The merge base: the last state known identical on disk and on the server.

    `inode` is the local file's inode at that time, to recognise a local move; `size` and
    `mtime_ns` are the local stat, to recognise that a local file is still as synced.
    """

    node_id: str
    kind: Kind
    rev: int
    content: str | None = None
    inode: int = 0
    size: int = 0
    mtime_ns: int = 0


LocalTree = dict[str, LocalEntry]
RemoteTree = dict[str, RemoteEntry]
SyncedTree = dict[str, SyncedEntry]
