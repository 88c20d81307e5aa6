"""Backup snapshots in portable SQL: create (every referenced chunk must be stored), list, get,
delete, the account's backups across devices, and the chunk ids GC must keep.

The server never sees a snapshot's names or contents: only the manifest of its encrypted
document, the ids of the chunks it references (keyed hashes, already visible), its time,
total size and file count, and its backup's label as the client sealed it.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from tandem.server.store.base import BackupSummary, Snapshot, StoreError, not_found
from tandem.server.store.batch import BatchApplier, manifest_from_json

if TYPE_CHECKING:
    from tandem.server.store.tx import Tx

_COLUMNS = "id, backup_id, device_id, taken_at_ns, created_at, size, files, document, label"
#: How many missing ids a refusal lists (the client uploads them and retries).
_MISSING_SHOWN = 1000


def _snapshot(row: Sequence[Any]) -> Snapshot:
    return Snapshot(id=row[0], backup_id=row[1], device_id=row[2], taken_at_ns=row[3],
                    created_at=row[4], size=row[5], files=row[6],
                    document=manifest_from_json(row[7]),
                    label=bytes(row[8]) if row[8] is not None else None)


def referenced_chunks(tx: Tx, account_id: int) -> Iterator[str]:
    """Every chunk id a live snapshot references: garbage collection keeps these."""
    for (chunks,) in tx.all("SELECT chunks FROM snapshots WHERE account_id = ?", (account_id,)):
        yield from json.loads(chunks)


class SnapshotRules:
    """The snapshot operations of `SqlStore` (mixed in; it supplies the transactions)."""

    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Tx]: ...

    @abstractmethod
    def _locked(self, account_id: int) -> AbstractContextManager[Tx]: ...

    def create_snapshot(self, account_id: int, device_id: str, snapshot: Snapshot,
                        chunk_ids: list[str]) -> Snapshot:
        """Record a snapshot once every chunk it references (its document's included) is
        stored; the same id again (a retried request) answers with the stored snapshot."""
        referenced = list(dict.fromkeys([*chunk_ids, *(c for c, _ in snapshot.document)]))
        with self._locked(account_id) as tx:
            row = tx.one(f"SELECT {_COLUMNS} FROM snapshots WHERE account_id = ? AND id = ?",
                         (account_id, snapshot.id))
            if row is not None:
                if row[1] != snapshot.backup_id:
                    raise StoreError(409, "snapshot_exists",
                                     "a snapshot with this id belongs to another backup")
                return _snapshot(row)
            present = BatchApplier.present_chunks(tx, account_id, referenced)
            missing = [c for c in referenced if c not in present]
            if missing:
                raise StoreError(409, "missing_chunks",
                                 f"{len(missing)} chunk(s) are not on the server: upload them first",
                                 missing=missing[:_MISSING_SHOWN])
            tx.run(
                "INSERT INTO snapshots (account_id, id, backup_id, device_id, taken_at_ns,"
                " created_at, size, files, document, chunks, label)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (account_id, snapshot.id, snapshot.backup_id, device_id, snapshot.taken_at_ns,
                 snapshot.created_at, snapshot.size, snapshot.files,
                 json.dumps(snapshot.document, separators=(",", ":")),
                 json.dumps(referenced, separators=(",", ":")), snapshot.label),
            )
        snapshot.device_id = device_id
        return snapshot

    def snapshots(self, account_id: int, backup_id: str) -> list[Snapshot]:
        """A backup's snapshots, oldest first (an unknown backup simply has none)."""
        with self._transaction(write=False) as tx:
            rows = tx.all(f"SELECT {_COLUMNS} FROM snapshots WHERE account_id = ? AND backup_id = ?"
                          " ORDER BY taken_at_ns, id", (account_id, backup_id))
        return [_snapshot(row) for row in rows]

    def backups(self, account_id: int) -> list[BackupSummary]:
        """Every backup of the account, whichever device made it, by id: so a device that
        made none can find a lost one's. One pass over the snapshot rows (not their chunk
        lists): retention keeps them to a few hundred per backup."""
        with self._transaction(write=False) as tx:
            rows = tx.all("SELECT s.backup_id, s.id, s.taken_at_ns, s.device_id, d.name, s.label"
                          " FROM snapshots s LEFT JOIN devices d"
                          " ON d.account_id = s.account_id AND d.id = s.device_id"
                          " WHERE s.account_id = ? ORDER BY s.backup_id, s.taken_at_ns, s.id",
                          (account_id,))
        found: dict[str, BackupSummary] = {}
        for backup_id, snapshot_id, taken_at_ns, device_id, device_name, label in rows:
            summary = found.setdefault(backup_id, BackupSummary(backup_id, None, None, 0, 0, ""))
            summary.snapshots += 1
            summary.device_id, summary.device_name = device_id, device_name
            summary.newest_taken_at_ns, summary.newest_snapshot_id = taken_at_ns, snapshot_id
            if label is not None:
                summary.label = bytes(label)
        return list(found.values())

    def snapshot(self, account_id: int, snapshot_id: str) -> Snapshot:
        with self._transaction(write=False) as tx:
            row = tx.one(f"SELECT {_COLUMNS} FROM snapshots WHERE account_id = ? AND id = ?",
                         (account_id, snapshot_id))
        if row is None:
            raise not_found("snapshot")
        return _snapshot(row)

    def delete_snapshot(self, account_id: int, snapshot_id: str) -> None:
        """Forget a snapshot; its chunks go at the next GC unless something else holds them."""
        with self._transaction(write=True) as tx:
            if not tx.run("DELETE FROM snapshots WHERE account_id = ? AND id = ?",
                          (account_id, snapshot_id)):
                raise not_found("snapshot")
