"""Linking a device to an account: signup, login, logout, and the `Session` they produce.

The password never leaves this machine: Argon2id turns it into an auth secret (sent) and a
key-encryption key (kept) that unwraps the master key the server stores wrapped.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from tandem.client.api import ApiClient, ApiError, ClientError
from tandem.client.home import Home, LinkedDevice
from tandem.core import crypto
from tandem.core.crypto import AccountKeys, KdfParams, b64decode, b64encode


class AccountError(ClientError):
    """A linking step the user must fix (already linked, not linked, wrong password...)."""


def weak_kdf_allowed() -> bool:
    """Only tests set this: it lets accounts use a cheap Argon2id profile."""
    return os.environ.get("TANDEM_INSECURE_FAST_KDF") == "1"


def default_device_name() -> str:
    return socket.gethostname() or "device"


@dataclass
class Session:
    """A linked device, ready to talk to its server with its keys."""

    home: Home
    device: LinkedDevice
    keys: AccountKeys
    api: ApiClient

    @classmethod
    def open(cls, home: Home) -> Session:
        device = home.linked()
        if device is None:
            raise AccountError(
                f"this device is not linked ({home.path}): run `tandem signup URL EMAIL`"
                " or `tandem login URL EMAIL` first")
        return cls(home, device, AccountKeys(home.master_key()),
                   ApiClient(device.server_url, device.token))

    def close(self) -> None:
        self.api.close()


def _refuse_if_linked(home: Home) -> None:
    existing = home.linked()
    if existing is not None:
        raise AccountError(
            f"{home.path} is already linked to {existing.email} at {existing.server_url};"
            " run `tandem logout` first or use another TANDEM_HOME")


def signup(home: Home, url: str, email: str, password: str,
           device_name: str | None = None) -> tuple[Session, str]:
    """Create an account; returns the session and the recovery key (show it once)."""
    _refuse_if_linked(home)
    if not password:
        raise AccountError("the password must not be empty")
    params = crypto.TEST_KDF if weak_kdf_allowed() else crypto.DEFAULT_KDF
    salt = crypto.new_salt()
    login_keys = crypto.derive_login_keys(password, salt, params)
    master_key = crypto.new_master_key()
    recovery_key = crypto.new_recovery_key()
    name = device_name or default_device_name()
    api = ApiClient(url)
    try:
        answer = api.signup({
            "email": email,
            "auth_secret": b64encode(login_keys.auth_secret),
            "salt": b64encode(salt),
            "kdf": params.as_dict(),
            "wrapped_key": b64encode(crypto.wrap_key(login_keys.key_encryption_key, master_key)),
            "recovery_wrapped_key": b64encode(
                crypto.wrap_key(crypto.recovery_wrapping_key(recovery_key), master_key)),
            "device_name": name,
        })
    except ApiError as exc:
        recovered = _created_by_us(api, exc, email, name, login_keys, master_key)
        if recovered is None:
            raise _account_error(exc, email) from exc
        answer = recovered
    finally:
        api.close()
    return _link(home, url, email, name, answer, master_key), crypto.format_recovery_key(recovery_key)


def _created_by_us(api: ApiClient, exc: ApiError, email: str, name: str,
                   login_keys: crypto.LoginKeys, master_key: bytes) -> dict[str, Any] | None:
    """A signup retried after it landed (its answer lost) finds the email taken. If these
    credentials log in and the account's key is the one just made, the account is ours: the
    login's session stands in for the lost one. None otherwise."""
    if exc.code != "email_taken":
        return None
    try:
        answer = api.login({
            "email": email, "auth_secret": b64encode(login_keys.auth_secret), "device_name": name})
        theirs = crypto.unwrap_key(login_keys.key_encryption_key, b64decode(answer["wrapped_key"]))
    except (ClientError, crypto.DecryptionError):
        return None
    return answer if theirs == master_key else None


def login(home: Home, url: str, email: str, password: str,
          device_name: str | None = None) -> Session:
    """Register this device on an existing account."""
    _refuse_if_linked(home)
    name = device_name or default_device_name()
    api = ApiClient(url)
    try:
        pre = api.prelogin(email)
        params = KdfParams.from_dict(pre["kdf"])
        if not crypto.kdf_params_acceptable(params, allow_weak=weak_kdf_allowed()):
            raise AccountError("the server asked for unsafe key-derivation settings; refusing")
        login_keys = crypto.derive_login_keys(password, b64decode(pre["salt"]), params)
        answer = api.login({"email": email, "auth_secret": b64encode(login_keys.auth_secret),
                            "device_name": name})
    except ApiError as exc:
        raise _account_error(exc, email) from exc
    finally:
        api.close()
    try:
        master_key = crypto.unwrap_key(login_keys.key_encryption_key, b64decode(answer["wrapped_key"]))
    except crypto.DecryptionError:
        raise AccountError("the server sent a key this password cannot open") from None
    return _link(home, url, email, name, answer, master_key)


def _link(home: Home, url: str, email: str, name: str, answer: dict[str, str],
          master_key: bytes) -> Session:
    device = LinkedDevice(server_url=url.rstrip("/"), email=email, device_id=answer["device_id"],
                          device_name=name, token=answer["token"])
    home.save(device, master_key)
    return Session(home, device, AccountKeys(master_key), ApiClient(device.server_url, device.token))


def _account_error(exc: ApiError, email: str) -> ClientError:
    if exc.code == "email_taken":
        return AccountError(f"an account for {email} already exists: use `tandem login`")
    if exc.code == "wrong_credentials":
        return AccountError("wrong email or password")
    return exc


def logout(home: Home) -> str | None:
    """Revoke this device's token and forget its keys. Returns a warning when the server
    could not be told (the token must then be revoked from another device)."""
    device = home.linked()
    if device is None:
        raise AccountError("this device is not linked: nothing to log out of")
    warning = None
    api = ApiClient(device.server_url, device.token)
    try:
        api.logout()
    except ApiError as exc:
        if exc.status != 401:  # 401: already revoked, which is what we wanted
            warning = f"the server refused to revoke this device ({exc.message})"
    except ClientError as exc:
        warning = (f"{exc}; this device's token is still valid: revoke it from another device"
                   f" with `tandem devices revoke {device.device_name}`")
    finally:
        api.close()
    home.forget()
    return warning
