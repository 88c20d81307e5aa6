"""Copy every blob of one store into another (a folder to S3, S3 to a folder, folder to folder),
then verify the copy: `tandem migrate` with blob URLs.

Resumable: the target is listed first, and a key it already holds with the same length is
skipped (blobs never change, so the same key and length is the same blob, which the
verification then reads to make sure), so a copy that stopped halfway goes on where it was.
Writes are the stores' own create-only, durable `put_many` (a folder: two filesystem flushes
per batch; S3: parallel PUTs). Verification lists both sides (every source key present in the
target with the same length), then reads every blob on both sides and compares each key's
BLAKE3; the digest it reports is over every (key, BLAKE3) pair, in any order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import blake3

from tandem.server.blobs.base import BlobStore

#: A batch read from the source and written with one `put_many`: at most this many blobs...
_BATCH_BLOBS = 64
#: ... and about this many bytes (packs are up to 12 MiB).
_BATCH_BYTES = 64 * 1024 * 1024
#: Blobs read (and hashed) at once.
_WORKERS = 8


class BlobCopyError(Exception):
    """The copy was refused or did not verify; the message says why and what to do."""


@dataclass
class BlobCopy:
    """What a copy did, updated as it goes (a progress line reads it)."""

    to_copy: int = 0
    copied: int = 0
    bytes_to_copy: int = 0
    bytes_copied: int = 0
    skipped: int = 0


def _batches(todo: list[tuple[str, int]]) -> Iterator[list[tuple[str, int]]]:
    batch: list[tuple[str, int]] = []
    size = 0
    for key, length in todo:
        if batch and (len(batch) == _BATCH_BLOBS or size + length > _BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((key, length))
        size += length
    if batch:
        yield batch


def copy_blobs(source: BlobStore, target: BlobStore, progress: BlobCopy | None = None) -> BlobCopy:
    """Copy the blobs `target` lacks; refuses a key the target holds with another length."""
    done = progress or BlobCopy()
    present = dict(target.sizes())
    todo: list[tuple[str, int]] = []
    for key, length in source.sizes():
        held = present.get(key)
        if held == length:
            done.skipped += 1
        elif held is not None:
            raise BlobCopyError(f"the target already holds blob {key} with {held} bytes, the source"
                                f" {length}: remove it from the target and run again")
        else:
            todo.append((key, length))
    done.to_copy = len(todo)
    done.bytes_to_copy = sum(length for _, length in todo)
    with ThreadPoolExecutor(_WORKERS, thread_name_prefix="tandem-copy") as pool:
        for batch in _batches(todo):
            datas = list(pool.map(_reader(source), [key for key, _ in batch]))
            for (key, length), data in zip(batch, datas, strict=True):
                if len(data) != length:
                    raise BlobCopyError(f"blob {key} changed length while copied: stop the"
                                        " servers using the source, then run again")
            target.put_many([(key, data) for (key, _), data in zip(batch, datas, strict=True)])
            done.copied += len(batch)
            done.bytes_copied += sum(length for _, length in batch)
    return done


def _reader(store: BlobStore) -> Callable[[str], bytes]:
    def read(key: str) -> bytes:
        try:
            return store.get(key)
        except KeyError:
            raise BlobCopyError(f"blob {key} vanished while copied: stop the servers using the"
                                " source, then run again") from None
    return read


def verify_blobs(source: BlobStore, target: BlobStore) -> tuple[int, str]:
    """Every source blob is in the target, same length and same content; returns (blobs,
    digest). Raises `BlobCopyError` naming the first difference."""
    wanted = dict(source.sizes())
    held = dict(target.sizes())
    lacking = [key for key in wanted if key not in held]
    if lacking:
        raise BlobCopyError(f"verification failed: {len(lacking)} blob(s) missing from the target"
                            f" (first: {lacking[0]}): run the migration again")
    for key, length in wanted.items():
        if held[key] != length:
            raise BlobCopyError(f"verification failed: blob {key} has {held[key]} bytes in the"
                                f" target, {length} in the source")

    def compare(key: str) -> bytes:
        mine = blake3.blake3(_reader(source)(key)).digest()
        if blake3.blake3(_reader(target)(key)).digest() != mine:
            raise BlobCopyError(f"verification failed: blob {key} differs between source and target")
        return hashlib.blake2b(key.encode() + b"\0" + mine, digest_size=32).digest()

    total = 0
    with ThreadPoolExecutor(_WORKERS // 2, thread_name_prefix="tandem-verify") as pool:
        for pair in pool.map(compare, sorted(wanted)):
            total = (total + int.from_bytes(pair)) % 2**256
    return len(wanted), f"{total:064x}"
