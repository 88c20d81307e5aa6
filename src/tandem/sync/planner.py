"""The planner: a pure function from the three trees to the operations that reconcile them.

No I/O. `plan(synced, local, remote)` compares each path's local and remote entry with the
merge base (synced) and decides by DESIGN.md's promises: content that exists on one side only
is never deleted or overwritten (concurrent edits keep both: the local one becomes a
conflicted copy), an edit beats a delete, and a folder with a surviving descendant survives.

Moves come first: when a move is detected on either side (remote: a synced node id at a new
path; local: a synced inode at a new path), the plan holds only the moves, so that the next
plan compares paths that already agree. The engine runs plans until one is empty.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field

from tandem.sync.model import (
    LocalEntry,
    LocalTree,
    RemoteEntry,
    RemoteTree,
    SyncedEntry,
    SyncedTree,
    is_within,
    parent_of,
)


@dataclass(frozen=True)
class Op:
    path: str


@dataclass(frozen=True)
class Upload(Op):
    """Send a local file: a new node (`node_id` None) or a new version of `node_id`."""

    local: LocalEntry
    node_id: str | None = None
    if_rev: int | None = None


@dataclass(frozen=True)
class CreateRemoteFolder(Op):
    local: LocalEntry


@dataclass(frozen=True)
class DeleteRemote(Op):
    """Move the node (and, for a folder, its whole subtree) to the server's trash."""

    node_id: str
    if_rev: int
    files: int = 1


@dataclass(frozen=True)
class MoveRemote(Op):
    to: str
    node_id: str
    if_rev: int


@dataclass(frozen=True)
class MoveSynced(Op):
    """The same move already happened on both sides (e.g. a crash came between the move
    and recording it): only the merge base moves."""

    to: str
    rev: int


@dataclass(frozen=True)
class Download(Op):
    """Write the remote file at `path`, replacing `expect` (None: nothing may be there)."""

    remote: RemoteEntry
    expect: LocalEntry | None = None


@dataclass(frozen=True)
class CreateLocalFolder(Op):
    remote: RemoteEntry


@dataclass(frozen=True)
class DeleteLocal(Op):
    """Remove a local file or (empty after its children) folder that is exactly as synced."""

    expect: LocalEntry


@dataclass(frozen=True)
class MoveLocal(Op):
    to: str
    expect: LocalEntry


@dataclass(frozen=True)
class ConflictCopy(Op):
    """Rename the local entry aside as a conflicted copy; the next plan uploads the copy
    and brings the remote version to `path`."""

    expect: LocalEntry


@dataclass(frozen=True)
class RecordSynced(Op):
    """Both sides already agree: make that the new merge base."""

    local: LocalEntry
    remote: RemoteEntry


@dataclass(frozen=True)
class SetLocalTime(Op):
    """Only the modification time changed in the cloud: set it here, transfer nothing."""

    remote: RemoteEntry
    expect: LocalEntry


@dataclass(frozen=True)
class ForgetSynced(Op):
    """Gone on both sides: drop it from the merge base."""


@dataclass
class Plan:
    ops: list[Op] = field(default_factory=list)

    @property
    def cloud_deletions(self) -> int:
        """Files this plan would delete in the cloud (for the mass-delete guard: deletions
        coming from the cloud were approved where they were made)."""
        return sum(op.files for op in self.ops if isinstance(op, DeleteRemote))

    @property
    def conflicts(self) -> list[str]:
        return [op.path for op in self.ops if isinstance(op, ConflictCopy)]


def _by_depth(paths: Iterable[str]) -> list[str]:
    """Shallow paths first, each depth in name order (a plain sort, then a stable bucket pass:
    far cheaper than a key function on every path of every pass)."""
    levels: dict[int, list[str]] = {}
    for path in sorted(paths):
        levels.setdefault(path.count("/"), []).append(path)
    return [path for depth in sorted(levels) for path in levels[depth]]


def plan(synced: SyncedTree, local: LocalTree, remote: RemoteTree) -> Plan:
    moves = _moves(synced, local, remote)
    if moves:
        return Plan(moves)
    return Plan(_reconcile(synced, local, remote))


# ---- moves ---------------------------------------------------------------------------------

def _moves(synced: SyncedTree, local: LocalTree, remote: RemoteTree) -> list[Op]:
    """Top-most moves on either side. A remote move wins over a local move of the same node."""
    remote_path_of = {entry.node_id: path for path, entry in remote.items()}
    ops: list[Op] = []
    moved_from: list[tuple[str, str]] = []  # (old, new) of moves already planned

    def covered(path: str, new: str) -> bool:
        # A descendant moving along with a moved ancestor is not a move of its own.
        return any(is_within(path, old) and new == to + path[len(old):] for old, to in moved_from)

    for path in _by_depth(synced):
        base = synced[path]
        new = remote_path_of.get(base.node_id)
        if new is None or new == path or covered(path, new):
            continue
        mine, there = local.get(path), local.get(new)
        if mine is None and there is not None and base.inode and there.inode == base.inode:
            ops.append(MoveSynced(path, new, remote[new].rev))
            moved_from.append((path, new))
            continue
        if mine is None or mine.kind != base.kind or new in local or is_within(new, path):
            continue  # gone or replaced here, or the target is taken: compare by path instead
        ops.append(MoveLocal(path, new, mine))
        moved_from.append((path, new))

    synced_path_of_inode = {e.inode: p for p, e in synced.items() if e.inode}
    for path in _by_depth(local):
        entry = local[path]
        old = synced_path_of_inode.get(entry.inode) if entry.inode else None
        if old is None or old == path or covered(old, path):
            continue
        base = synced[old]
        theirs = remote.get(old)
        # The target taken in the cloud (a new node there) is compared by path instead.
        if (old in local or path in synced or path in remote or entry.kind != base.kind
                or theirs is None
                or theirs.node_id != base.node_id or is_within(path, old)
                or any(is_within(old, o) or is_within(path, t) for o, t in moved_from)):
            continue
        ops.append(MoveRemote(old, path, base.node_id, theirs.rev))
        moved_from.append((old, path))
    return ops


# ---- path by path --------------------------------------------------------------------------

def _local_changed(base: SyncedEntry, mine: LocalEntry) -> bool:
    return mine.kind != base.kind or (mine.kind == "file" and mine.content != base.content)


def _remote_changed(base: SyncedEntry, theirs: RemoteEntry) -> bool:
    return (theirs.node_id != base.node_id or theirs.kind != base.kind
            or (theirs.kind == "file" and theirs.content != base.content))


def _same(mine: LocalEntry, theirs: RemoteEntry) -> bool:
    return mine.kind == theirs.kind and (mine.kind == "folder" or mine.content == theirs.content)


def _bring_down(path: str, theirs: RemoteEntry, expect: LocalEntry | None = None) -> Op:
    if theirs.kind == "folder":
        return CreateLocalFolder(path, theirs)
    return Download(path, theirs, expect)


def _send_up(path: str, mine: LocalEntry, theirs: RemoteEntry | None = None) -> Op:
    if mine.kind == "folder":
        return CreateRemoteFolder(path, mine)
    if theirs is not None and theirs.kind == "file":
        return Upload(path, mine, theirs.node_id, theirs.rev)
    return Upload(path, mine)


def _decide(path: str, base: SyncedEntry | None, mine: LocalEntry | None,
            theirs: RemoteEntry | None) -> Op | None:
    if base is None:
        if mine is None:
            return _bring_down(path, theirs) if theirs else None
        if theirs is None:
            return _send_up(path, mine)
        return RecordSynced(path, mine, theirs) if _same(mine, theirs) else ConflictCopy(path, mine)

    local_changed = mine is None or _local_changed(base, mine)
    remote_changed = theirs is None or _remote_changed(base, theirs)
    if not local_changed and not remote_changed:
        assert mine is not None and theirs is not None
        return _same_content(path, base, mine, theirs)
    if mine is not None and theirs is not None and _same(mine, theirs):
        return RecordSynced(path, mine, theirs)  # e.g. the same edit made on both sides
    if not local_changed:  # only the cloud changed
        assert mine is not None
        if theirs is None:
            return DeleteLocal(path, mine)
        if theirs.kind != mine.kind:
            return DeleteLocal(path, mine)  # the next plan brings the new kind down
        return _bring_down(path, theirs, mine)
    if not remote_changed:  # only this side changed
        assert theirs is not None
        if mine is None:
            return DeleteRemote(path, theirs.node_id, theirs.rev)
        if mine.kind != theirs.kind:
            return DeleteRemote(path, theirs.node_id, theirs.rev)  # the next plan sends it up
        return _send_up(path, mine, theirs)
    # Both sides changed.
    if mine is None:
        return ForgetSynced(path) if theirs is None else _bring_down(path, theirs)  # edit beats delete
    if theirs is None:
        return _send_up(path, mine)  # edit beats delete: a new node
    return ConflictCopy(path, mine)


def _same_content(path: str, base: SyncedEntry, mine: LocalEntry, theirs: RemoteEntry) -> Op | None:
    """Same content everywhere; only times (or bookkeeping) may differ. A new modification
    time travels without content: up as a metadata-only commit, down with `utime`."""
    if mine.kind == "file":
        if mine.mtime_ns != base.mtime_ns and theirs.mtime_ns == base.mtime_ns:
            return Upload(path, mine, theirs.node_id, theirs.rev)
        if theirs.mtime_ns != base.mtime_ns and mine.mtime_ns == base.mtime_ns:
            return SetLocalTime(path, theirs, mine)
    stale = (theirs.rev != base.rev or mine.inode != base.inode or mine.size != base.size
             or mine.mtime_ns != base.mtime_ns)
    return RecordSynced(path, mine, theirs) if stale else None


def _reconcile(synced: SyncedTree, local: LocalTree, remote: RemoteTree) -> list[Op]:
    decisions: dict[str, Op] = {}
    for path in _by_depth(set(synced) | set(local) | set(remote)):
        op = _decide(path, synced.get(path), local.get(path), remote.get(path))
        if op is not None:
            decisions[path] = op
    _keep_folders_with_survivors(decisions, local, remote)
    return list(decisions.values())


def _descendants(sorted_paths: list[str], folder: str) -> list[str]:
    """Paths strictly inside `folder`: a contiguous run of the sorted paths."""
    prefix = folder + "/"
    start = bisect.bisect_left(sorted_paths, prefix)
    end = bisect.bisect_left(sorted_paths, folder + "0")  # '0' sorts right after '/'
    return sorted_paths[start:end]


def _keep_folders_with_survivors(decisions: dict[str, Op], local: LocalTree,
                                 remote: RemoteTree) -> None:
    """A folder is deleted only with everything in it. If something inside survives (new or
    changed on the other side), the folder survives too: recreated where it was deleted.
    A remote folder delete that does go ahead takes its subtree with it (one trash entry)."""
    remote_paths, local_paths = sorted(remote), sorted(local)
    collapsed: set[str] = set()
    for path in sorted(decisions, key=lambda p: p.count("/"), reverse=True):
        op = decisions[path]
        if isinstance(op, DeleteRemote) and remote[path].kind == "folder":
            inside = _descendants(remote_paths, path)
            if all(isinstance(decisions.get(p), DeleteRemote) for p in inside):
                files = sum(1 for p in inside if remote[p].kind == "file")
                decisions[path] = DeleteRemote(path, op.node_id, op.if_rev, files)
                collapsed.add(path)
            elif path not in local:
                decisions[path] = CreateLocalFolder(path, remote[path])
            else:
                del decisions[path]  # kind changed locally but the folder must stay: next plan
        elif isinstance(op, DeleteLocal) and op.expect.kind == "folder":
            inside = _descendants(local_paths, path)
            if not all(isinstance(decisions.get(p), DeleteLocal) for p in inside):
                if path not in remote:
                    decisions[path] = CreateRemoteFolder(path, op.expect)
                else:
                    del decisions[path]
    for path in list(decisions):
        parent = parent_of(path)
        while parent:
            if parent in collapsed:
                del decisions[path]  # deleted with its folder
                break
            parent = parent_of(parent)
