"""Accounts over HTTP: prelogin, signup, login, devices, revocation and logout."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tandem.core.crypto import DEFAULT_KDF, TEST_KDF, b64decode, derive_login_keys, unwrap_key
from tests.conftest import BACKENDS, RunningServer, backend_args
from tests.helpers_api import (
    TIMEOUT,
    error_code,
    fresh_email,
    login,
    login_response,
    make_account,
    serving,
    signup_body,
)


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serving(tmp_path_factory, *backend_args(request, request.param)) as running:
        yield running


def prelogin(url: str, email: str) -> httpx.Response:
    return httpx.post(f"{url}/auth/prelogin", json={"email": email}, timeout=TIMEOUT)


def test_prelogin_for_unknown_email_is_a_stable_fake(srv: RunningServer) -> None:
    """An unknown email must look like a real account (same shape, same salt every time),
    so prelogin does not reveal who has an account."""
    email = fresh_email("nobody")
    first, second = prelogin(srv.url, email), prelogin(srv.url, email)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert len(b64decode(first.json()["salt"])) == 16
    assert first.json()["kdf"] == DEFAULT_KDF.as_dict()
    other = prelogin(srv.url, fresh_email("nobody"))
    assert other.json()["salt"] != first.json()["salt"]
    # Email case does not change the answer (emails are compared lower-cased).
    assert prelogin(srv.url, email.upper()).json() == first.json()


def test_prelogin_for_known_email_returns_its_salt_and_kdf(srv: RunningServer) -> None:
    email = fresh_email()
    body, _ = signup_body(email, "pw")
    assert httpx.post(f"{srv.url}/auth/signup", json=body, timeout=TIMEOUT).status_code == 201
    answer = prelogin(srv.url, email).json()
    assert answer["salt"] == body["salt"]
    assert answer["kdf"] == TEST_KDF.as_dict()


def test_signup_returns_a_working_session(srv: RunningServer) -> None:
    account = make_account(srv.url, fresh_email())
    assert len(account.device_id) == 32
    info = account.client.get("/account")
    assert info.status_code == 200
    assert info.json()["email"] == account.email
    assert info.json()["cursor"] == 0 and info.json()["used_bytes"] == 0
    root = account.client.get("/nodes/root").json()
    assert root["kind"] == "folder" and root["parent_id"] is None


def test_signup_with_a_taken_email_is_409(srv: RunningServer) -> None:
    email = fresh_email()
    make_account(srv.url, email)
    for variant in (email, email.upper()):
        body, _ = signup_body(variant, "another password")
        response = httpx.post(f"{srv.url}/auth/signup", json=body, timeout=TIMEOUT)
        assert response.status_code == 409
        assert error_code(response) == "email_taken"


def test_login_with_wrong_password_is_401(srv: RunningServer) -> None:
    email = fresh_email()
    make_account(srv.url, email, password="right")
    response = login_response(srv.url, email, "wrong")
    assert response.status_code == 401
    assert error_code(response) == "wrong_credentials"


def test_login_for_unknown_email_answers_like_a_wrong_password(srv: RunningServer) -> None:
    response = login_response(srv.url, fresh_email("nobody"), "pw")
    assert response.status_code == 401
    assert error_code(response) == "wrong_credentials"


def test_login_returns_the_wrapped_master_key(srv: RunningServer) -> None:
    """A new device gets the master key from the password alone: the wrapped key unwraps."""
    email = fresh_email()
    body, master = signup_body(email, "secret words")
    assert httpx.post(f"{srv.url}/auth/signup", json=body, timeout=TIMEOUT).status_code == 201
    response = login_response(srv.url, email, "secret words")
    assert response.status_code == 200
    session = response.json()
    assert session["salt"] == body["salt"] and session["kdf"] == TEST_KDF.as_dict()
    keys = derive_login_keys("secret words", b64decode(session["salt"]), TEST_KDF)
    assert unwrap_key(keys.key_encryption_key, b64decode(session["wrapped_key"])) == master


def test_devices_lists_every_login(srv: RunningServer) -> None:
    first = make_account(srv.url, fresh_email(), device_name="laptop")
    second = login(srv.url, first.email, device_name="desktop")
    listing = first.client.get("/devices")
    assert listing.status_code == 200
    devices = {d["id"]: d for d in listing.json()["devices"]}
    assert set(devices) == {first.device_id, second.device_id}
    assert devices[first.device_id]["name"] == "laptop" and devices[first.device_id]["current"]
    assert devices[second.device_id]["name"] == "desktop" and not devices[second.device_id]["current"]
    assert all(d["revoked_at"] is None for d in devices.values())


def test_revoked_device_token_is_refused_at_once(srv: RunningServer) -> None:
    """Revocation takes effect on the very next request: no cache keeps a stolen token alive."""
    first = make_account(srv.url, fresh_email())
    second = login(srv.url, first.email)
    assert second.client.get("/tree").status_code == 200
    assert first.client.post(f"/devices/{second.device_id}/revoke").status_code == 204
    refused = second.client.get("/tree")
    assert refused.status_code == 401
    assert error_code(refused) == "unauthorized"
    assert first.client.get("/tree").status_code == 200
    listed = {d["id"]: d for d in first.client.get("/devices").json()["devices"]}
    assert listed[second.device_id]["revoked_at"] is not None
    again = first.client.post(f"/devices/{second.device_id}/revoke")
    assert again.status_code == 404 and error_code(again) == "not_found"


def test_logout_revokes_only_the_own_token(srv: RunningServer) -> None:
    first = make_account(srv.url, fresh_email())
    second = login(srv.url, first.email)
    assert first.client.post("/auth/logout").status_code == 204
    after = first.client.get("/account")
    assert after.status_code == 401 and error_code(after) == "unauthorized"
    assert second.client.get("/account").status_code == 200


def test_login_after_revocation_gets_a_new_device(srv: RunningServer) -> None:
    first = make_account(srv.url, fresh_email())
    assert first.client.post("/auth/logout").status_code == 204
    again = login(srv.url, first.email)
    assert again.device_id != first.device_id
    assert again.keys.master_key == first.keys.master_key
    assert again.client.get("/account").status_code == 200
