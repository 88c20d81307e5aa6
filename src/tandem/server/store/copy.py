"""Copy a whole metadata store into another (SQLite to PostgreSQL, or back), then verify it.

The copy is one write transaction on the target, so it lands whole or not at all; the target
must hold no account. Both stores are at the current schema (opening one migrates it), so
every table has the same columns on both sides. Verification reads both again and compares,
per table, the row count and an order-independent digest of the rows (engines order text
differently, so rows are not compared in order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from tandem.server.store.sql import SqlStore
from tandem.server.store.tx import Tx

#: Every table of the schema, parents before children.
TABLES = ("accounts", "devices", "nodes", "versions", "chunks", "packs", "snapshots")
_BATCH = 1000
_DIGEST_MODULUS = 2**256


class CopyError(Exception):
    """The copy was refused or did not verify; the message says why."""


def _normalised(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(bytes(v) if isinstance(v, bytes | memoryview | bytearray) else v for v in row)


def _batches(tx: Tx, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in tx.stream(f"SELECT {', '.join(columns)} FROM {table}"):
        batch.append(_normalised(row))
        if len(batch) == _BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def copy_store(source: SqlStore, target: SqlStore) -> dict[str, int]:
    """Copy every row of `source` into the empty `target`; returns rows copied per table."""
    copied: dict[str, int] = {}
    with source._transaction(write=False) as reading, target._transaction(write=True) as writing:
        held = writing.one("SELECT COUNT(*) FROM accounts")[0]
        if held:
            raise CopyError(f"the target already holds {held} account(s): migrate into an"
                            " empty database")
        for table in TABLES:
            columns = reading.columns(table)
            insert = (f"INSERT INTO {table} ({', '.join(columns)})"
                      f" VALUES ({', '.join('?' * len(columns))})")
            copied[table] = 0
            for batch in _batches(reading, table, columns):
                writing.many(insert, batch)
                copied[table] += len(batch)
        target._after_import(writing)
    return copied


def table_digest(store: SqlStore, table: str) -> tuple[int, int]:
    """(rows, digest) of a table: the digest is the sum of the rows' hashes, so any order."""
    count, total = 0, 0
    with store._transaction(write=False) as tx:
        for batch in _batches(tx, table, sorted(tx.columns(table))):
            for row in batch:
                count += 1
                total += int.from_bytes(hashlib.blake2b(repr(row).encode(), digest_size=32).digest())
    return count, total % _DIGEST_MODULUS


def verify_copy(source: SqlStore, target: SqlStore) -> None:
    """Raise `CopyError` naming the first table whose rows differ between the two stores."""
    for table in TABLES:
        if table_digest(source, table) != table_digest(target, table):
            raise CopyError(f"verification failed: table {table} differs between source and target")
