"""Choose a metadata store by URL: `sqlite:///PATH` (the default) or `postgresql://...`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from tandem.server.store.base import Retention
from tandem.server.store.sql import SqlStore


class UnsupportedStoreURL(ValueError):
    """A --database URL this server cannot open."""


class StoreUnavailable(RuntimeError):
    """The database named by a valid URL cannot be used (unreachable, refused, wrong schema)."""


def open_store(url: str, retention: Retention | None = None,
               quota_bytes: int | None = None, create: bool = True) -> SqlStore:
    """Open (with `create`, make) the store at `url`, its schema migrated to this version."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        from tandem.server.store.sqlite import SqliteStore

        path = url[len("sqlite:///"):]  # sqlite:///rel or sqlite:////abs
        if not path.strip("/"):
            raise UnsupportedStoreURL("a sqlite URL needs a file path: sqlite:////abs/path/meta.db")
        if not create and not Path(path).is_file():
            raise StoreUnavailable(f"no database at {path}")
        return SqliteStore(Path(path), retention, quota_bytes)
    if parsed.scheme in ("postgresql", "postgres"):
        return _open_postgres(url, retention, quota_bytes)
    raise UnsupportedStoreURL(
        f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
    )


def _open_postgres(url: str, retention: Retention | None, quota_bytes: int | None) -> SqlStore:
    try:
        import psycopg

        from tandem.server.store.postgres import PostgresStore
    except ImportError as exc:
        raise StoreUnavailable(f"PostgreSQL support is not installed ({exc.name} missing):"
                               " pip install 'psycopg[binary]' psycopg-pool") from None
    try:
        _ = urlparse(url).port  # a port that is no number
        psycopg.conninfo.conninfo_to_dict(url)
    except (ValueError, psycopg.ProgrammingError) as exc:
        raise UnsupportedStoreURL(f"bad database URL: {_one_line(exc)}") from None
    try:
        return PostgresStore(url, retention, quota_bytes)
    except (psycopg.Error, RuntimeError) as exc:
        raise StoreUnavailable(f"cannot use the database: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
