"""Signup, login, logout, devices: the server stores a hash of the auth secret, never a password."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from tandem.core.crypto import DEFAULT_KDF, b64decode, b64encode
from tandem.server.deps import Services, current_device, now, services, token_hash
from tandem.server.errors import error_response
from tandem.server.models import (
    AccountResponse,
    DeviceModel,
    DevicesResponse,
    KdfModel,
    LoginRequest,
    PreloginRequest,
    PreloginResponse,
    SessionResponse,
    SignupRequest,
)
from tandem.server.store.base import Device, StoreError

router = APIRouter(tags=["accounts"])


def _decode(value: str, field: str, min_len: int, max_len: int) -> bytes:
    try:
        raw = b64decode(value)
    except ValueError:
        raise StoreError(400, "invalid_request", f"{field} is not base64") from None
    if not min_len <= len(raw) <= max_len:
        raise StoreError(400, "invalid_request", f"{field} must be {min_len}-{max_len} bytes")
    return raw


def _auth_hash(auth_secret: bytes) -> bytes:
    # The auth secret is a 256-bit Argon2id output, so a fast hash suffices: guessing it is
    # as hard as running Argon2id per password guess.
    return hashlib.sha256(b"tandem/v1/auth-hash" + auth_secret).digest()


def _new_session(parts: Services, account_id: int, device_name: str) -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    device_id = secrets.token_hex(16)
    parts.store.add_device(account_id, device_id, device_name, token_hash(token), now())
    return token, device_id


@router.post("/auth/prelogin", response_model=PreloginResponse)
def prelogin(body: PreloginRequest, parts: Services = Depends(services)) -> PreloginResponse:
    """Salt and KDF parameters for an email. Unknown emails get a stable fake answer, so
    this endpoint does not tell who has an account."""
    account = parts.store.account_by_email(body.email.lower())
    if account is None:
        salt = hmac.new(parts.server_secret, body.email.lower().encode(), "sha256").digest()[:16]
        return PreloginResponse(salt=b64encode(salt), kdf=KdfModel(**DEFAULT_KDF.as_dict()))
    return PreloginResponse(salt=b64encode(account.salt), kdf=KdfModel(**json.loads(account.kdf)))


@router.post("/auth/signup", response_model=SessionResponse, status_code=201)
def signup(body: SignupRequest, parts: Services = Depends(services)) -> SessionResponse:
    auth_secret = _decode(body.auth_secret, "auth_secret", 32, 64)
    salt = _decode(body.salt, "salt", 16, 64)
    wrapped = _decode(body.wrapped_key, "wrapped_key", 44, 128)
    recovery = _decode(body.recovery_wrapped_key, "recovery_wrapped_key", 44, 128)
    if body.kdf.memory_kib < 8 * body.kdf.parallelism:
        raise StoreError(400, "invalid_request", "kdf.memory_kib must be at least 8 x parallelism")
    account_id = parts.store.create_account(
        body.email.lower(), salt, body.kdf.model_dump_json(), _auth_hash(auth_secret),
        wrapped, recovery, now(),
    )
    token, device_id = _new_session(parts, account_id, body.device_name)
    return SessionResponse(token=token, device_id=device_id, wrapped_key=body.wrapped_key,
                           salt=body.salt, kdf=body.kdf)


@router.post("/auth/login", response_model=SessionResponse)
def login(body: LoginRequest, request: Request,
          parts: Services = Depends(services)) -> SessionResponse | JSONResponse:
    """Failed logins are throttled per email and per address (`server/throttle.py`): 429
    with Retry-After, answered before the credentials are even looked at."""
    email, address = body.email.lower(), request.client.host if request.client else ""
    wait = parts.throttle.retry_after(email, address)
    if wait > 0:
        refusal = error_response(429, "too_many_attempts",
                                 f"too many failed logins: try again in {wait} s", retry_after=wait)
        refusal.headers["Retry-After"] = str(wait)
        return refusal
    account = parts.store.account_by_email(email)
    auth_secret = _decode(body.auth_secret, "auth_secret", 32, 64)
    if account is None or not hmac.compare_digest(_auth_hash(auth_secret), account.auth_hash):
        parts.throttle.failed(email, address)
        raise StoreError(401, "wrong_credentials", "wrong email or password")
    parts.throttle.succeeded(email)
    token, device_id = _new_session(parts, account.id, body.device_name)
    return SessionResponse(token=token, device_id=device_id,
                           wrapped_key=b64encode(account.wrapped_key), salt=b64encode(account.salt),
                           kdf=KdfModel(**json.loads(account.kdf)))


@router.post("/auth/logout", status_code=204)
def logout(device: Device = Depends(current_device), parts: Services = Depends(services)) -> None:
    parts.store.revoke_device(device.account_id, device.id, now())


@router.get("/devices", response_model=DevicesResponse)
def list_devices(device: Device = Depends(current_device),
                 parts: Services = Depends(services)) -> DevicesResponse:
    return DevicesResponse(devices=[DeviceModel.of(d, device.id)
                                    for d in parts.store.devices(device.account_id)])


@router.post("/devices/{device_id}/revoke", status_code=204)
def revoke_device(device_id: str, device: Device = Depends(current_device),
                  parts: Services = Depends(services)) -> None:
    parts.store.revoke_device(device.account_id, device_id, now())


@router.get("/account", response_model=AccountResponse)
def account(device: Device = Depends(current_device),
            parts: Services = Depends(services)) -> AccountResponse:
    info = parts.store.account(device.account_id)
    return AccountResponse(email=info.email, used_bytes=info.used_bytes,
                           quota_bytes=info.quota_bytes, cursor=info.cursor)
