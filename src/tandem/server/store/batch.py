"""The tree's rules, applied inside one account transaction: create, update, move, delete,
restore. Each operation re-checks its preconditions (revision, parent, unique name) against
the committed tree, so a stale client is refused with a 409 that says why (promise 6)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tandem.core.wire import ROOT_ID
from tandem.server.store.base import Retention, StoreError, not_found

if TYPE_CHECKING:
    from tandem.server.store.tx import JournalWriter, Tx

DAY = 86400
_IN_GROUP = 500


def manifest_to_json(manifest: Sequence[Sequence[Any]]) -> str:
    return json.dumps([[chunk_id, size] for chunk_id, size in manifest], separators=(",", ":"))


def manifest_from_json(text: str) -> list[tuple[str, int]]:
    return [(chunk_id, size) for chunk_id, size in json.loads(text)]


class _Current:
    """The fields of a node an operation needs to check."""

    __slots__ = ("id", "kind", "manifest", "name", "parent_id", "rev", "state", "trash_root",
                 "version")

    def __init__(self, row: Sequence[Any]) -> None:
        (self.id, self.parent_id, name, self.kind, self.state, self.rev, self.version,
         self.trash_root, manifest) = row
        self.name = bytes(name) if name is not None else None
        self.manifest = manifest_from_json(manifest) if manifest is not None else None


class BatchApplier:
    """Applies operations for one account inside an open transaction (see `_account_change`)."""

    def __init__(self, journal: JournalWriter, device_id: str, now: int,
                 retention: Retention) -> None:
        self.journal = journal
        self.tx: Tx = journal.tx
        self.account_id = journal.account_id
        self.device_id = device_id
        self.now = now
        self.retention = retention
        self.op_index: int | None = None
        self.created: set[str] = set()
        #: Nodes read ahead in a few queries (a batch of content updates only, where no
        #: operation changes another's node): each is used once, at its first `_get`.
        self.read_ahead: dict[str, _Current] = {}
        #: Folders known live in this transaction; a move or delete forgets them all.
        self.live_folders: set[str] = set()

    # ---- helpers -------------------------------------------------------------------------

    def _fail(self, status: int, code: str, message: str, **detail: Any) -> StoreError:
        if self.op_index is not None:
            detail["op_index"] = self.op_index
            message = f"operation {self.op_index}: {message}"
        return StoreError(status, code, message, **detail)

    def _get(self, node_id: str) -> _Current | None:
        ahead = self.read_ahead.pop(node_id, None)
        if ahead is not None:
            return ahead
        row = self.tx.one(
            "SELECT n.id, n.parent_id, n.name, n.kind, n.state, n.rev, n.version, n.trash_root,"
            " v.manifest FROM nodes n LEFT JOIN versions v ON v.account_id = n.account_id"
            " AND v.node_id = n.id AND v.number = n.version"
            " WHERE n.account_id = ? AND n.id = ?",
            (self.account_id, node_id),
        )
        return _Current(row) if row else None

    def _live(self, node_id: str, if_rev: int | None) -> _Current:
        node = self._get(node_id)
        if node is None or node.state != "live":
            raise self._fail(404, "not_found", "node not found", node_id=node_id)
        if if_rev is not None and node.rev != if_rev:
            raise self._fail(409, "rev_conflict",
                             f"node changed since revision {if_rev} (now {node.rev})",
                             node_id=node_id, current_rev=node.rev)
        return node

    def _folder(self, parent_id: str) -> None:
        if parent_id in self.live_folders:
            return
        parent = self._get(parent_id)
        if parent is None or parent.state != "live":
            raise self._fail(404, "parent_not_found", "parent folder not found",
                             node_id=parent_id)
        if parent.kind != "folder":
            raise self._fail(409, "parent_not_folder", "parent is a file, not a folder",
                             node_id=parent_id)
        self.live_folders.add(parent_id)

    def _name_free(self, parent_id: str, name: bytes, node_id: str) -> None:
        row = self.tx.one(
            "SELECT id FROM nodes WHERE account_id = ? AND parent_id = ? AND name = ?"
            " AND state = 'live' AND id <> ?",
            (self.account_id, parent_id, name, node_id),
        )
        if row:
            raise self._fail(409, "name_conflict", "a live node in that folder has this name",
                             existing_id=row[0])

    def _read_ahead(self, node_ids: Sequence[str]) -> None:
        """Read these nodes now, a few hundred per query, instead of one query each."""
        unique = list(dict.fromkeys(node_ids))
        for start in range(0, len(unique), _IN_GROUP):
            group = unique[start : start + _IN_GROUP]
            marks = ",".join("?" * len(group))
            for row in self.tx.all(
                    "SELECT n.id, n.parent_id, n.name, n.kind, n.state, n.rev, n.version,"
                    " n.trash_root, v.manifest FROM nodes n LEFT JOIN versions v"
                    " ON v.account_id = n.account_id AND v.node_id = n.id AND v.number = n.version"
                    f" WHERE n.account_id = ? AND n.id IN ({marks})",
                    (self.account_id, *group)):
                self.read_ahead[row[0]] = _Current(row)

    @staticmethod
    def present_chunks(tx: Tx, account_id: int, chunk_ids: Sequence[str]) -> set[str]:
        unique = list(dict.fromkeys(chunk_ids))
        present: set[str] = set()
        for start in range(0, len(unique), _IN_GROUP):
            group = unique[start : start + _IN_GROUP]
            marks = ",".join("?" * len(group))
            present.update(r[0] for r in tx.all(
                f"SELECT id FROM chunks WHERE account_id = ? AND id IN ({marks})",
                (account_id, *group),
            ))
        return present

    def _check_contents(self, ops: list[dict[str, Any]]) -> None:
        """Every referenced chunk must be stored, and sizes must add up, before anything applies.
        A chunk of the version an update replaces is stored (GC keeps every chunk a stored
        version names, under the same account lock): only the others are looked up, so a
        touch of many files looks up none."""
        held = {chunk_id for node in self.read_ahead.values() for chunk_id, _ in node.manifest or []}
        wanted: list[str] = []
        for index, op in enumerate(ops):
            manifest = op.get("manifest")
            if op["op"] in ("create", "update") and op.get("kind", "file") == "file":
                total = sum(size for _, size in manifest or [])
                if total != op.get("size", 0):
                    self.op_index = index
                    raise self._fail(400, "size_mismatch",
                                     f"size {op.get('size', 0)} differs from the chunks' {total}")
                wanted.extend(chunk_id for chunk_id, _ in manifest or [] if chunk_id not in held)
        present = self.present_chunks(self.tx, self.account_id, wanted)
        missing = [c for c in dict.fromkeys(wanted) if c not in present]
        if missing:
            self.op_index = None
            raise self._fail(409, "missing_chunks",
                             f"{len(missing)} chunk(s) are not on the server: upload them first",
                             chunks=missing[:1000])

    def _add_version(self, node_id: str, number: int, size: int, mtime_ns: int,
                     manifest: Sequence[Sequence[Any]]) -> None:
        self.tx.run(
            "INSERT INTO versions (account_id, node_id, number, size, mtime_ns, manifest,"
            " created_at, device_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (self.account_id, node_id, number, size, mtime_ns, manifest_to_json(manifest),
             self.now, self.device_id or None),
        )
        # Keep at most `version_count` versions; older-than-`version_days` ones go in GC.
        if number > self.retention.version_count:
            self.tx.run(
                "DELETE FROM versions WHERE account_id = ? AND node_id = ? AND number <= ?",
                (self.account_id, node_id, number - self.retention.version_count),
            )

    # ---- operations ----------------------------------------------------------------------

    def apply(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if all(op["op"] == "update" for op in ops):
            self._read_ahead([op["id"] for op in ops])
        self._check_contents(ops)
        results = []
        for index, op in enumerate(ops):
            self.op_index = index
            handler = getattr(self, f"_op_{op['op']}")
            results.append({"id": op["id"], "rev": handler(op)})
        self.op_index = None
        return results

    def _op_create(self, op: dict[str, Any]) -> int:
        node_id, parent_id, name, kind = op["id"], op["parent_id"], op["name"], op["kind"]
        manifest = [tuple(x) for x in op.get("manifest") or []] if kind == "file" else None
        existing = self._get(node_id)
        if existing is not None:
            # Ids are random per create, so an existing node of this kind means a retried
            # create that already landed (perhaps changed by another device since: the journal
            # says how). Answer it as a success, never as a second copy.
            if existing.kind == kind and node_id not in self.created:
                return int(existing.rev)
            raise self._fail(409, "id_exists", "a node with this id already exists",
                             node_id=node_id)
        self._folder(parent_id)
        self._name_free(parent_id, name, node_id)
        rev = self.journal.next()
        self.created.add(node_id)
        size = op.get("size", 0) if kind == "file" else 0
        mtime_ns = op.get("mtime_ns", 0)
        self.tx.run(
            "INSERT INTO nodes (account_id, id, parent_id, name, kind, state, size, mtime_ns,"
            " rev, version) VALUES (?, ?, ?, ?, ?, 'live', ?, ?, ?, ?)",
            (self.account_id, node_id, parent_id, name, kind, size, mtime_ns, rev,
             1 if kind == "file" else None),
        )
        if kind == "file":
            self._add_version(node_id, 1, size, mtime_ns, manifest or [])
        return rev

    def _op_update(self, op: dict[str, Any]) -> int:
        node = self._live(op["id"], op["if_rev"])
        if node.kind != "file":
            raise self._fail(400, "not_a_file", "only files have content", node_id=node.id)
        return self._set_content(node, op["size"], op["mtime_ns"],
                                 [tuple(x) for x in op.get("manifest") or []])

    def _set_content(self, node: _Current, size: int, mtime_ns: int,
                     manifest: list[tuple[Any, ...]]) -> int:
        rev = self.journal.next()
        if manifest == node.manifest:
            # Same bytes, new time: no new version, nothing for other devices to download.
            self.tx.run("UPDATE versions SET mtime_ns = ? WHERE account_id = ? AND node_id = ?"
                        " AND number = ?", (mtime_ns, self.account_id, node.id, node.version))
            number = node.version
        else:
            number = (node.version or 0) + 1
            self._add_version(node.id, number, size, mtime_ns, manifest)
        self.tx.run(
            "UPDATE nodes SET size = ?, mtime_ns = ?, version = ?, rev = ?"
            " WHERE account_id = ? AND id = ?",
            (size, mtime_ns, number, rev, self.account_id, node.id),
        )
        return rev

    def _op_move(self, op: dict[str, Any]) -> int:
        self.live_folders.clear()
        node = self._live(op["id"], op["if_rev"])
        parent_id, name = op["parent_id"], op["name"]
        if node.id == ROOT_ID:
            raise self._fail(400, "root", "the root folder cannot be moved")
        self._folder(parent_id)
        if node.kind == "folder" and self._is_within(parent_id, node.id):
            raise self._fail(400, "cycle", "a folder cannot move into itself or its descendants",
                             node_id=node.id)
        self._name_free(parent_id, name, node.id)
        rev = self.journal.next()
        self.tx.run(
            "UPDATE nodes SET parent_id = ?, name = ?, rev = ? WHERE account_id = ? AND id = ?",
            (parent_id, name, rev, self.account_id, node.id),
        )
        return rev

    def _is_within(self, node_id: str, ancestor_id: str) -> bool:
        row = self.tx.one(
            "WITH RECURSIVE up(id, parent_id) AS ("
            " SELECT id, parent_id FROM nodes WHERE account_id = ? AND id = ?"
            " UNION ALL SELECT n.id, n.parent_id FROM nodes n JOIN up ON n.id = up.parent_id"
            " WHERE n.account_id = ?) SELECT 1 FROM up WHERE id = ?",
            (self.account_id, node_id, self.account_id, ancestor_id),
        )
        return row is not None

    def _subtree(self, node_id: str, state: str, trash_root: str | None = None) -> list[str]:
        """Ids of the descendants of `node_id` in `state` (optionally of one deletion)."""
        extra = " AND n.trash_root = ?" if trash_root else ""
        params: tuple[Any, ...] = (self.account_id, node_id, state)
        inner: tuple[Any, ...] = (self.account_id, state)
        if trash_root:
            params, inner = (*params, trash_root), (*inner, trash_root)
        rows = self.tx.all(
            "WITH RECURSIVE sub(id) AS ("
            f" SELECT n.id FROM nodes n WHERE n.account_id = ? AND n.parent_id = ? AND n.state = ?{extra}"
            " UNION ALL SELECT n.id FROM nodes n JOIN sub ON n.parent_id = sub.id"
            f" WHERE n.account_id = ? AND n.state = ?{extra}) SELECT id FROM sub",
            (*params, *inner),
        )
        return [r[0] for r in rows]

    def _op_delete(self, op: dict[str, Any]) -> int:
        self.live_folders.clear()
        node = self._live(op["id"], op["if_rev"])
        if node.id == ROOT_ID:
            raise self._fail(400, "root", "the root folder cannot be deleted")
        rev = 0
        # Descendants first, then the node itself: its revision is the batch's latest.
        for node_id in [*self._subtree(node.id, "live"), node.id]:
            rev = self.journal.next()
            self.tx.run(
                "UPDATE nodes SET state = 'trashed', trash_root = ?, trashed_at = ?, rev = ?"
                " WHERE account_id = ? AND id = ?",
                (node.id, self.now, rev, self.account_id, node_id),
            )
        return rev

    # ---- history -------------------------------------------------------------------------

    def restore_version(self, node_id: str, number: int, if_rev: int | None) -> None:
        node = self._live(node_id, if_rev)
        if node.kind != "file":
            raise self._fail(400, "not_a_file", "folders have no versions")
        row = self.tx.one(
            "SELECT size, mtime_ns, manifest FROM versions WHERE account_id = ? AND node_id = ?"
            " AND number = ?", (self.account_id, node_id, number))
        if row is None:
            raise not_found("version")
        self._set_content(node, row[0], row[1], [tuple(x) for x in manifest_from_json(row[2])])

    def restore_trashed(self, node_id: str, parent_id: str | None, name: bytes | None) -> list[str]:
        node = self._get(node_id)
        if node is None or node.state != "trashed":
            raise not_found("trashed node")
        target_parent = parent_id or node.parent_id
        target_name = name or node.name
        parent = self._get(target_parent)
        if parent is None or parent.state != "live" or parent.kind != "folder":
            raise StoreError(409, "parent_gone",
                             "the original folder is gone: restore into another folder",
                             node_id=target_parent)
        if target_parent != node.parent_id and name is None:
            raise StoreError(400, "name_required",
                             "a node restored into another folder needs its name for that folder")
        assert target_name is not None
        self._name_free(target_parent, target_name, node_id)
        restored = [node_id, *self._subtree(node_id, "trashed", node.trash_root)]
        for restored_id in restored:
            rev = self.journal.next()
            self.tx.run(
                "UPDATE nodes SET state = 'live', trash_root = NULL, trashed_at = NULL, rev = ?"
                " WHERE account_id = ? AND id = ?", (rev, self.account_id, restored_id))
        self.tx.run("UPDATE nodes SET parent_id = ?, name = ? WHERE account_id = ? AND id = ?",
                    (target_parent, target_name, self.account_id, node_id))
        return restored

    def purge_trash(self, node_id: str | None = None, older_than: int | None = None) -> int:
        """Delete trashed nodes for good (their versions go; a tombstone stays for the journal)."""
        if node_id is not None:
            node = self._get(node_id)
            if node is None or node.state != "trashed":
                raise not_found("trashed node")
            roots = [node_id]
        else:
            query = ("SELECT id FROM nodes WHERE account_id = ? AND state = 'trashed'"
                     " AND trash_root = id")
            params: tuple[Any, ...] = (self.account_id,)
            if older_than is not None:
                query += " AND trashed_at < ?"
                params = (*params, older_than)
            roots = [r[0] for r in self.tx.all(query, params)]
        purged = 0
        for root in roots:
            node = self._get(root)
            assert node is not None
            for doomed in [root, *self._subtree(root, "trashed", node.trash_root)]:
                self.tx.run("DELETE FROM versions WHERE account_id = ? AND node_id = ?",
                            (self.account_id, doomed))
                self.tx.run(
                    "UPDATE nodes SET state = 'purged', name = NULL, version = NULL"
                    " WHERE account_id = ? AND id = ?", (self.account_id, doomed))
                purged += 1
        return purged
