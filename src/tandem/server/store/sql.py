"""The rules of accounts, the tree, history and chunks, written once in portable SQL.

An engine subclass (`sqlite`, `postgres`) only supplies connections and transactions.
Every change to an account's tree happens inside `_account_change`, which serialises commits
per account (a row lock on the account) and hands out journal sequence numbers, so the cursor
only grows and a client that read cursor N has seen every change up to N (promise 6).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from tandem.core.wire import ROOT_ID
from tandem.server.store.base import (
    Account,
    Collected,
    Device,
    Node,
    Retention,
    StoreError,
    Version,
    not_found,
)
from tandem.server.store.batch import BatchApplier, manifest_from_json
from tandem.server.store.packs import PackRules, empty_packs
from tandem.server.store.snapshots import SnapshotRules, referenced_chunks
from tandem.server.store.tx import JournalWriter, Tx

DAY = 86400
_NODE_COLUMNS = (
    "n.id, n.parent_id, n.name, n.kind, n.state, n.size, n.mtime_ns, n.rev, n.version,"
    " n.trash_root, n.trashed_at, v.manifest"
)
_NODE_FROM = (
    " FROM nodes n LEFT JOIN versions v ON v.account_id = n.account_id"
    " AND v.node_id = n.id AND v.number = n.version"
)
#: Tombstones of purged nodes are kept this long so clients with old cursors still see deletes.
TOMBSTONE_DAYS = 90


def node_from_row(row: Sequence[Any]) -> Node:
    return Node(
        id=row[0], parent_id=row[1], name=bytes(row[2]) if row[2] is not None else None,
        kind=row[3], state=row[4], size=row[5], mtime_ns=row[6], rev=row[7], version=row[8],
        trash_root=row[9], trashed_at=row[10],
        manifest=manifest_from_json(row[11]) if row[11] is not None else None,
    )


class SqlStore(SnapshotRules, PackRules, ABC):
    """`MetadataStore` over a SQL engine; subclasses provide `_transaction`."""

    #: Appended to the account-lock SELECT; PostgreSQL needs " FOR UPDATE", SQLite locks the file
    #: (BEGIN IMMEDIATE serialises every writer).
    lock_suffix = ""
    integrity_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, retention: Retention | None = None, quota_bytes: int | None = None) -> None:
        self.retention = retention or Retention()
        self.default_quota = quota_bytes
        self._listeners: list[Callable[[int, int], None]] = []

    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Tx]:
        """A transaction on this thread's connection (writers serialised per engine)."""

    def add_listener(self, listener: Callable[[int, int], None]) -> None:
        """Call `listener(account_id, cursor)` after every commit that moved a cursor."""
        self._listeners.append(listener)

    @contextmanager
    def _locked(self, account_id: int) -> Iterator[Tx]:
        """A write transaction holding the account's row lock: writers of one account (in any
        process) run one after another, so read-then-write rules never race."""
        with self._transaction(write=True) as tx:
            if tx.one("SELECT id FROM accounts WHERE id = ?" + self.lock_suffix, (account_id,)) is None:
                raise not_found("account")
            yield tx

    def account_exclusion(self, account_id: int, exclusive: bool,
                          wait: float) -> AbstractContextManager[None]:
        """Uploads (shared) and garbage collection (exclusive) of one account, excluded across
        the processes sharing this database, waiting at most `wait` seconds (then `busy()`);
        SQLite serves one process: nothing to do."""
        return nullcontext()

    def _after_import(self, tx: Tx) -> None:
        """After rows were copied in with their ids (`copy.copy_store`): engines whose ids come
        from a sequence move it past them."""

    def _announce(self, tx: Tx, account_id: int, cursor: int) -> None:
        """Inside a commit that moved `account_id`'s cursor: engines shared between processes
        tell the other processes here (PostgreSQL: NOTIFY, sent when the commit lands)."""

    @contextmanager
    def _account_change(self, account_id: int) -> Iterator[JournalWriter]:
        with self._locked(account_id) as tx:
            journal = JournalWriter(tx, account_id, tx.one(
                "SELECT cursor FROM accounts WHERE id = ?", (account_id,))[0])
            yield journal
            if journal.seq != journal.start:
                tx.run("UPDATE accounts SET cursor = ? WHERE id = ?", (journal.seq, account_id))
                self._announce(tx, account_id, journal.seq)
        if journal.seq != journal.start:
            for listener in self._listeners:
                listener(account_id, journal.seq)

    # ---- accounts and devices -------------------------------------------------------------

    def create_account(self, email: str, salt: bytes, kdf: str, auth_hash: bytes,
                       wrapped_key: bytes, recovery_wrapped_key: bytes, now: int) -> int:
        try:
            with self._transaction(write=True) as tx:
                if tx.one("SELECT 1 FROM accounts WHERE email = ?", (email,)):
                    raise StoreError(409, "email_taken", "an account with this email exists")
                tx.run(
                    "INSERT INTO accounts (email, salt, kdf, auth_hash, wrapped_key,"
                    " recovery_wrapped_key, quota_bytes, used_bytes, cursor, journal_floor,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, 0, ?)",
                    (email, salt, kdf, auth_hash, wrapped_key, recovery_wrapped_key,
                     self.default_quota, now),
                )
                account_id = int(tx.one("SELECT id FROM accounts WHERE email = ?", (email,))[0])
                tx.run(
                    "INSERT INTO nodes (account_id, id, parent_id, name, kind, state, size,"
                    " mtime_ns, rev) VALUES (?, ?, NULL, NULL, 'folder', 'live', 0, 0, 0)",
                    (account_id, ROOT_ID),
                )
                return account_id
        except self.integrity_errors as exc:
            raise StoreError(409, "email_taken", "an account with this email exists") from exc

    _ACCOUNT_COLUMNS = (
        "id, email, salt, kdf, auth_hash, wrapped_key, recovery_wrapped_key, quota_bytes,"
        " used_bytes, cursor"
    )

    @staticmethod
    def _account(row: Sequence[Any]) -> Account:
        return Account(row[0], row[1], bytes(row[2]), row[3], bytes(row[4]), bytes(row[5]),
                       bytes(row[6]), row[7], row[8], row[9])

    def account_by_email(self, email: str) -> Account | None:
        with self._transaction(write=False) as tx:
            row = tx.one(f"SELECT {self._ACCOUNT_COLUMNS} FROM accounts WHERE email = ?", (email,))
        return self._account(row) if row else None

    def account(self, account_id: int) -> Account:
        with self._transaction(write=False) as tx:
            row = tx.one(f"SELECT {self._ACCOUNT_COLUMNS} FROM accounts WHERE id = ?", (account_id,))
        if row is None:
            raise not_found("account")
        return self._account(row)

    def account_ids(self) -> list[int]:
        with self._transaction(write=False) as tx:
            return [int(r[0]) for r in tx.all("SELECT id FROM accounts ORDER BY id")]

    def add_device(self, account_id: int, device_id: str, name: str, token_hash: bytes,
                   now: int) -> None:
        with self._transaction(write=True) as tx:
            tx.run(
                "INSERT INTO devices (id, account_id, name, token_hash, created_at, last_seen_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (device_id, account_id, name, token_hash, now, now),
            )

    _DEVICE_COLUMNS = "id, account_id, name, created_at, last_seen_at, revoked_at"

    def device_for_token(self, token_hash: bytes) -> Device | None:
        with self._transaction(write=False) as tx:
            row = tx.one(
                f"SELECT {self._DEVICE_COLUMNS} FROM devices"
                " WHERE token_hash = ? AND revoked_at IS NULL",
                (token_hash,),
            )
        return Device(*row) if row else None

    def touch_device(self, device_id: str, now: int) -> None:
        with self._transaction(write=True) as tx:
            tx.run("UPDATE devices SET last_seen_at = ? WHERE id = ?", (now, device_id))

    def devices(self, account_id: int) -> list[Device]:
        with self._transaction(write=False) as tx:
            rows = tx.all(
                f"SELECT {self._DEVICE_COLUMNS} FROM devices WHERE account_id = ?"
                " ORDER BY created_at, id",
                (account_id,),
            )
        return [Device(*row) for row in rows]

    def revoke_device(self, account_id: int, device_id: str, now: int) -> None:
        with self._transaction(write=True) as tx:
            changed = tx.run(
                "UPDATE devices SET revoked_at = ?, token_hash = NULL"
                " WHERE id = ? AND account_id = ? AND revoked_at IS NULL",
                (now, device_id, account_id),
            )
            if not changed:
                raise not_found("device")

    # ---- the tree and its journal ------------------------------------------------------

    def cursor(self, account_id: int) -> int:
        return self.account(account_id).cursor

    def node(self, account_id: int, node_id: str) -> Node:
        with self._transaction(write=False) as tx:
            row = tx.one(
                f"SELECT {_NODE_COLUMNS}{_NODE_FROM} WHERE n.account_id = ? AND n.id = ?"
                " AND n.state <> 'purged'",
                (account_id, node_id),
            )
        if row is None:
            raise not_found()
        return node_from_row(row)

    def list_tree(self, account_id: int, after_id: str, limit: int) -> tuple[list[Node], int]:
        """One page of the live tree by id, and the cursor to follow with `changes` afterwards."""
        with self._transaction(write=False) as tx:
            cursor = tx.one("SELECT cursor FROM accounts WHERE id = ?", (account_id,))[0]
            rows = tx.all(
                f"SELECT {_NODE_COLUMNS}{_NODE_FROM} WHERE n.account_id = ? AND n.id > ?"
                " AND n.state = 'live' ORDER BY n.id LIMIT ?",
                (account_id, after_id, limit),
            )
        return [node_from_row(r) for r in rows], cursor

    def changes(self, account_id: int, cursor: int, limit: int) -> tuple[list[Node], int, bool]:
        """Nodes changed after `cursor` (latest state each, tombstones included), oldest first."""
        with self._transaction(write=False) as tx:
            current, floor = tx.one(
                "SELECT cursor, journal_floor FROM accounts WHERE id = ?", (account_id,)
            )
            if cursor < floor:
                raise StoreError(410, "cursor_expired",
                                 "this cursor is too old: list the whole tree again")
            if cursor > current:
                raise StoreError(400, "cursor_invalid",
                                 "this cursor is ahead of the server: list the whole tree again")
            rows = tx.all(
                f"SELECT {_NODE_COLUMNS}{_NODE_FROM} WHERE n.account_id = ? AND n.rev > ?"
                " ORDER BY n.rev LIMIT ?",
                (account_id, cursor, limit + 1),
            )
        has_more = len(rows) > limit
        nodes = [node_from_row(r) for r in rows[:limit]]
        return nodes, (nodes[-1].rev if has_more else current), has_more

    def apply_batch(self, account_id: int, device_id: str, ops: list[dict[str, Any]],
                    now: int) -> tuple[list[dict[str, Any]], int]:
        """Apply every operation or none (one transaction); a refusal names the failing op."""
        try:
            with self._account_change(account_id) as journal:
                applier = BatchApplier(journal, device_id, now, self.retention)
                results = applier.apply(ops)
        except self.integrity_errors as exc:
            raise StoreError(409, "name_conflict", "a live node in that folder has this name") from exc
        return results, journal.seq

    # ---- history ------------------------------------------------------------------------

    def versions(self, account_id: int, node_id: str) -> list[Version]:
        node = self.node(account_id, node_id)
        if node.kind != "file":
            raise StoreError(400, "not_a_file", "folders have no versions")
        with self._transaction(write=False) as tx:
            rows = tx.all(
                "SELECT number, size, mtime_ns, created_at, device_id, manifest FROM versions"
                " WHERE account_id = ? AND node_id = ? ORDER BY number DESC",
                (account_id, node_id),
            )
        return [Version(r[0], r[1], r[2], r[3], r[4], manifest_from_json(r[5])) for r in rows]

    def restore_version(self, account_id: int, device_id: str, node_id: str, number: int,
                        if_rev: int | None, now: int) -> Node:
        with self._account_change(account_id) as journal:
            applier = BatchApplier(journal, device_id, now, self.retention)
            applier.restore_version(node_id, number, if_rev)
        return self.node(account_id, node_id)

    def trash(self, account_id: int) -> list[Node]:
        """What the user deleted: the top of each deleted subtree, newest first."""
        with self._transaction(write=False) as tx:
            rows = tx.all(
                f"SELECT {_NODE_COLUMNS}{_NODE_FROM} WHERE n.account_id = ?"
                " AND n.state = 'trashed' AND n.trash_root = n.id ORDER BY n.trashed_at DESC, n.id",
                (account_id,),
            )
        return [node_from_row(r) for r in rows]

    def restore_trash(self, account_id: int, node_id: str, parent_id: str | None,
                      name: bytes | None, now: int) -> list[Node]:
        with self._account_change(account_id) as journal:
            applier = BatchApplier(journal, "", now, self.retention)
            restored = applier.restore_trashed(node_id, parent_id, name)
        return [self.node(account_id, i) for i in restored]

    def empty_trash(self, account_id: int, node_id: str | None, now: int) -> int:
        with self._account_change(account_id) as journal:
            applier = BatchApplier(journal, "", now, self.retention)
            return applier.purge_trash(node_id=node_id)

    # ---- chunks -------------------------------------------------------------------------

    def missing_chunks(self, account_id: int, chunk_ids: list[str]) -> list[str]:
        with self._transaction(write=False) as tx:
            present = BatchApplier.present_chunks(tx, account_id, chunk_ids)
        return [c for c in dict.fromkeys(chunk_ids) if c not in present]

    def chunk_size(self, account_id: int, chunk_id: str) -> int | None:
        with self._transaction(write=False) as tx:
            row = tx.one("SELECT size FROM chunks WHERE account_id = ? AND id = ?",
                         (account_id, chunk_id))
        return int(row[0]) if row else None

    def reserve_space(self, account_id: int, size: int) -> None:
        """Refuse an upload that would take the account over its quota (507)."""
        account = self.account(account_id)
        if account.quota_bytes is not None and account.used_bytes + size > account.quota_bytes:
            raise StoreError(
                507, "quota_exceeded",
                f"storage quota exceeded: {account.used_bytes} of {account.quota_bytes} bytes"
                " used; free space by emptying the trash or deleting files",
            )

    def record_chunks(self, account_id: int, chunks: list[tuple[str, int]], now: int) -> int:
        """Record chunks stored as blobs of their own, the layout before packs (uploads use
        `record_pack`); create-only: known ids are skipped. Returns how many were new."""
        if not chunks:
            return 0
        with self._locked(account_id) as tx:
            present = BatchApplier.present_chunks(tx, account_id, [c for c, _ in chunks])
            fresh = dict((c, size) for c, size in chunks if c not in present)
            tx.many("INSERT INTO chunks (account_id, id, size, created_at) VALUES (?, ?, ?, ?)",
                    [(account_id, c, size, now) for c, size in fresh.items()])
            tx.run("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?",
                   (sum(fresh.values()), account_id))
            return len(fresh)

    def set_quota(self, account_id: int, quota_bytes: int | None) -> None:
        with self._transaction(write=True) as tx:
            tx.run("UPDATE accounts SET quota_bytes = ? WHERE id = ?", (quota_bytes, account_id))

    def collect_garbage(self, account_id: int, now: int) -> Collected:
        """Apply retention, then drop chunk records nothing references and the packs left
        without a live chunk; returns them so the caller deletes the blobs. Runs under the
        account lock, so no commit can start referencing a chunk between the mark and the sweep."""
        keep = self.retention
        with self._account_change(account_id) as journal:
            tx = journal.tx
            BatchApplier(journal, "", now, keep).purge_trash(older_than=now - keep.trash_days * DAY)
            tx.run(
                "DELETE FROM versions WHERE account_id = ? AND created_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM nodes n WHERE n.account_id = versions.account_id"
                " AND n.id = versions.node_id AND n.version = versions.number)",
                (account_id, now - keep.version_days * DAY),
            )
            referenced: set[str] = set()
            for (manifest,) in tx.all("SELECT manifest FROM versions WHERE account_id = ?",
                                      (account_id,)):
                referenced.update(chunk_id for chunk_id, _ in json.loads(manifest))
            referenced.update(referenced_chunks(tx, account_id))
            candidates = tx.all(
                "SELECT id, size, pack FROM chunks WHERE account_id = ? AND created_at <= ?",
                (account_id, now - keep.chunk_grace_seconds),
            )
            doomed = [(cid, size, pack) for cid, size, pack in candidates if cid not in referenced]
            tx.many("DELETE FROM chunks WHERE account_id = ? AND id = ?",
                    [(account_id, cid) for cid, _, _ in doomed])
            freed = sum(size for _, size, _ in doomed)
            tx.run("UPDATE accounts SET used_bytes = used_bytes - ? WHERE id = ?", (freed, account_id))
            packs = empty_packs(tx, account_id)
            self._compact_tombstones(tx, account_id, now)
        return Collected(chunks=[cid for cid, _, _ in doomed],
                         own_blobs=[cid for cid, _, pack in doomed if pack is None], packs=packs)

    @staticmethod
    def _compact_tombstones(tx: Tx, account_id: int, now: int) -> None:
        """Forget long-purged nodes; clients whose cursor predates them must relist (410)."""
        cutoff = now - TOMBSTONE_DAYS * DAY
        row = tx.one(
            "SELECT MAX(rev) FROM nodes WHERE account_id = ? AND state = 'purged' AND trashed_at < ?",
            (account_id, cutoff),
        )
        if row and row[0] is not None:
            tx.run("DELETE FROM nodes WHERE account_id = ? AND state = 'purged' AND trashed_at < ?",
                   (account_id, cutoff))
            tx.run("UPDATE accounts SET journal_floor = ? WHERE id = ? AND journal_floor < ?",
                   (row[0], account_id, row[0]))

    @abstractmethod
    def close(self) -> None:
        """Release the engine's connections."""
