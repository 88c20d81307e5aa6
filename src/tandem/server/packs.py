"""Chunks in packs: many ciphertexts concatenated in one blob, written with one durable write.

An upload (`POST /chunks/pack`, or `PUT /chunks/{id}` as a pack of one) writes its fresh chunks
as one pack blob `<account>/p/<random hex>`, then records each chunk's (pack, offset, size) in
the transaction that records the chunks, so creating a file per chunk no longer dominates
uploads of small files. Chunks recorded before packs are still blobs of their own under
`<account>/<chunk id>`.

Garbage collection (`collect_account`, under the account lock, so no upload runs meanwhile)
drops unreferenced chunk records, deletes packs with no live chunk left, repacks packs that are
mostly dead (live chunks copied into a new pack written durably, the records switched in one
transaction, then the old packs deleted), and deletes blobs no record points to (a crash
between writing and recording). The order keeps every recorded chunk readable at any crash.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator

from tandem.server.blobs.base import BlobStore
from tandem.server.deps import Services, chunk_key, now
from tandem.server.store.base import ChunkLocation, PackedChunk, StoreError

log = logging.getLogger("tandem.server.packs")

#: Repacking copies live chunks into new packs of about this many bytes.
REPACK_BYTES = 8 * 1024 * 1024
#: The orphan sweep asks the metadata store about this many blobs at a time.
_SWEEP_GROUP = 1000
_PACK_KEY = re.compile(r"^p/([0-9a-f]{32})$")
_OWN_KEY = re.compile(r"^([0-9a-f]{64})$")


def new_pack_id() -> str:
    return secrets.token_hex(16)


def pack_key(account_id: int, pack_id: str) -> str:
    return f"{account_id}/p/{pack_id}"


def location_key(account_id: int, chunk_id: str, location: ChunkLocation) -> str:
    if location.pack is None:
        return chunk_key(account_id, chunk_id)
    return pack_key(account_id, location.pack)


# ---- writing ----------------------------------------------------------------------------------

def store_pack(parts: Services, account_id: int, fresh: dict[str, bytes]) -> int:
    """Write `fresh` chunks (id -> ciphertext, verified, not stored yet) as one pack, durably,
    then record them. The caller holds the account's upload lock. Returns how many were
    recorded. A failure after the write leaves an unrecorded pack that the next GC deletes."""
    entries, offset = [], 0
    for chunk_id, data in fresh.items():
        entries.append((chunk_id, offset, len(data)))
        offset += len(data)
    return write_pack(parts, account_id, b"".join(fresh.values()), entries)


def write_pack(parts: Services, account_id: int, data: bytes | bytearray,
               entries: list[tuple[str, int, int]]) -> int:
    """`store_pack` for ciphertexts already side by side in `data`: (chunk id, offset, length)
    of each, covering `data` exactly."""
    if not entries:
        return 0
    pack_id = new_pack_id()
    key = pack_key(account_id, pack_id)
    parts.blobs.put(key, data)
    stored = parts.store.record_pack(account_id, pack_id, len(data), entries, now())
    if stored == 0:
        # Another upload recorded every one of these chunks meanwhile: nothing points here.
        parts.blobs.delete(key)
    return stored


# ---- reading ----------------------------------------------------------------------------------

def _read(blobs: BlobStore, account_id: int, chunk_id: str, location: ChunkLocation) -> bytes | None:
    """The chunk's bytes at `location`, or None if they are not there (whole and exactly)."""
    key = location_key(account_id, chunk_id, location)
    try:
        if location.pack is None:
            data = blobs.get(key)
        else:
            data = blobs.get_range(key, location.offset, location.size)
    except KeyError:
        return None
    # Never hand out a short read or another chunk's bytes as this chunk.
    return data if len(data) == location.size else None


def read_chunk(parts: Services, account_id: int, chunk_id: str,
               location: ChunkLocation | None = None) -> bytes:
    """One chunk's ciphertext. A read that misses looks the chunk up again: GC may have moved
    it to a new pack (and deleted the old one) between the look-up and the read."""
    for _ in range(3):
        if location is None:
            location = parts.store.chunk_locations(account_id, [chunk_id]).get(chunk_id)
            if location is None:
                raise StoreError(404, "not_found", "chunk not found")
        data = _read(parts.blobs, account_id, chunk_id, location)
        if data is not None:
            return data
        log.info("chunk %s/%s not at %s: looking it up again", account_id, chunk_id, location)
        location = None
    raise StoreError(404, "chunk_lost", "chunk is recorded but its data is gone")


def read_chunks(parts: Services, account_id: int,
                wanted: list[tuple[str, ChunkLocation]]) -> list[bytes]:
    """Several chunks' ciphertexts in order; neighbours in one pack are read with one ranged
    read (a file's chunks are usually uploaded, so packed, in order)."""
    out: list[bytes] = []
    index = 0
    while index < len(wanted):
        chunk_id, first = wanted[index]
        end = index + 1
        if first.pack is not None:
            reach = first.offset + first.size
            while end < len(wanted):
                location = wanted[end][1]
                if location.pack != first.pack or location.offset != reach:
                    break
                reach += location.size
                end += 1
        if end - index == 1:
            out.append(read_chunk(parts, account_id, chunk_id, first))
        else:
            run = wanted[index:end]
            length = sum(location.size for _, location in run)
            try:
                data = parts.blobs.get_range(pack_key(account_id, str(first.pack)), first.offset,
                                             length)
            except KeyError:
                data = b""
            if len(data) == length:
                with memoryview(data) as view:
                    for _, location in run:
                        start = location.offset - first.offset
                        out.append(bytes(view[start : start + location.size]))
            else:  # moved or gone: one at a time, each looked up again if need be
                out.extend(read_chunk(parts, account_id, cid, loc) for cid, loc in run)
        index = end
    return out


# ---- garbage collection -----------------------------------------------------------------------

def collect_account(parts: Services, account_id: int) -> int:
    """Collect one account's garbage; returns how many chunk records were dropped.

    Records go first, blobs after (a crash between leaves only blobs no record points to,
    never a record without its bytes); with this account's uploads excluded by the lock, a
    blob no record points to is left over from a crash, and is deleted too."""
    with parts.locks.collecting(account_id):
        collected = parts.store.collect_garbage(account_id, now())
        for chunk_id in collected.own_blobs:
            parts.blobs.delete(chunk_key(account_id, chunk_id))
        for pack_id in collected.packs:
            parts.blobs.delete(pack_key(account_id, pack_id))
        repack(parts, account_id)
        sweep_orphans(parts, account_id)
    return len(collected.chunks)


def repack(parts: Services, account_id: int) -> int:
    """Copy the live chunks of mostly-dead packs into new packs; returns how many old packs
    were deleted. Per new pack: write it durably, switch the records in one transaction, then
    delete the old packs. Runs under the account's GC lock."""
    sparse = parts.store.sparse_packs(account_id)
    if not sparse:
        return 0
    deleted = 0
    for group in _repack_groups(parts.store.packed_chunks(account_id, sparse)):
        deleted += _repack_group(parts, account_id, group)
    return deleted


def _repack_groups(chunks: list[PackedChunk]) -> Iterator[list[PackedChunk]]:
    """Whole packs' live chunks, several packs to a group up to REPACK_BYTES."""
    group: list[PackedChunk] = []
    size = 0
    by_pack: dict[str, list[PackedChunk]] = {}
    for chunk in chunks:
        by_pack.setdefault(chunk.pack, []).append(chunk)
    for members in by_pack.values():
        live = sum(c.size for c in members)
        if group and size + live > REPACK_BYTES:
            yield group
            group, size = [], 0
        group.extend(members)
        size += live
    if group:
        yield group


def _repack_group(parts: Services, account_id: int, group: list[PackedChunk]) -> int:
    pieces: list[bytes] = []
    moves: list[tuple[PackedChunk, int]] = []
    offset = 0
    old_packs = list(dict.fromkeys(c.pack for c in group))
    for pack_id in old_packs:
        members = [c for c in group if c.pack == pack_id]
        try:
            blob = parts.blobs.get(pack_key(account_id, pack_id))
        except KeyError:
            log.error("pack %s/%s is recorded but missing: not repacked", account_id, pack_id)
            return 0
        for chunk in members:
            data = blob[chunk.offset : chunk.offset + chunk.size]
            if len(data) != chunk.size:
                log.error("pack %s/%s is shorter than its chunks: not repacked", account_id,
                          pack_id)
                return 0
            pieces.append(data)
            moves.append((chunk, offset))
            offset += chunk.size
    new_pack = new_pack_id()
    parts.blobs.put(pack_key(account_id, new_pack), b"".join(pieces))
    if not parts.store.move_chunks(account_id, new_pack, offset, moves, now()):
        log.warning("chunks of account %s moved during repacking: new pack dropped", account_id)
        parts.blobs.delete(pack_key(account_id, new_pack))
        return 0
    for pack_id in old_packs:
        parts.blobs.delete(pack_key(account_id, pack_id))
    return len(old_packs)


def sweep_orphans(parts: Services, account_id: int) -> None:
    """Delete this account's blobs that no chunk record points to: a pack is kept while any
    chunk record points into it, a blob under a chunk's own id while that chunk's record says
    so. Blobs with other names are not ours to judge and are left alone."""
    prefix = f"{account_id}/"
    own: list[str] = []
    packs: list[str] = []
    for key in parts.blobs.keys(prefix):
        name = key[len(prefix):]
        if match := _PACK_KEY.match(name):
            packs.append(match.group(1))
        elif match := _OWN_KEY.match(name):
            own.append(match.group(1))
        if len(own) + len(packs) >= _SWEEP_GROUP:
            _delete_orphans(parts, account_id, own, packs)
            own, packs = [], []
    _delete_orphans(parts, account_id, own, packs)


def _delete_orphans(parts: Services, account_id: int, own: list[str], packs: list[str]) -> None:
    if not own and not packs:
        return
    orphan_chunks, orphan_packs = parts.store.unreferenced_blobs(account_id, own, packs)
    for chunk_id in orphan_chunks:
        parts.blobs.delete(chunk_key(account_id, chunk_id))
    for pack_id in orphan_packs:
        log.info("deleting pack %s/%s: no chunk record points to it", account_id, pack_id)
        parts.blobs.delete(pack_key(account_id, pack_id))
