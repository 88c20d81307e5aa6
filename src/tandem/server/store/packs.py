"""Where chunks live, in portable SQL: recording a pack, finding a chunk, and the bookkeeping of
garbage collection (empty packs, sparse packs to repack, blobs no record points to).

A chunk uploaded since migration 3 is `size` bytes at `pack_offset` in the pack blob `pack`;
`packs` holds each recorded pack's length. A chunk recorded before has `pack` NULL: it is the
whole blob stored under its own id. Nothing here touches blobs: the caller writes a pack before
recording it and deletes blobs only after the records stopped pointing at them, so every
recorded chunk stays readable whatever crashes in between.
"""

from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from tandem.server.store.base import ChunkLocation, PackedChunk
from tandem.server.store.batch import _IN_GROUP, BatchApplier

if TYPE_CHECKING:
    from tandem.server.store.tx import Tx


def _groups(values: list[str]) -> list[list[str]]:
    unique = list(dict.fromkeys(values))
    return [unique[start : start + _IN_GROUP] for start in range(0, len(unique), _IN_GROUP)]


def empty_packs(tx: Tx, account_id: int) -> list[str]:
    """Forget the packs no chunk record points to any more; returns their ids (the caller
    deletes their blobs after the transaction commits)."""
    empty = [row[0] for row in tx.all(
        "SELECT id FROM packs p WHERE account_id = ? AND NOT EXISTS (SELECT 1 FROM chunks c"
        " WHERE c.account_id = p.account_id AND c.pack = p.id)", (account_id,))]
    tx.many("DELETE FROM packs WHERE account_id = ? AND id = ?", [(account_id, p) for p in empty])
    return empty


class PackRules:
    """The chunk-location operations of `SqlStore` (mixed in; it supplies the transactions)."""

    @abstractmethod
    def _transaction(self, write: bool) -> AbstractContextManager[Tx]: ...

    @abstractmethod
    def _locked(self, account_id: int) -> AbstractContextManager[Tx]: ...

    def record_pack(self, account_id: int, pack_id: str, pack_size: int,
                    chunks: list[tuple[str, int, int]], now: int) -> int:
        """Record the chunks of a pack just written, `(chunk id, offset, size)` each, and the
        pack itself, in one transaction. Create-only: a chunk recorded meanwhile (by another
        upload) keeps its location. Returns how many were recorded; with none, the pack is not
        recorded either and the caller may delete its blob."""
        if not chunks:
            return 0
        with self._locked(account_id) as tx:
            present = BatchApplier.present_chunks(tx, account_id, [c for c, _, _ in chunks])
            fresh = {c: (offset, size) for c, offset, size in chunks if c not in present}
            if not fresh:
                return 0
            tx.run("INSERT INTO packs (account_id, id, size, created_at) VALUES (?, ?, ?, ?)",
                   (account_id, pack_id, pack_size, now))
            tx.many("INSERT INTO chunks (account_id, id, size, created_at, pack, pack_offset)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(account_id, c, size, now, pack_id, offset)
                     for c, (offset, size) in fresh.items()])
            tx.run("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?",
                   (sum(size for _, size in fresh.values()), account_id))
            return len(fresh)

    def chunk_locations(self, account_id: int, chunk_ids: list[str]) -> dict[str, ChunkLocation]:
        """Where each recorded chunk of `chunk_ids` is (unknown ids are left out)."""
        found: dict[str, ChunkLocation] = {}
        with self._transaction(write=False) as tx:
            for group in _groups(chunk_ids):
                marks = ",".join("?" * len(group))
                for chunk_id, pack, offset, size in tx.all(
                        "SELECT id, pack, pack_offset, size FROM chunks WHERE account_id = ?"
                        f" AND id IN ({marks})", (account_id, *group)):
                    found[chunk_id] = ChunkLocation(pack, int(offset or 0), int(size))
        return found

    def sparse_packs(self, account_id: int) -> list[str]:
        """Packs whose live chunks fill less than half of them: GC copies those chunks into a
        new pack, so dead bytes do not stay on disk for as long as one chunk of a pack lives."""
        with self._transaction(write=False) as tx:
            rows = tx.all(
                "SELECT p.id FROM packs p JOIN chunks c ON c.account_id = p.account_id"
                " AND c.pack = p.id WHERE p.account_id = ? GROUP BY p.id, p.size"
                " HAVING 2 * SUM(c.size) < p.size ORDER BY p.id", (account_id,))
        return [row[0] for row in rows]

    def packed_chunks(self, account_id: int, pack_ids: list[str]) -> list[PackedChunk]:
        """The live chunks of these packs, in pack and offset order."""
        chunks: list[PackedChunk] = []
        with self._transaction(write=False) as tx:
            for group in _groups(pack_ids):
                marks = ",".join("?" * len(group))
                chunks.extend(PackedChunk(pack, chunk_id, int(offset), int(size))
                              for pack, chunk_id, offset, size in tx.all(
                    "SELECT pack, id, pack_offset, size FROM chunks WHERE account_id = ?"
                    f" AND pack IN ({marks})", (account_id, *group)))
        return sorted(chunks, key=lambda c: (c.pack, c.offset))

    def move_chunks(self, account_id: int, new_pack: str, new_size: int,
                    moves: list[tuple[PackedChunk, int]], now: int) -> bool:
        """Point chunks at their copies in `new_pack` (written durably before this), `(chunk
        as it was, offset in the new pack)` each, and forget the old packs, in one transaction.
        Refused (False, nothing changes) if any chunk moved meanwhile or an old pack still has
        a chunk not moved: then only the new pack's blob is garbage, never a live chunk."""
        old_packs = sorted({chunk.pack for chunk, _ in moves})
        try:
            with self._locked(account_id) as tx:
                tx.run("INSERT INTO packs (account_id, id, size, created_at) VALUES (?, ?, ?, ?)",
                       (account_id, new_pack, new_size, now))
                for chunk, offset in moves:
                    changed = tx.run(
                        "UPDATE chunks SET pack = ?, pack_offset = ? WHERE account_id = ? AND id = ?"
                        " AND pack = ? AND pack_offset = ? AND size = ?",
                        (new_pack, offset, account_id, chunk.chunk_id, chunk.pack, chunk.offset,
                         chunk.size))
                    if changed != 1:
                        raise _MoveRefused
                for group in _groups(old_packs):
                    marks = ",".join("?" * len(group))
                    if tx.one(f"SELECT 1 FROM chunks WHERE account_id = ? AND pack IN ({marks})"
                              " LIMIT 1", (account_id, *group)):
                        raise _MoveRefused
                tx.many("DELETE FROM packs WHERE account_id = ? AND id = ?",
                        [(account_id, p) for p in old_packs])
        except _MoveRefused:
            return False
        return True

    def unreferenced_blobs(self, account_id: int, chunk_ids: list[str],
                           pack_ids: list[str]) -> tuple[list[str], list[str]]:
        """Of blobs found in the store (chunks under their own id, packs), those no chunk record
        points to: left by a crash between writing a blob and recording it, or between the
        records letting go of a blob and its deletion."""
        own: set[str] = set()
        referenced: set[str] = set()
        with self._transaction(write=False) as tx:
            for group in _groups(chunk_ids):
                marks = ",".join("?" * len(group))
                own.update(row[0] for row in tx.all(
                    f"SELECT id FROM chunks WHERE account_id = ? AND id IN ({marks})"
                    " AND pack IS NULL", (account_id, *group)))
            for group in _groups(pack_ids):
                marks = ",".join("?" * len(group))
                referenced.update(row[0] for row in tx.all(
                    f"SELECT DISTINCT pack FROM chunks WHERE account_id = ? AND pack IN ({marks})",
                    (account_id, *group)))
        return ([c for c in dict.fromkeys(chunk_ids) if c not in own],
                [p for p in dict.fromkeys(pack_ids) if p not in referenced])


class _MoveRefused(Exception):
    """Rolls back a `move_chunks` whose chunks are not where the caller read them."""
