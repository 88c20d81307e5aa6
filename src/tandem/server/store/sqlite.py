"""SQLite engine for the metadata store: the embedded default (one file, WAL mode)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tandem.server.store.base import Retention
from tandem.server.store.schema import migrate
from tandem.server.store.sql import SqlStore
from tandem.server.store.tx import Tx


class SqliteStore(SqlStore):
    """One connection per thread; writers serialise on SQLite's lock (BEGIN IMMEDIATE)."""

    integrity_errors = (sqlite3.IntegrityError,)

    def __init__(self, path: Path, retention: Retention | None = None,
                 quota_bytes: int | None = None) -> None:
        super().__init__(retention, quota_bytes)
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._migrate()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None,
                                         check_same_thread=False, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit the API acknowledged survives power loss, not just a crash.
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA busy_timeout=30000")
            self._local.connection = connection
            with self._all_lock:
                self._all.append(connection)
        return connection

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[Tx]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Tx(connection)
            connection.execute("COMMIT")
        except BaseException:
            # Also after a failed COMMIT: never leave this thread's connection mid-transaction.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise

    def _migrate(self) -> None:
        with self._transaction(write=True) as tx:
            migrate(tx, blob="BLOB", serial="INTEGER PRIMARY KEY")

    def close(self) -> None:
        with self._all_lock:
            for connection in self._all:
                connection.close()
            self._all.clear()
        self._local = threading.local()
