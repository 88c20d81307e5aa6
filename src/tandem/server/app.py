"""Assemble the ASGI app: storage from the config, routes, limits, errors, background GC."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from tandem import __version__
from tandem.server.blobs import open_blob_store
from tandem.server.config import ServerConfig
from tandem.server.deps import Services
from tandem.server.errors import document_errors, install_error_handlers
from tandem.server.limits import BodyLimitMiddleware
from tandem.server.locks import AccountLocks
from tandem.server.notify import LocalNotifier
from tandem.server.packs import collect_account
from tandem.server.routes import accounts, backups, chunks, history, tree
from tandem.server.store import open_store
from tandem.server.store.base import StoreError

log = logging.getLogger("tandem.server")


def _server_secret(data_dir: Path) -> bytes:
    """The data folder's secret, made on first start. Processes sharing the folder (several
    behind one proxy) must answer alike, so the file appears whole and once: the first to
    link its temp file wins, the others read that one."""
    path = data_dir / "server.secret"
    if not path.exists():
        temp = data_dir / f".server.secret.{os.getpid()}"
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(descriptor, secrets.token_bytes(32))
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        try:
            os.link(temp, path)
        except FileExistsError:
            pass
        finally:
            temp.unlink()
    return path.read_bytes()


def open_services(config: ServerConfig) -> Services:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    # Blobs first: a store that cannot be used stops the start before database pools open.
    blobs = open_blob_store(config.resolved_blobs_url())
    store = open_store(config.resolved_database_url(), config.retention, config.quota_bytes)
    notifier = LocalNotifier()
    store.add_listener(notifier.publish)
    return Services(
        config=config, store=store, blobs=blobs,
        notifier=notifier, server_secret=_server_secret(config.data_dir),
        locks=AccountLocks(store.account_exclusion),
    )


async def _collect_periodically(parts: Services, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        for account_id in await run_in_threadpool(parts.store.account_ids):
            try:
                await run_in_threadpool(collect_account, parts, account_id)
            except StoreError as exc:  # busy: uploads held the account; the next run collects
                log.info("garbage collection of account %s skipped: %s", account_id, exc.message)
            except Exception:
                log.exception("garbage collection failed for account %s", account_id)


def create_app(config: ServerConfig) -> FastAPI:
    parts = open_services(config)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        parts.notifier.bind(asyncio.get_running_loop())
        collector = (asyncio.create_task(_collect_periodically(parts, config.gc_interval))
                     if config.gc_interval > 0 else None)
        try:
            yield
        finally:
            if collector is not None:
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collector
            parts.store.close()

    app = FastAPI(
        title="Tandem",
        version=__version__,
        description="Zero-knowledge cloud for the Tandem sync client: names and contents are"
                    " encrypted by clients; the server sees ids, sizes, times and ciphertext.",
        lifespan=lifespan,
    )
    app.state.services = parts
    install_error_handlers(app)
    document_errors(app)
    app.add_middleware(BodyLimitMiddleware)
    for module in (accounts, tree, chunks, history, backups):
        app.include_router(module.router)

    @app.get("/health", tags=["server"])
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
