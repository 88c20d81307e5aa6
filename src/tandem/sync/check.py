"""`tandem check`, the pure part: the three trees and the truth in, discrepancies out.

Pending work is not a discrepancy. A local change the next scan will see, or a cloud change
after the journal position this device has read, is what the next pass will sync. So each
path is first looked at as the engine will see it at its next pass (`seen_local`: the folder
as the scanner will read it, trusting size and times as it does; `seen_remote`: the mirror
brought up to date from the journal); a path that differs there from the merge base is
pending. Every other path must be exactly as synced on disk (`disk`: every file read now) and
in the cloud (`cloud`: the server's tree listed now); where it is not, no pass would ever
notice, and that is a finding. The mirror is also compared node by node with the server for
every node the journal did not change since the cursor (`in_flux`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tandem.sync.model import (
    LocalEntry,
    LocalTree,
    RemoteEntry,
    RemoteTree,
    SyncedEntry,
    SyncedTree,
    parent_of,
)
from tandem.sync.state import Placeholder, RemoteNode

#: What `--repair` does for a finding: read the file again, forget the merge base of the path
#: (the next pass merges it afresh: identical sides are recorded, different ones conflict),
#: list the whole cloud tree again, or nothing this device can do.
REHASH, REMERGE, RELIST, NONE = "rehash", "remerge", "relist", ""


@dataclass(frozen=True)
class Finding:
    path: str
    kind: str
    message: str
    repair: str


_Add = Callable[[Finding], None]


@dataclass
class Trees:
    synced: SyncedTree
    seen_local: LocalTree
    disk: LocalTree
    seen_remote: RemoteTree
    cloud: RemoteTree
    mirror: dict[str, RemoteNode] = field(default_factory=dict)
    server: dict[str, RemoteNode] = field(default_factory=dict)
    #: Ids of the nodes changed after the cursor (None: the cursor is too old, the next pass
    #: lists everything again, so the mirror is not compared).
    in_flux: set[str] | None = None
    cloud_problems: dict[str, str] = field(default_factory=dict)
    placeholders: dict[str, Placeholder] = field(default_factory=dict)


@dataclass
class Result:
    findings: list[Finding]
    #: Paths the next pass will change: waiting, not wrong.
    pending: list[str]


def compare(trees: Trees) -> Result:
    findings: dict[str, Finding] = {}

    def add(finding: Finding) -> None:
        findings.setdefault(finding.path, finding)

    for path, problem in sorted(trees.cloud_problems.items()):
        add(Finding(path, "cloud_name", f"in the cloud: {problem}", NONE))
    _placeholders(trees, add)
    _merge_base(trees.synced, add)
    pending = _paths(trees, add)
    _mirror(trees, add)
    return Result(sorted(findings.values(), key=lambda f: (f.path, f.kind)), pending)


def _placeholders(trees: Trees, add: _Add) -> None:
    for path, record in sorted(trees.placeholders.items()):
        base = trees.synced.get(path)
        if base is None or trees.in_flux is None or base.node_id in trees.in_flux:
            continue  # dropped at the next pass, or the cloud changed it since the cursor
        if base.node_id not in trees.server:
            add(Finding(path, "placeholder_orphan",
                        f"its placeholder {record.placeholder} stands for a cloud file that is"
                        " gone, and no change this device has yet to read says so", RELIST))


def _merge_base(synced: SyncedTree, add: _Add) -> None:
    """The merge base is a tree of distinct nodes: every entry's folder is in it too."""
    seen: dict[str, str] = {}
    for path in sorted(synced):
        entry = synced[path]
        folder = parent_of(path)
        if folder and (folder not in synced or synced[folder].kind != "folder"):
            add(Finding(path, "orphan_synced", "recorded as synced, but its folder is not",
                        REMERGE))
        if entry.node_id in seen:
            add(Finding(path, "duplicate_node", f"recorded as synced with the same cloud node"
                        f" as {seen[entry.node_id]}", REMERGE))
        seen.setdefault(entry.node_id, path)


def _paths(trees: Trees, add: _Add) -> list[str]:
    pending = []
    every = (set(trees.synced) | set(trees.seen_local) | set(trees.disk)
             | set(trees.seen_remote) | set(trees.cloud))
    for path in sorted(every):
        base = trees.synced.get(path)
        if (_local_differs(trees.seen_local.get(path), base, times=True)
                or _remote_differs(trees.seen_remote.get(path), base, times=True)):
            pending.append(path)
            continue
        here, there = trees.disk.get(path), trees.cloud.get(path)
        if _local_differs(here, base, times=False):
            add(Finding(path, "local_unnoticed", _local_message(here, base), REHASH))
        elif _remote_differs(there, base, times=False):
            add(Finding(path, "cloud_unnoticed", _cloud_message(there, base), RELIST))
    return pending


def _local_differs(entry: LocalEntry | None, base: SyncedEntry | None, times: bool) -> bool:
    if entry is None or base is None:
        return (entry is None) != (base is None)
    if entry.kind != base.kind:
        return True
    return entry.kind == "file" and (entry.content != base.content
                                     or (times and entry.mtime_ns != base.mtime_ns))


def _remote_differs(entry: RemoteEntry | None, base: SyncedEntry | None, times: bool) -> bool:
    if entry is None or base is None:
        return (entry is None) != (base is None)
    if entry.node_id != base.node_id or entry.kind != base.kind:
        return True
    return entry.kind == "file" and (entry.content != base.content
                                     or (times and entry.mtime_ns != base.mtime_ns))


def _local_message(here: LocalEntry | None, base: SyncedEntry | None) -> str:
    if here is None:
        return "recorded as synced, but it is not on disk, and the next scan would not notice"
    if base is None:
        return f"a {here.kind} on disk that no sync would send"
    if here.kind != base.kind:
        return f"a {here.kind} on disk, recorded as a synced {base.kind}; no sync would notice"
    return ("its content differs from the synced version, but its size and times are as"
            " recorded: no sync would upload it")


def _cloud_message(there: RemoteEntry | None, base: SyncedEntry | None) -> str:
    if there is None:
        return ("recorded as synced, but the cloud no longer has it, and this device's copy"
                " of the cloud tree says it does: no sync would notice")
    if base is None:
        return (f"the cloud has a {there.kind} here that this device never saw (its change is"
                " older than the journal position read): no sync would fetch it")
    return (f"the cloud holds another {there.kind} here (revision {there.rev}) than this"
            " device's copy of the cloud tree: no sync would fetch it")


def _mirror(trees: Trees, add: _Add) -> None:
    """Node by node, for the nodes the journal did not change after the cursor."""
    if trees.in_flux is None:
        return
    cloud_path = {e.node_id: p for p, e in trees.cloud.items()}
    seen_path = {e.node_id: p for p, e in trees.seen_remote.items()}
    for node_id in sorted(set(trees.mirror) | set(trees.server)):
        if node_id in trees.in_flux:
            continue
        mine, theirs = trees.mirror.get(node_id), trees.server.get(node_id)
        path = cloud_path.get(node_id) or seen_path.get(node_id) or f"<node {node_id[:8]}>"
        if mine is None and theirs is not None:
            add(Finding(path, "unseen_node", f"the cloud has a {theirs.kind} (revision"
                        f" {theirs.rev}) this device never saw", RELIST))
        elif theirs is None and mine is not None:
            add(Finding(path, "stale_node", f"this device still lists a cloud {mine.kind} the"
                        " cloud no longer has", RELIST))
        elif mine != theirs and mine is not None and theirs is not None:
            add(Finding(path, "node_differs", f"this device's copy of this cloud {mine.kind}"
                        f" (revision {mine.rev}) differs from the cloud's (revision"
                        f" {theirs.rev})", RELIST))
