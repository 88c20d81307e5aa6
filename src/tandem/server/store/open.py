"""Choose a metadata store by URL: `sqlite:///PATH` (the default) or, later, `postgresql://`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from tandem.server.store.base import Retention
from tandem.server.store.sql import SqlStore


class UnsupportedStoreURL(ValueError):
    """A --database URL this server cannot open."""


def open_store(url: str, retention: Retention | None = None,
               quota_bytes: int | None = None) -> SqlStore:
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from tandem.server.store.sqlite import SqliteStore

        path = url[len("sqlite:///"):]  # sqlite:///rel or sqlite:////abs
        if not path.strip("/"):
            raise UnsupportedStoreURL("a sqlite URL needs a file path: sqlite:////abs/path/meta.db")
        return SqliteStore(Path(path), retention, quota_bytes)
    raise UnsupportedStoreURL(
        f"unsupported database URL {url!r}: use sqlite:///PATH"
    )
