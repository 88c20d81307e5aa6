"""The remote tree: a mirror of the server's nodes, kept current from the change journal.

Names are decrypted on the way in. A name that does not decrypt, or that no filesystem should
take ('', '.', '..', '/', NUL, over 255 bytes), is reported and its subtree left out of the
tree the planner sees: a hostile server cannot make the client write outside the folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tandem.client.api import ApiClient, ApiError
from tandem.core.crypto import AccountKeys, DecryptionError, b64decode
from tandem.core.wire import MAX_NAME_BYTES, ROOT_ID
from tandem.sync.model import RemoteEntry, RemoteTree, join, normalize
from tandem.sync.state import RemoteNode, StateDB

_PAGE = 5000


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a file or folder name on any system we sync with, or None."""
    if name in ("", ".", ".."):
        return "is empty or a special name"
    if "/" in name or "\x00" in name:
        return "contains '/' or NUL"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def decode_node(keys: AccountKeys, raw: dict[str, Any]) -> RemoteNode:
    """A node as the API sends it, with its name decrypted (None: it does not decrypt)."""
    name = None
    if raw["name"] is not None and raw["parent_id"] is not None:
        try:
            name = normalize(keys.decrypt_name(raw["parent_id"], b64decode(raw["name"])))
        except (DecryptionError, ValueError):
            name = None
    manifest = tuple((c, int(s)) for c, s in raw.get("manifest") or ())
    return RemoteNode(raw["id"], raw["parent_id"], name, raw["kind"], int(raw["rev"]),
                      int(raw["size"]), int(raw["mtime_ns"]), manifest)


def to_entry(node: RemoteNode) -> RemoteEntry:
    return RemoteEntry(node.node_id, node.kind,  # type: ignore[arg-type]
                       node.rev, node.size, node.mtime_ns, node.manifest)


def build_tree(nodes: Iterable[RemoteNode],
               entry: Callable[[RemoteNode], RemoteEntry] = to_entry,
               ) -> tuple[RemoteTree, dict[str, str]]:
    """Paths of every node reachable from the root, and a problem per node that cannot be
    placed (its name does not decrypt, is not a valid name, or is taken in its folder)."""
    children: dict[str, list[RemoteNode]] = {}
    for node in nodes:
        if node.parent_id is not None:
            children.setdefault(node.parent_id, []).append(node)
    tree: RemoteTree = {}
    problems: dict[str, str] = {}
    paths = {ROOT_ID: ""}
    stack = [ROOT_ID]
    while stack:
        folder_id = stack.pop()
        folder_path = paths[folder_id]
        for node in sorted(children.get(folder_id, ()), key=lambda n: n.node_id):
            if node.name is None:
                problems[join(folder_path, f"<node {node.node_id[:8]}>")] = \
                    "a name from the server does not decrypt: skipped"
                continue
            reason = name_problem(node.name)
            path = join(folder_path, node.name)
            if reason is not None:
                problems[join(folder_path, repr(node.name)[1:-1][:80])] = \
                    f"the name {reason}: skipped"
                continue
            if path in tree:
                problems[path] = "two cloud entries have this name: one is skipped"
                continue
            tree[path] = entry(node)
            if node.kind == "folder" and node.node_id not in paths:
                paths[node.node_id] = path
                stack.append(node.node_id)
    return tree, problems


class RemoteMirror:
    def __init__(self, api: ApiClient, keys: AccountKeys, state: StateDB) -> None:
        self.api = api
        self.keys = keys
        self.state = state
        self.nodes: dict[str, RemoteNode] = state.remote_nodes()
        #: The last `tree()`, until the nodes change (a daemon's pass would rebuild it each time).
        self._tree: tuple[RemoteTree, dict[str, str]] | None = None
        #: Each node's entry, reused while the node is the same (its content id is computed once).
        self._entries: dict[str, tuple[RemoteNode, RemoteEntry]] = {}
        #: Ids of the nodes changed since `take_changed` (None: all of them, after a relist).
        self._changed: set[str] | None = None

    def _node(self, raw: dict[str, Any]) -> RemoteNode:
        return decode_node(self.keys, raw)

    def refresh(self) -> bool:
        """Read the journal up to now; True if anything changed. A cursor the server no longer
        knows (410) or never gave (400) means listing the whole tree again."""
        if self.state.cursor == 0 and not self.nodes:
            self._relist()
            changed = True
        else:
            changed = False
        while True:
            try:
                page = self.api.changes(self.state.cursor, limit=_PAGE)
            except ApiError as exc:
                if exc.code not in ("cursor_expired", "cursor_invalid"):
                    raise
                self._relist()
                changed = True
                continue
            if page["changes"]:
                self.apply(page["changes"], page["cursor"])
                changed = True
            elif page["cursor"] != self.state.cursor:
                self.state.update_remote((), (), page["cursor"])
            if not page["has_more"]:
                return changed

    def forget(self) -> None:
        """Drop the mirror and its cursor: the next refresh lists the whole tree again."""
        self.state.update_remote((), (), 0, replace_all=True)
        self.nodes = {}
        self._tree = None
        self._changed = None

    def _relist(self) -> None:
        listed, cursor = self.api.iter_tree(page=_PAGE)
        nodes = [self._node(raw) for raw in listed]
        self.state.update_remote(nodes, (), cursor, replace_all=True)
        self.nodes = {n.node_id: n for n in nodes}
        self._tree = None
        self._changed = None

    def apply(self, changes: Iterable[dict[str, Any]], cursor: int | None = None) -> None:
        """Apply journal entries (or our own commits' results, with `cursor` None). Our own
        commits come back through the journal too: a node already mirrored at the entry's
        revision (a revision is one change of one account) is not decoded or stored again."""
        upserts, deletions = [], []
        for raw in changes:
            self._note_changed(raw["id"])
            known = self.nodes.get(raw["id"])
            if raw["state"] == "live":
                if known is not None and known.rev == int(raw["rev"]):
                    continue
                node = self._node(raw)
                upserts.append(node)
                self.nodes[node.node_id] = node
            elif known is not None:
                deletions.append(raw["id"])
                del self.nodes[raw["id"]]
        if upserts or deletions:
            self._tree = None
        self.state.update_remote(upserts, deletions, cursor)

    def record(self, nodes: Iterable[RemoteNode], deleted: Iterable[str] = ()) -> None:
        """Our own commits, known before the journal tells us (the cursor stays put)."""
        nodes, deleted = list(nodes), list(deleted)
        self._tree = None
        for node in nodes:
            self.nodes[node.node_id] = node
            self._note_changed(node.node_id)
        for node_id in deleted:
            self.nodes.pop(node_id, None)
            self._note_changed(node_id)
        self.state.update_remote(nodes, deleted)

    def _note_changed(self, node_id: str) -> None:
        if self._changed is not None:
            self._changed.add(node_id)

    def take_changed(self) -> set[str] | None:
        """The ids of the nodes changed since the last call (None: possibly all of them: a
        relist, or the first call), and start counting afresh."""
        changed, self._changed = self._changed, set()
        return changed

    def tree(self) -> tuple[RemoteTree, dict[str, str]]:
        """Paths of every reachable node, and a problem per node that cannot be placed."""
        if self._tree is None:
            self._tree = self._build_tree()
            if len(self._entries) > len(self.nodes):  # deleted nodes: forget their entries
                self._entries = {k: v for k, v in self._entries.items() if k in self.nodes}
        tree, problems = self._tree
        return dict(tree), dict(problems)

    def _build_tree(self) -> tuple[RemoteTree, dict[str, str]]:
        return build_tree(self.nodes.values(), self._entry)

    def _entry(self, node: RemoteNode) -> RemoteEntry:
        known = self._entries.get(node.node_id)
        if known is not None and known[0] is node:
            return known[1]
        entry = to_entry(node)
        self._entries[node.node_id] = (node, entry)
        return entry

    def folder_id(self, tree: RemoteTree, path: str) -> str | None:
        """The node id of the folder at `path` ('' is the root), or None."""
        if not path:
            return ROOT_ID
        entry = tree.get(path)
        return entry.node_id if entry is not None and entry.kind == "folder" else None
