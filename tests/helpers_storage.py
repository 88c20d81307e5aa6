"""Look inside a server's storage the way its code does: chunk records in `meta.db` (or the
PostgreSQL database it was started with, see `DATABASE_URLS`), their bytes in blobs (a pack
of many chunks, or, for chunks recorded before packs, a blob of their own) in its blob store:
the `blobs` folder in its data folder, or the store it was started with (`BLOB_URLS`, e.g. an
S3 bucket). Tests use these to check what is really stored, not only what the API answers.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import psycopg

from tandem.server.blobs import BlobStore, open_blob_store

#: The metadata database of a server started with --database, by its data folder.
DATABASE_URLS: dict[Path, str] = {}
#: The blob store of a server started with --blobs, by its data folder.
BLOB_URLS: dict[Path, str] = {}


@cache
def _open(url: str) -> BlobStore:
    return open_blob_store(url)


def blob_store(data_dir: Path) -> BlobStore:
    """The server's blob store, opened here as the server opens it."""
    return _open(BLOB_URLS.get(data_dir) or (data_dir / "blobs").resolve().as_uri())


@dataclass(frozen=True)
class StoredBlob:
    """One blob of a server's store, by key (a file in a folder, an object in a bucket)."""

    data_dir: Path
    key: str

    def exists(self) -> bool:
        return blob_store(self.data_dir).exists(self.key)

    def size(self) -> int:
        return len(blob_store(self.data_dir).get(self.key))

    def write(self, data: bytes) -> None:
        blob_store(self.data_dir).put(self.key, data)

    def remove(self) -> None:
        blob_store(self.data_dir).delete(self.key)


def stored_blobs(data_dir: Path) -> set[StoredBlob]:
    """Every blob (packs and own-id blobs; not temp files being written)."""
    return {StoredBlob(data_dir, key) for key in blob_store(data_dir).keys(prefix="")}


@cache
def _connection(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """One connection per database for the whole session (a test reads chunk locations by the
    hundred; a connection each would cost more than the reads)."""
    return psycopg.connect(url, connect_timeout=10, autocommit=True)


def _rows(data_dir: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    url = DATABASE_URLS.get(data_dir)
    if url is not None:
        return list(_connection(url).execute(sql.replace("?", "%s"), params).fetchall())
    with closing(sqlite3.connect(data_dir / "meta.db", timeout=30)) as db:
        return list(db.execute(sql, params).fetchall())


def _where(data_dir: Path, row: tuple[object, ...]) -> tuple[StoredBlob, int, int]:
    chunk_id, account_id, pack, offset, size = (str(v) if v is not None else None for v in row)
    if pack is None:
        return StoredBlob(data_dir, f"{account_id}/{chunk_id}"), 0, int(str(size))
    return StoredBlob(data_dir, f"{account_id}/p/{pack}"), int(str(offset)), int(str(size))


_LOCATION = "SELECT id, account_id, pack, pack_offset, size FROM chunks"


def chunk_blob(data_dir: Path, chunk_id: str) -> tuple[StoredBlob, int, int] | None:
    """Where a recorded chunk's bytes are: (blob, offset, size); None if not recorded."""
    rows = _rows(data_dir, _LOCATION + " WHERE id = ?", (chunk_id,))
    return _where(data_dir, rows[0]) if rows else None


def stored_bytes(data_dir: Path, chunk_id: str) -> bytes | None:
    """A recorded chunk's bytes read straight from its blob; None if it is not recorded or
    its blob is missing or too short."""
    where = chunk_blob(data_dir, chunk_id)
    if where is None:
        return None
    blob, offset, size = where
    try:
        data = blob_store(data_dir).get_range(blob.key, offset, size)
    except KeyError:
        return None
    return data if len(data) == size else None


def blob_exists(data_dir: Path, chunk_id: str) -> bool:
    """The chunk is recorded and its bytes are stored."""
    return stored_bytes(data_dir, chunk_id) is not None


def recorded_chunk_ids(data_dir: Path) -> set[str]:
    """Every chunk the server has recorded whose blob is there and long enough."""
    sizes = dict(blob_store(data_dir).sizes())
    found = set()
    for row in _rows(data_dir, _LOCATION):
        blob, offset, size = _where(data_dir, row)
        if sizes.get(blob.key, -1) >= offset + size:
            found.add(str(row[0]))
    return found
