"""Look inside a server's data folder the way its code does: chunk records in `meta.db` (or the
PostgreSQL database it was started with, see `DATABASE_URLS`), their bytes in blob files (a
pack of many chunks, or, for chunks recorded before packs, a file of their own). Tests use
these to check what is really on disk, not only what the API answers.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import psycopg

#: The metadata database of a server started with --database, by its data folder.
DATABASE_URLS: dict[Path, str] = {}


def blob_files(data_dir: Path) -> set[Path]:
    """Every blob file (packs and own-id blobs; not temp files being written)."""
    return {p for p in (data_dir / "blobs").rglob("*") if p.is_file() and ".tmp" not in p.parts}


def blob_path(data_dir: Path, key: str) -> Path:
    """The file of a blob key, laid out as `LocalBlobStore` lays it out."""
    head, _, name = key.rpartition("/")
    return data_dir / "blobs" / head / name[:2] / name


def _rows(data_dir: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    url = DATABASE_URLS.get(data_dir)
    if url is not None:
        with psycopg.connect(url, connect_timeout=10) as connection:
            return list(connection.execute(sql.replace("?", "%s"), params).fetchall())
    with closing(sqlite3.connect(data_dir / "meta.db", timeout=30)) as db:
        return list(db.execute(sql, params).fetchall())


def _where(data_dir: Path, row: tuple[object, ...]) -> tuple[Path, int, int]:
    chunk_id, account_id, pack, offset, size = (str(v) if v is not None else None for v in row)
    if pack is None:
        return blob_path(data_dir, f"{account_id}/{chunk_id}"), 0, int(str(size))
    return blob_path(data_dir, f"{account_id}/p/{pack}"), int(str(offset)), int(str(size))


_LOCATION = "SELECT id, account_id, pack, pack_offset, size FROM chunks"


def chunk_blob(data_dir: Path, chunk_id: str) -> tuple[Path, int, int] | None:
    """Where a recorded chunk's bytes are: (blob file, offset, size); None if not recorded."""
    rows = _rows(data_dir, _LOCATION + " WHERE id = ?", (chunk_id,))
    return _where(data_dir, rows[0]) if rows else None


def stored_bytes(data_dir: Path, chunk_id: str) -> bytes | None:
    """A recorded chunk's bytes read straight from its blob file; None if it is not recorded
    or its file is missing or too short."""
    where = chunk_blob(data_dir, chunk_id)
    if where is None or not where[0].exists():
        return None
    path, offset, size = where
    with path.open("rb") as handle:
        handle.seek(offset)
        data = handle.read(size)
    return data if len(data) == size else None


def blob_exists(data_dir: Path, chunk_id: str) -> bool:
    """The chunk is recorded and its bytes are on disk."""
    return stored_bytes(data_dir, chunk_id) is not None


def recorded_chunk_ids(data_dir: Path) -> set[str]:
    """Every chunk the server has recorded whose blob file is there and long enough."""
    found = set()
    for row in _rows(data_dir, _LOCATION):
        path, offset, size = _where(data_dir, row)
        try:
            if path.stat().st_size >= offset + size:
                found.add(str(row[0]))
        except FileNotFoundError:
            pass
    return found
