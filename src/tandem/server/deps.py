"""What every route needs: the server's parts and the authenticated device."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tandem.server.blobs.base import BlobStore
from tandem.server.config import ServerConfig
from tandem.server.locks import AccountLocks
from tandem.server.notify import LocalNotifier
from tandem.server.store.base import Device, StoreError
from tandem.server.store.sql import SqlStore
from tandem.server.throttle import LoginThrottle

_bearer = HTTPBearer(auto_error=False)
#: last_seen_at is written at most this often per device, not on every request.
TOUCH_INTERVAL = 60


@dataclass
class Services:
    config: ServerConfig
    store: SqlStore
    blobs: BlobStore
    notifier: LocalNotifier
    #: Keys fake prelogin answers for unknown emails, so they look like real ones.
    server_secret: bytes
    locks: AccountLocks
    throttle: LoginThrottle = field(default_factory=LoginThrottle)


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def token_hash(token: str) -> bytes:
    """Tokens are looked up by this hash (an index lookup, not a comparison of secrets): 256
    random bits hashed, so the lookup's timing tells nothing about a token, and a leaked
    database holds no usable token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def now() -> int:
    return int(time.time())


def current_device(
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    parts: Services = Depends(services),
) -> Device:
    """The device behind the bearer token; a missing, unknown or revoked token is a 401."""
    if credentials is None or not credentials.credentials:
        raise StoreError(401, "unauthorized", "missing device token: log in first")
    device = parts.store.device_for_token(token_hash(credentials.credentials))
    if device is None:
        raise StoreError(401, "unauthorized", "invalid or revoked device token: log in again")
    moment = now()
    if moment - device.last_seen_at >= TOUCH_INTERVAL:
        parts.store.touch_device(device.id, moment)
    return device


def chunk_key(account_id: int, chunk_id: str) -> str:
    return f"{account_id}/{chunk_id}"
