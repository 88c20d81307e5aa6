"""`tandem migrate`: move a server's metadata to another database (SQLite to PostgreSQL) and/or
its blobs to another store (a folder to S3, and back), each copy verified."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import click

from tandem.cli.progress import live_line, rate_and_eta
from tandem.cli.sizes import human_size

_DATABASES = ("sqlite", "postgresql", "postgres")
_BLOB_STORES = ("file", "s3")


def _split(urls: tuple[str, ...], option: str) -> tuple[str | None, str | None]:
    """(database URL, blob store URL) among one option's values: at most one of each."""
    database = [url for url in urls if urlsplit(url).scheme in _DATABASES]
    blobs = [url for url in urls if urlsplit(url).scheme in _BLOB_STORES]
    other = [url for url in urls if url not in database and url not in blobs]
    if other:
        raise click.UsageError(f"{option} {other[0].split('@')[-1]!r}: not a database URL (sqlite:///,"
                               " postgresql://) nor a blob store URL (file:///, s3://)")
    if len(database) > 1 or len(blobs) > 1:
        raise click.UsageError(f"{option} takes one database URL and one blob store URL at most")
    return (database[0] if database else None), (blobs[0] if blobs else None)


@click.command()
@click.option("--from", "sources", required=True, multiple=True, metavar="URL",
              help="What the server uses now: its database (sqlite:////srv/tandem/meta.db)"
                   " and/or its blob store (file:///srv/tandem/blobs).")
@click.option("--to", "targets", required=True, multiple=True, metavar="URL",
              help="Where it goes: an empty database (postgresql://tandem@db/tandem) and/or a"
                   " blob store (s3://BUCKET?endpoint=URL&region=REGION).")
def migrate(sources: tuple[str, ...], targets: tuple[str, ...]) -> None:
    """Copy a stopped server's metadata into an empty database and/or its blobs into another
    store, then verify each copy.

    Give --from and --to once per kind: a database URL with a database URL, a blob store URL
    with a blob store URL. Stop the servers first. The blob copy is resumable (blobs already
    in the target with the same length are skipped) and runs before the metadata copy, which
    is all or nothing. Then start the servers on the new URLs.
    """
    source_db, source_blobs = _split(sources, "--from")
    target_db, target_blobs = _split(targets, "--to")
    if (source_db is None) != (target_db is None) or (source_blobs is None) != (target_blobs is None):
        raise click.UsageError("give --from and --to in pairs: a database URL with a database URL,"
                               " a blob store URL with a blob store URL")
    if source_blobs is not None and target_blobs is not None:
        _migrate_blobs(source_blobs, target_blobs)
    if source_db is not None and target_db is not None:
        _migrate_metadata(source_db, target_db)


def _migrate_blobs(source_url: str, target_url: str) -> None:
    from tandem.server.blobs.copy import BlobCopy, BlobCopyError, copy_blobs, verify_blobs
    from tandem.server.blobs.open import BlobStoreUnavailable, UnsupportedBlobURL, open_blob_store

    progress = BlobCopy()
    start = time.monotonic()

    def line() -> str:
        return (f"Copying blobs: {progress.copied} of {progress.to_copy},"
                f" {human_size(progress.bytes_copied)} of {human_size(progress.bytes_to_copy)}"
                f" {rate_and_eta(progress.bytes_copied, progress.bytes_to_copy, start)}"
                f" ({progress.skipped} already there)")

    try:
        source, target = open_blob_store(source_url), open_blob_store(target_url)
        with live_line(line):
            copy_blobs(source, target, progress)
        with live_line(lambda: "Verifying blobs: reading both sides"):
            count, digest = verify_blobs(source, target)
    except (UnsupportedBlobURL, BlobStoreUnavailable, BlobCopyError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(f"blob copy failed (run it again to resume): {first}") from None
    click.echo(f"Copied and verified: {count} blobs ({progress.copied} copied,"
               f" {human_size(progress.bytes_copied)}; {progress.skipped} already there),"
               f" content digest {digest[:16]}.")


def _migrate_metadata(source_url: str, target_url: str) -> None:
    import sqlite3

    import psycopg

    from tandem.server.store.copy import CopyError, copy_store, verify_copy
    from tandem.server.store.open import StoreUnavailable, UnsupportedStoreURL, open_store

    try:
        source = open_store(source_url, create=False)
        try:
            target = open_store(target_url)
            try:
                copied = copy_store(source, target)
                verify_copy(source, target)
            finally:
                target.close()
        finally:
            source.close()
    except (UnsupportedStoreURL, StoreUnavailable, CopyError) as exc:
        raise click.ClickException(str(exc)) from None
    except (sqlite3.Error, psycopg.Error) as exc:
        raise click.ClickException(f"migration failed, the target is unchanged: {exc}") from None
    summary = ", ".join(f"{count} {table}" for table, count in copied.items())
    click.echo(f"Copied and verified: {summary}.")
