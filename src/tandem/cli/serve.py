"""`tandem serve`: run the cloud server."""

from __future__ import annotations

import ipaddress
import ssl
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
              help="Metadata store URL: sqlite:///PATH or postgresql://USER:PASS@HOST:PORT/DB"
                   " (default: sqlite:///DATA/meta.db).")
@click.option("--blobs", "blobs_url", default=None,
              help="Blob store URL: file:///PATH or s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION"
                   " (credentials from AWS_* variables or KEY:SECRET@BUCKET; default:"
                   " file:///DATA/blobs).")
@click.option("--quota", "quota_bytes", type=click.IntRange(min=0), default=None,
              help="Storage quota per new account, in bytes (default: none).")
@click.option("--gc-grace", type=click.IntRange(min=0), default=3600, show_default=True,
              help="Seconds an uploaded, not yet committed chunk is kept.")
@click.option("--gc-interval", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Seconds between background garbage collections (0: never).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Serve HTTPS with this certificate (PEM, chain included); needs --tls-key.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The certificate's private key (PEM).")
def serve(data_dir: Path, host: str, port: int, database_url: str | None, blobs_url: str | None,
          quota_bytes: int | None, gc_grace: int, gc_interval: float, tls_cert: Path | None,
          tls_key: Path | None) -> None:
    """Run the cloud server (embedded default: SQLite and a local blob folder)."""
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_cert is not None and tls_key is not None:
        _check_tls(tls_cert, tls_key)
    elif not _is_loopback(host):
        click.echo(f"WARNING: listening on {host} without TLS: device tokens and every request"
                   " cross the network in the clear. Use --tls-cert/--tls-key, or a TLS proxy"
                   " in front of a loopback address.", err=True)
    import uvicorn

    from tandem.server.app import create_app
    from tandem.server.blobs.open import BlobStoreUnavailable, UnsupportedBlobURL
    from tandem.server.config import ServerConfig
    from tandem.server.store.open import StoreUnavailable, UnsupportedStoreURL

    config = ServerConfig(data_dir=data_dir, database_url=database_url, blobs_url=blobs_url,
                          quota_bytes=quota_bytes, retention=Retention(chunk_grace_seconds=gc_grace),
                          gc_interval=gc_interval)
    try:
        app = create_app(config)
    except (UnsupportedStoreURL, UnsupportedBlobURL, StoreUnavailable, BlobStoreUnavailable) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot open the server's data: {exc}") from None
    # Long-polls are held up to 2 minutes: a stop must not wait for them to end.
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           timeout_keep_alive=30, http="httptools",
                                           timeout_graceful_shutdown=2,
                                           ssl_certfile=tls_cert, ssl_keyfile=tls_key))
    scheme = "https" if tls_cert else "http"
    click.echo(f"Tandem server on {scheme}://{host}:{port} (data: {data_dir.resolve()})")
    server.run()
    if not server.started:
        raise click.ClickException(f"could not listen on {host}:{port} (is it in use?)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def _check_tls(cert: Path, key: Path) -> None:
    """Refuse a certificate and key that do not load (or do not match) before listening."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise click.ClickException(f"cannot use {cert} with {key}: {exc}") from None
