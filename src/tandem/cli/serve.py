"""`tandem serve`: run the cloud server."""

from __future__ import annotations

from pathlib import Path

import click

from tandem.server.store.base import Retention


@click.command()
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("tandem-data"), show_default=True,
              help="Folder for the embedded SQLite database and blob folder.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--database", "database_url", default=None,
              help="Metadata store URL (default: sqlite:///DATA/meta.db).")
@click.option("--blobs", "blobs_url", default=None,
              help="Blob store URL (default: file:///DATA/blobs).")
@click.option("--quota", "quota_bytes", type=click.IntRange(min=0), default=None,
              help="Storage quota per new account, in bytes (default: none).")
@click.option("--gc-grace", type=click.IntRange(min=0), default=3600, show_default=True,
              help="Seconds an uploaded, not yet committed chunk is kept.")
@click.option("--gc-interval", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Seconds between background garbage collections (0: never).")
def serve(data_dir: Path, host: str, port: int, database_url: str | None, blobs_url: str | None,
          quota_bytes: int | None, gc_grace: int, gc_interval: float) -> None:
    """Run the cloud server (embedded default: SQLite and a local blob folder)."""
    import uvicorn

    from tandem.server.app import create_app
    from tandem.server.blobs.open import UnsupportedBlobURL
    from tandem.server.config import ServerConfig
    from tandem.server.store.open import UnsupportedStoreURL

    config = ServerConfig(data_dir=data_dir, database_url=database_url, blobs_url=blobs_url,
                          quota_bytes=quota_bytes, retention=Retention(chunk_grace_seconds=gc_grace),
                          gc_interval=gc_interval)
    try:
        app = create_app(config)
    except (UnsupportedStoreURL, UnsupportedBlobURL) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot open the server's data: {exc}") from None
    # Long-polls are held up to 2 minutes: a stop must not wait for them to end.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_keep_alive=30, http="httptools",
                                           timeout_graceful_shutdown=2))
    click.echo(f"Tandem server on http://{host}:{port} (data: {data_dir.resolve()})")
    server.run()
    if not server.started:
        raise click.ClickException(f"could not listen on {host}:{port} (is it in use?)")
