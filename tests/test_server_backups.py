"""Backup snapshots over HTTP: create, list, get, delete; every device's backups listed with
their sealed labels; GC keeps what live snapshots reference; hostile input is a 4xx; another
account's snapshots answer as unknown ones (404)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tandem.core.encoding import b64decode, b64encode
from tests.conftest import BACKENDS, RunningServer, backend_args
from tests.helpers_api import (
    Account,
    error_code,
    fresh_email,
    login,
    make_account,
    serving,
    upload_chunk,
)
from tests.helpers_storage import blob_exists, chunk_blob


@pytest.fixture(scope="module", params=BACKENDS)
def srv(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serving(tmp_path_factory, *backend_args(request, request.param)) as running:
        yield running


@pytest.fixture
def acct(srv: RunningServer) -> Iterator[Account]:
    account = make_account(srv.url, fresh_email())
    yield account
    account.close()


def new_id() -> str:
    return secrets.token_hex(16)


def snapshot_body(account: Account, *contents: bytes, taken: int = 1) -> dict[str, Any]:
    """A snapshot whose document is one chunk and whose files are the given contents."""
    files = [upload_chunk(account, content) for content in contents]
    document = upload_chunk(account, b"document " + secrets.token_bytes(8))
    return {"id": new_id(), "taken_at_ns": taken, "size": sum(s for _, s in files),
            "files": len(files), "document": [document], "chunks": [c for c, _ in files]}


def create(account: Account, backup_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = account.client.post(f"/backups/{backup_id}/snapshots", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def listed(account: Account, backup_id: str) -> list[str]:
    response = account.client.get(f"/backups/{backup_id}/snapshots")
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()["snapshots"]]


def test_create_list_get_delete(acct: Account) -> None:
    backup = new_id()
    first = create(acct, backup, snapshot_body(acct, b"one", taken=10))
    second = create(acct, backup, snapshot_body(acct, b"two", taken=20))
    assert listed(acct, backup) == [first["id"], second["id"]]
    assert listed(acct, new_id()) == []
    got = acct.client.get(f"/snapshots/{first['id']}").json()
    assert got["size"] == 3 and got["files"] == 1 and got["taken_at_ns"] == 10
    assert got["device_id"] and "chunks" not in got
    assert acct.client.delete(f"/snapshots/{first['id']}").status_code == 204
    assert listed(acct, backup) == [second["id"]]
    assert error_code(acct.client.get(f"/snapshots/{first['id']}")) == "not_found"
    assert error_code(acct.client.delete(f"/snapshots/{first['id']}")) == "not_found"


def test_retried_create_answers_with_the_stored_snapshot(acct: Account) -> None:
    backup = new_id()
    body = snapshot_body(acct, b"retried")
    assert create(acct, backup, body) == create(acct, backup, body)
    assert listed(acct, backup) == [body["id"]]
    clash = acct.client.post(f"/backups/{new_id()}/snapshots", json=body)
    assert clash.status_code == 409 and error_code(clash) == "snapshot_exists"


def test_every_devices_backups_are_listed_with_their_labels(srv: RunningServer,
                                                            acct: Account) -> None:
    """A new device finds the backups of every device: by id, with the device that made it,
    the count, the newest snapshot, and the label only the account's keys open."""
    desk = login(srv.url, acct.email, device_name="desk")
    try:
        photos, music = sorted([new_id(), new_id()])
        sealed = acct.keys.encrypt_label(photos, "/home/me/Photos")
        create(acct, photos, {**snapshot_body(acct, b"p1", taken=10), "label": b64encode(sealed)})
        newest = create(acct, photos, snapshot_body(acct, b"p2", taken=30))  # no label: older client
        assert newest["label"] is None
        create(desk, music, {**snapshot_body(desk, b"m", taken=20),
                             "label": b64encode(desk.keys.encrypt_label(music, "/srv/music"))})
        response = desk.client.get("/backups")
        assert response.status_code == 200, response.text
        listed = response.json()["backups"]
        assert [(b["id"], b["device_id"], b["device_name"], b["snapshots"], b["newest_taken_at_ns"])
                for b in listed] == [(photos, acct.device_id, "test device", 2, 30),
                                     (music, desk.device_id, "desk", 1, 20)]
        assert listed[0]["newest_snapshot_id"] == newest["id"]
        assert desk.keys.decrypt_label(photos, b64decode(listed[0]["label"])) == "/home/me/Photos"
        assert acct.keys.decrypt_label(music, b64decode(listed[1]["label"])) == "/srv/music"
        assert listed == acct.client.get("/backups").json()["backups"]
    finally:
        desk.close()


def test_a_snapshot_needs_every_chunk_stored(acct: Account) -> None:
    body = snapshot_body(acct, b"present")
    absent = "ab" * 32
    body["chunks"].append(absent)
    response = acct.client.post(f"/backups/{new_id()}/snapshots", json=body)
    assert response.status_code == 409 and error_code(response) == "missing_chunks"
    assert response.json()["error"]["missing"] == [absent]


def test_gc_keeps_chunks_of_live_snapshots_and_collects_the_rest(srv: RunningServer,
                                                                  acct: Account) -> None:
    backup = new_id()
    kept_body = snapshot_body(acct, b"kept content")
    dropped_body = snapshot_body(acct, b"dropped content", b"shared content")
    kept_body["chunks"].append(dropped_body["chunks"][1])  # "shared content" is in both
    create(acct, backup, kept_body)
    dropped = create(acct, backup, dropped_body)
    assert acct.client.post("/gc").json()["collected"] == 0
    doomed = [chunk_blob(srv.data_dir, c)
              for c in (dropped_body["chunks"][0], dropped_body["document"][0][0])]
    assert acct.client.delete(f"/snapshots/{dropped['id']}").status_code == 204
    assert acct.client.post("/gc").json()["collected"] == 2  # its file chunk and its document
    for chunk_id in kept_body["chunks"] + [kept_body["document"][0][0]]:
        assert blob_exists(srv.data_dir, chunk_id)
    # Each was uploaded alone, so in a pack of its own: record and file are both gone.
    for chunk_id, where in zip((dropped_body["chunks"][0], dropped_body["document"][0][0]), doomed,
                               strict=True):
        assert where is not None and not where[0].exists()
        assert chunk_blob(srv.data_dir, chunk_id) is None


def test_other_accounts_snapshots_are_invisible(srv: RunningServer, acct: Account) -> None:
    backup = new_id()
    mine = create(acct, backup, snapshot_body(acct, b"private"))
    other = make_account(srv.url, fresh_email("other"))
    try:
        assert listed(other, backup) == []
        assert other.client.get(f"/snapshots/{mine['id']}").status_code == 404
        assert other.client.delete(f"/snapshots/{mine['id']}").status_code == 404
        # Their chunks are not this account's: a snapshot cannot claim them.
        body = snapshot_body(other, b"theirs")
        body["chunks"] = [mine["document"][0][0]]
        response = other.client.post(f"/backups/{backup}/snapshots", json=body)
        assert error_code(response) == "missing_chunks"
        assert other.client.get("/backups").json() == {"backups": []}
    finally:
        other.close()
    assert listed(acct, backup) == [mine["id"]]


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(id="not-hex"),
    lambda b: b.update(id="A" * 32),
    lambda b: b.update(size=-1),
    lambda b: b.update(files=1 << 70),
    lambda b: b.update(taken_at_ns=-5),
    lambda b: b.update(document=[]),
    lambda b: b.update(document=[["zz", 1]]),
    lambda b: b.update(document=[["ab" * 32, 0]]),
    lambda b: b.update(chunks=["../../etc/passwd"]),
    lambda b: b.update(chunks="ab" * 32),
    lambda b: b.update(extra=1),
    lambda b: b.pop("document"),
    lambda b: b.update(label="not base64!"),
    lambda b: b.update(label="A" * 41),
    lambda b: b.update(label="short"),
    lambda b: b.update(label="A" * 6000),
    lambda b: b.update(label=["x"]),
])
def test_hostile_snapshot_bodies_are_refused(acct: Account, mutate: Any) -> None:
    body = snapshot_body(acct, b"x")
    mutate(body)
    response = acct.client.post(f"/backups/{new_id()}/snapshots", json=body)
    assert response.status_code == 400, response.text
    assert error_code(response) == "invalid_request"


@pytest.mark.parametrize("method,path", [
    ("POST", "/backups/..%2F..%2Fx/snapshots"),
    ("GET", "/backups/short/snapshots"),
    ("GET", "/snapshots/" + "g" * 32),
    ("DELETE", "/snapshots/" + "0" * 33),
])
def test_hostile_ids_are_refused(acct: Account, method: str, path: str) -> None:
    response = acct.client.request(method, path, json={})
    assert 400 <= response.status_code < 500, response.text


def test_snapshots_need_a_token(srv: RunningServer) -> None:
    response = httpx.get(f"{srv.url}/backups/{new_id()}/snapshots", timeout=30)
    assert response.status_code == 401
