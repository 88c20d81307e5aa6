"""The blob store contract: whole, immutable objects plus ranged reads.

The server stores chunks in packs (many chunks' ciphertexts concatenated in one blob, see
`server/packs.py`), so a blob is written once and whole, and read whole or by range.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

#: Keys are `<account id>/p/<hex>` or `<account id>/<chunk id>`: path segments of safe
#: characters, none empty, none starting with a dot, so no key can leave its folder or bucket
#: prefix (`..`, `/etc`, `a//b`, a backslash, a NUL).
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


class UnsupportedBlobURL(ValueError):
    """A --blobs URL this server cannot open (unknown scheme, malformed, unknown option)."""


class BlobStoreUnavailable(RuntimeError):
    """The blob store named by a valid URL cannot be used (unreachable, no such bucket,
    credentials refused)."""


def check_key(key: str) -> str:
    """`key` if it is a valid blob key; ValueError otherwise (every backend refuses the same)."""
    if not KEY_RE.match(key):
        raise ValueError(f"invalid blob key {key!r}")
    return key


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

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes of the blob under `key` from `offset` (a chunk inside a pack; an S3
        backend sends a Range GET). Fewer when the blob ends sooner: callers check the length.
        Raises KeyError if there is no such blob."""

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with `prefix`, in no particular order."""

    def sizes(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(key, length) of every blob whose key starts with `prefix`, in no particular order
        (one listing, so a copy between stores can skip what the target already holds)."""

    def local_path(self, key: str) -> Path | None:
        """A file holding the blob, when the store has one (lets the server use sendfile)."""
