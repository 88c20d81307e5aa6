"""The blob store contract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    def put(self, key: str, data: bytes) -> None:
        """Store `data` under `key` durably (on stable storage when this returns).

        Create-only: if `key` exists its content is kept (same key = same content by
        construction), so concurrent or retried writes are harmless.
        """

    def put_many(self, items: list[tuple[str, bytes]]) -> None:
        """`put` for many blobs (a backend may batch their flushes or send them in parallel)."""

    def get(self, key: str) -> bytes:
        """The bytes under `key`; raises KeyError if there are none."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with `prefix`, in no particular order."""

    def local_path(self, key: str) -> Path | None:
        """A file holding the blob, when the store has one (lets the server use sendfile)."""
