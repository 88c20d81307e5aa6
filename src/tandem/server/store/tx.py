"""The one transaction wrapper the portable rules are written against, and the journal's
sequence numbers inside one commit."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


class Tx:
    """One transaction on one connection, with `?` placeholders whatever the engine."""

    def __init__(self, connection: Any, placeholder: str = "?") -> None:
        self._connection = connection
        self._placeholder = placeholder

    def _sql(self, sql: str) -> str:
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._connection.execute(self._sql(sql), params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._connection.execute(self._sql(sql), params).fetchone()

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return int(self._connection.execute(self._sql(sql), params).rowcount)

    def stream(self, sql: str, params: Sequence[Any] = (), size: int = 1000) -> Iterator[Any]:
        """The rows of a query, fetched `size` at a time (for tables too big to hold)."""
        cursor = self._connection.cursor()
        cursor.execute(self._sql(sql), params)
        while rows := cursor.fetchmany(size):
            yield from rows

    def columns(self, table: str) -> list[str]:
        cursor = self._connection.cursor()
        cursor.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        return [column[0] for column in cursor.description]

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._connection.cursor().executemany(self._sql(sql), rows)


class JournalWriter:
    """Hands out this account's next journal sequence numbers inside one commit."""

    def __init__(self, tx: Tx, account_id: int, cursor: int) -> None:
        self.tx = tx
        self.account_id = account_id
        self.start = cursor
        self.seq = cursor

    def next(self) -> int:
        self.seq += 1
        return self.seq
