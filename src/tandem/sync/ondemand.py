"""Files on demand, the pure part: how placeholders on disk read as the files they stand for.

A freed file leaves a small placeholder (`name.tandem`) on disk and a record in the state DB
(the DB, never the name, says what is a placeholder). Before planning, `overlay` replaces each
recorded placeholder in the scanned tree by a virtual entry equal to the merge base: the
planner then sees the file unchanged, moved (the placeholder was moved: same inode) or deleted
(the placeholder was deleted), exactly as if the file were there. What needs a disk or DB
change first is returned as fixups:

- `moved`: a placeholder moved or renamed on disk (DB only: the record notes where it is);
- `dropped`: records to forget (the cloud file is gone, or the real file is back);
- `remove_files`: placeholder files to delete because the real file is back (an interrupted
  free or offline: the real file wins);
- `materialize`: placeholders overwritten with real bytes: renamed to the real name, so that
  the bytes are uploaded as a new version of the file (the placeholder text never is).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from tandem.sync.model import (
    LocalEntry,
    LocalTree,
    SyncedEntry,
    SyncedTree,
    join,
    name_of,
    parent_of,
    within_any,
)
from tandem.sync.placeholder import SUFFIX, placeholder_name
from tandem.sync.state import Placeholder

ONLINE_ONLY = "online-only"
OFFLINE = "offline"


@dataclass
class Overlay:
    local: LocalTree
    moved: dict[str, Placeholder] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    remove_files: dict[str, Placeholder] = field(default_factory=dict)
    materialize: dict[str, str] = field(default_factory=dict)
    unsettled: dict[str, Placeholder] = field(default_factory=dict)

    @property
    def needs_disk(self) -> bool:
        """Whether fixups must touch the disk (then the paths are scanned again before any
        plan: until then a materialized file would look deleted)."""
        return bool(self.remove_files or self.materialize or self.unsettled)


def unchanged(entry: LocalEntry | None, record: Placeholder) -> bool:
    """Whether a scanned entry is the placeholder as written (a rename keeps the inode, size
    and mtime; it moves the ctime, so that is not compared)."""
    return (entry is not None and entry.kind == "file"
            and (entry.inode, entry.size, entry.mtime_ns) == (record.inode, record.size,
                                                              record.mtime_ns))


def virtual_entry(base: SyncedEntry, record: Placeholder) -> LocalEntry:
    """The file a placeholder stands for, as the planner must see it: as synced."""
    return LocalEntry("file", base.size, base.mtime_ns, 0, record.inode, base.content)


def policy_for(path: str, policies: dict[str, str]) -> str | None:
    """The policy of the nearest folder at or above `path` that has one."""
    current: str | None = path
    while current is not None:
        if current in policies:
            return policies[current]
        current = parent_of(current) if current else None
    return None


def virtual_path(path: str, record: Placeholder) -> str:
    """Where the file stands in the tree, by where its placeholder is on disk: the same
    placeholder name keeps the file's name (its folder moved, or a long name shortened), a
    new `x.tandem` name gives `x`, any other name is the file's new name."""
    name = name_of(record.placeholder)
    if name == placeholder_name(name_of(path)):
        name = name_of(path)
    elif name.endswith(SUFFIX) and len(name) > len(SUFFIX):
        name = name[: -len(SUFFIX)]
    return join(parent_of(record.placeholder), name)


def overlay(local: LocalTree, records: dict[str, Placeholder], synced: SyncedTree,
            ignored: Iterable[str] = ()) -> Overlay:
    """The scanned tree with placeholders read as their files, and the fixups to apply.

    Records are keyed by the file's synced path; a placeholder moved on disk shows the file
    at its new path with the synced inode, so the plan moves it in the cloud, and the record
    follows the synced entry when that move is recorded."""
    skip = set(ignored)
    tree = dict(local)
    result = Overlay(tree)
    claimed = {record.placeholder for record in records.values()}
    by_inode: dict[int, str] | None = None
    for path, record in records.items():
        base = synced.get(path)
        here = local.get(record.placeholder)
        if record.inode == 0:  # its writing was interrupted: settled on disk before any plan
            tree.pop(record.placeholder, None)
            result.unsettled[path] = record
            continue
        at_home = virtual_path(path, record) == path
        real = local.get(path)
        if ((at_home or here is None) and real is not None and path not in claimed
                and not unchanged(real, record)):
            # The real file is back (an interrupted free or offline), or the record followed
            # a move onto a real file (a new file reused the deleted placeholder's inode and
            # was read as the file moved): it wins. (Not when what stands there is a
            # placeholder: this one renamed, or another file's.)
            _remove(result, path, record, here)
        elif base is None or base.kind != "file":
            # The cloud file is gone (deleted here or there) and the plan that did it is done.
            _remove(result, path, record, here)
        elif unchanged(here, record) or (here is None and within_any(record.placeholder, skip)):
            _stand_in(result, local, path, record, base)
        elif here is not None:
            tree.pop(record.placeholder)  # not planned until it has its real name
            result.materialize[record.placeholder] = path
        else:
            if by_inode is None:
                by_inode = {e.inode: p for p, e in local.items()
                            if e.kind == "file" and p not in claimed}
            moved_to = by_inode.get(record.inode)
            if moved_to is not None and unchanged(local[moved_to], record):
                record = replace(record, placeholder=moved_to)
                result.moved[path] = record
                _stand_in(result, local, path, record, base)
            # Else the placeholder was deleted: the file is absent, so the plan deletes it in
            # the cloud (to the trash) as for a real file; the record goes once that is done.
    return result


def _remove(result: Overlay, path: str, record: Placeholder, here: LocalEntry | None) -> None:
    if unchanged(here, record):
        result.local.pop(record.placeholder, None)
        result.remove_files[path] = record
    result.dropped.append(path)


def _stand_in(result: Overlay, local: LocalTree, path: str, record: Placeholder,
              base: SyncedEntry) -> None:
    """Replace the placeholder in the tree by the file it stands for."""
    result.local.pop(record.placeholder, None)
    where = virtual_path(path, record)
    if where != path and where in local:
        where = record.placeholder  # a real file took that name: the placeholder's own name
    result.local[where] = virtual_entry(base, record)
