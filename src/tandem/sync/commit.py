"""Remote effects of a plan, committed as batches of tree operations.

Folder creations come first (their ids are chosen here, so files can be created inside them in
the same batch), then uploads' commits, moves and deletes. A refused batch (4xx) is retried
one operation at a time, so one stale revision costs one path a retry, not the whole pass; a
server in trouble (5xx, 429) is not asked again op by op.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tandem.client.api import RETRY_STATUSES, ApiError, ClientError
from tandem.client.transfer import UploadResult
from tandem.core.crypto import b64encode
from tandem.sync import planner as p
from tandem.sync.model import LocalTree, RemoteTree, SyncedEntry, content_id, name_of, parent_of
from tandem.sync.state import RemoteNode

if TYPE_CHECKING:
    from tandem.sync.executor import Executor, Outcome

_COMMIT_OPS = 2000


class _Pending:
    """One tree operation and what to record once the server has accepted it."""

    def __init__(self, path: str, op: dict[str, Any], effect: Callable[[int], None]) -> None:
        self.path = path
        self.op = op
        self.effect = effect


class RemoteBatch:
    def __init__(self, executor: Executor, local: LocalTree, remote: RemoteTree,
                 outcome: Outcome) -> None:
        self.executor = executor
        self.state = executor.state
        self.mirror = executor.mirror
        self.keys = executor.transfers.keys
        self.api = executor.transfers.api
        self.local = local
        self.remote = remote
        self.outcome = outcome
        self.pending: list[_Pending] = []
        self.new_folders: dict[str, str] = {}

    def _folder_id(self, path: str) -> str | None:
        return self.new_folders.get(path) or self.mirror.folder_id(self.remote, path)

    def _name(self, parent_id: str, path: str) -> str:
        return b64encode(self.keys.encrypt_name(parent_id, name_of(path)))

    def _ensure_folder(self, path: str) -> str | None:
        """The id of the remote folder at `path`, creating it (and its parents) in this batch
        when it exists only locally."""
        existing = self._folder_id(path)
        if existing is not None or path not in self.local or self.local[path].kind != "folder":
            return existing
        parent_id = self._ensure_folder(parent_of(path))
        if parent_id is None:
            return None
        self._create_folder(path, parent_id)
        return self.new_folders[path]

    def _create_folder(self, path: str, parent_id: str) -> None:
        node_id = secrets.token_hex(16)
        self.new_folders[path] = node_id
        inode = self.local[path].inode if path in self.local else 0

        def effect(rev: int) -> None:
            self.mirror.record([RemoteNode(node_id, parent_id, name_of(path), "folder", rev, 0, 0, ())])
            self.state.record_synced([(path, SyncedEntry(node_id, "folder", rev, None, inode))])

        self.pending.append(_Pending(path, {"op": "create", "id": node_id, "parent_id": parent_id,
                                            "name": self._name(parent_id, path), "kind": "folder"},
                                     effect))

    def add(self, op: p.Op, uploaded: UploadResult | None) -> None:
        if isinstance(op, p.CreateRemoteFolder):
            if op.path in self.new_folders or self._folder_id(op.path) is not None:
                return
            parent_id = self._ensure_folder(parent_of(op.path))
            if parent_id is None:
                self.outcome.problems[op.path] = "its folder is not in the cloud yet: will retry"
                return
            self._create_folder(op.path, parent_id)
        elif isinstance(op, p.Upload) and uploaded is not None:
            self._add_upload(op, uploaded)
        elif isinstance(op, p.DeleteRemote):
            self._add_delete(op)
        elif isinstance(op, p.MoveRemote):
            self._add_move(op)

    def _add_upload(self, op: p.Upload, uploaded: UploadResult) -> None:
        parent_id = self._ensure_folder(parent_of(op.path))
        if parent_id is None:
            self.outcome.problems[op.path] = "its folder is not in the cloud yet: will retry"
            return
        manifest = tuple(uploaded.manifest)
        node_id = op.node_id or secrets.token_hex(16)
        fields = {"size": uploaded.size, "mtime_ns": uploaded.mtime_ns,
                  "manifest": [list(entry) for entry in manifest]}
        if op.node_id is None:
            body = {"op": "create", "id": node_id, "parent_id": parent_id,
                    "name": self._name(parent_id, op.path), "kind": "file", **fields}
        else:
            body = {"op": "update", "id": node_id, "if_rev": op.if_rev, **fields}

        def effect(rev: int) -> None:
            self.mirror.record([RemoteNode(node_id, parent_id, name_of(op.path), "file", rev,
                                           uploaded.size, uploaded.mtime_ns, manifest)])
            self.state.record_synced([(op.path, SyncedEntry(
                node_id, "file", rev, content_id(manifest), op.local.inode, uploaded.size,
                uploaded.mtime_ns))])
            self.outcome.bytes_uploaded += uploaded.size

        self.pending.append(_Pending(op.path, body, effect))

    def _add_delete(self, op: p.DeleteRemote) -> None:
        def effect(_rev: int) -> None:
            self.mirror.record((), self._subtree_ids(op.node_id))
            self.state.forget_synced_subtree(op.path)

        self.pending.append(_Pending(op.path, {"op": "delete", "id": op.node_id,
                                               "if_rev": op.if_rev}, effect))

    def _subtree_ids(self, node_id: str) -> list[str]:
        children: dict[str, list[str]] = {}
        for node in self.mirror.nodes.values():
            if node.parent_id is not None:
                children.setdefault(node.parent_id, []).append(node.node_id)
        found, stack = [], [node_id]
        while stack:
            current = stack.pop()
            found.append(current)
            stack.extend(children.get(current, ()))
        return found

    def _add_move(self, op: p.MoveRemote) -> None:
        parent_id = self._ensure_folder(parent_of(op.to))
        if parent_id is None:
            self.outcome.problems[op.to] = "its folder is not in the cloud yet: will retry"
            return
        before = self.mirror.nodes.get(op.node_id)

        def effect(rev: int) -> None:
            if before is not None:
                self.mirror.record([RemoteNode(op.node_id, parent_id, name_of(op.to), before.kind,
                                               rev, before.size, before.mtime_ns, before.manifest)])
            self.state.move_synced(op.path, op.to, rev)

        self.pending.append(_Pending(op.to, {"op": "move", "id": op.node_id, "if_rev": op.if_rev,
                                             "parent_id": parent_id,
                                             "name": self._name(parent_id, op.to)}, effect))

    def commit(self) -> None:
        """Send what was added since the last commit."""
        pending, self.pending = self.pending, []
        for start in range(0, len(pending), _COMMIT_OPS):
            group = pending[start : start + _COMMIT_OPS]
            try:
                self._apply(group)
            except ApiError:
                for single in group:  # isolate the refused operation; the rest goes through
                    self._apply([single])

    def _apply(self, group: list[_Pending]) -> None:
        try:
            answer = self.api.batch([item.op for item in group])
        except ApiError as exc:
            if len(group) == 1 or exc.status in RETRY_STATUSES:
                # A server in trouble (5xx, 429 after the client's retries) is not asked again
                # op by op: only a refusal is isolated to the operation that caused it.
                for item in group:
                    self.outcome.problems[item.path] = _explain(exc)
                return
            raise
        except ClientError as exc:
            for item in group:
                self.outcome.problems[item.path] = str(exc)
            return
        with self.state.transaction():
            for item, result in zip(group, answer["results"], strict=True):
                item.effect(int(result["rev"]))
                self.outcome.done += 1


def _explain(exc: ClientError) -> str:
    if isinstance(exc, ApiError) and exc.code == "rev_conflict":
        return "changed in the cloud meanwhile: will retry"
    return str(exc)
