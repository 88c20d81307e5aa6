"""`tandem migrate`: move a server's metadata to another database (SQLite to PostgreSQL)."""

from __future__ import annotations

import click


@click.command()
@click.option("--from", "source_url", required=True, metavar="URL",
              help="The database now in use, e.g. sqlite:////srv/tandem/meta.db.")
@click.option("--to", "target_url", required=True, metavar="URL",
              help="An empty database, e.g. postgresql://tandem@db:5432/tandem.")
def migrate(source_url: str, target_url: str) -> None:
    """Copy every metadata record into an empty database, then verify the copy.

    Stop the servers on the source first. Blobs stay where they are: start the servers on the
    new database with the same --blobs.
    """
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
