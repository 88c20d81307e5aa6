"""What a daemon's pass needs to plan: the subtrees where something may have changed.

A pass woken by the watcher or the journal plans only the paths under its focus: the folders
the watcher named, the old and new paths of the nodes the journal changed, and the paths that
had a problem. The three trees are cut to the same paths, so an entry in focus is planned
exactly as with the whole trees (missing on one side means missing there too); outside the
focus nothing is decided. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TypeVar

from tandem.sync.model import LocalTree, RemoteTree, SyncedTree, within_any

T = TypeVar("T")


def paths_of_nodes(node_ids: set[str], remote: RemoteTree, synced: SyncedTree) -> set[str]:
    """Where the nodes are now (remote) and where they were when last synced."""
    if not node_ids:
        return set()
    found = {path for path, entry in remote.items() if entry.node_id in node_ids}
    found.update(path for path, entry in synced.items() if entry.node_id in node_ids)
    return found


def widen(focus: set[str] | None, paths: Iterable[str]) -> set[str] | None:
    """`focus` with `paths` added; None (everything) stays None, and so does a focus on ''."""
    if focus is None:
        return None
    focus = focus | set(paths)
    return None if "" in focus else focus


def restrict(tree: Mapping[str, T], focus: set[str] | None) -> dict[str, T]:
    """The entries of `tree` at or under a path of `focus` (all of them for None)."""
    if focus is None:
        return dict(tree)
    return {path: entry for path, entry in tree.items() if within_any(path, focus)}


def with_identities(focus: set[str] | None, synced: SyncedTree, local: LocalTree,
                    remote: RemoteTree) -> set[str] | None:
    """`focus` grown until it holds, for each entry in it, the other places of the same thing:
    a synced entry's node in the cloud and its inode on disk, a cloud node's synced path, a
    local inode's synced path (and whatever lies under each of them)."""
    if focus is None:
        return None
    remote_by_node = {e.node_id: p for p, e in remote.items()}
    synced_by_node = {e.node_id: p for p, e in synced.items()}
    synced_by_inode = {e.inode: p for p, e in synced.items() if e.inode}
    local_by_inode = {e.inode: p for p, e in local.items() if e.inode}
    while True:
        found: set[str] = set()
        for entry in restrict(synced, focus).values():
            found.add(remote_by_node.get(entry.node_id, ""))
            found.add(local_by_inode.get(entry.inode, "") if entry.inode else "")
        for entry in restrict(remote, focus).values():
            found.add(synced_by_node.get(entry.node_id, ""))
        for entry in restrict(local, focus).values():
            found.add(synced_by_inode.get(entry.inode, "") if entry.inode else "")
        found.discard("")
        grown = set(focus)
        for path in sorted(found, key=lambda p: p.count("/")):  # outer paths first
            if not within_any(path, grown):
                grown.add(path)
        if grown == focus:
            return focus
        focus = grown
