"""Isolation (promise 8): a device token reaches its own account's data and nothing else.

Every endpoint that takes an id is tried by account B with account A's ids; each answer must
be exactly what B gets for an id nobody has (so it does not even confirm that the id exists),
and A's data must be unchanged afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tandem.core.crypto import AccountKeys, new_master_key
from tandem.core.wire import ROOT_ID
from tests.conftest import RunningServer
from tests.helpers_api import (
    Account,
    batch,
    commit,
    content_hash,
    create_op,
    cursor,
    delete_op,
    enc_name,
    fresh_email,
    full_tree,
    login,
    make_account,
    mkdir,
    move_op,
    new_node_id,
    put_file,
    seal,
    serving,
    update_op,
    upload_chunk,
)


@dataclass
class Owned:
    """Account A with one of each kind of thing an id can name."""

    account: Account
    folder: dict[str, Any]
    file: dict[str, Any]
    trashed: dict[str, Any]
    chunk_id: str
    other_device: str


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serving(tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def owner(srv: RunningServer) -> Owned:
    a = make_account(srv.url, fresh_email("alice"))
    folder = mkdir(a, "private")
    file = put_file(a, "secret.txt", b"alice's secret", folder["id"])
    commit(a, update_op(file["id"], file["rev"], [upload_chunk(a, b"alice's second secret")]))
    file = {"id": file["id"], "rev": a.client.get(f"/nodes/{file['id']}").json()["rev"]}
    trashed = mkdir(a, "in the trash")
    commit(a, delete_op(trashed["id"], trashed["rev"]))
    chunk_id = a.client.get(f"/nodes/{file['id']}").json()["manifest"][0][0]
    other_device = login(srv.url, a.email, device_name="alice's phone").device_id
    return Owned(a, folder, file, trashed, chunk_id, other_device)


@pytest.fixture(scope="module")
def intruder(srv: RunningServer) -> Account:
    b = make_account(srv.url, fresh_email("bob"))
    put_file(b, "bob.txt", b"bob's own file")
    return b


def snapshot(a: Account) -> dict[str, Any]:
    return {
        "tree": sorted((n["id"], n["rev"], n["name"], n["state"]) for n in full_tree(a)),
        "trash": a.client.get("/trash").json(),
        "cursor": cursor(a),
        "devices": [(d["id"], d["revoked_at"]) for d in a.client.get("/devices").json()["devices"]],
        "used": a.client.get("/account").json()["used_bytes"],
    }


def random_chunk_id() -> str:
    return seal(AccountKeys(new_master_key()), b"nobody's chunk")[0]


Probe = Callable[[Account, dict[str, str]], httpx.Response]


def _batch(b: Account, ops: list[dict[str, Any]]) -> httpx.Response:
    return batch(b, *ops)


#: name -> request made by B with a set of ids (A's, or random ones).
PROBES: dict[str, Probe] = {
    "get node": lambda b, ids: b.client.get(f"/nodes/{ids['file']}"),
    "get folder": lambda b, ids: b.client.get(f"/nodes/{ids['folder']}"),
    "list versions": lambda b, ids: b.client.get(f"/nodes/{ids['file']}/versions"),
    "restore version": lambda b, ids: b.client.post(f"/nodes/{ids['file']}/versions/1/restore"),
    "restore trashed": lambda b, ids: b.client.post(f"/trash/{ids['trashed']}/restore"),
    "empty one trashed": lambda b, ids: b.client.post("/trash/empty", json={"id": ids["trashed"]}),
    "download chunk": lambda b, ids: b.client.get(f"/chunks/{ids['chunk']}"),
    "download chunk range": lambda b, ids: b.client.get(f"/chunks/{ids['chunk']}",
                                                        headers={"Range": "bytes=0-9"}),
    "fetch chunks": lambda b, ids: b.client.post("/chunks/fetch", json={"ids": [ids["chunk"]]}),
    "revoke device": lambda b, ids: b.client.post(f"/devices/{ids['device']}/revoke"),
    "update foreign file": lambda b, ids: _batch(b, [update_op(ids["file"], int(ids["rev"]), [])]),
    "move foreign node": lambda b, ids: _batch(b, [move_op(b.keys, ids["folder"], 0, ROOT_ID, "mine")]),
    "delete foreign node": lambda b, ids: _batch(b, [delete_op(ids["folder"], 0)]),
    "create under foreign parent": lambda b, ids: _batch(b, [create_op(b.keys, ids["folder"], "x")]),
    "move own node into foreign parent": lambda b, ids: _batch(b, [move_op(
        b.keys, ids["own"], int(ids["own_rev"]), ids["folder"], "x")]),
    "foreign op after a valid one": lambda b, ids: _batch(b, [create_op(b.keys, ROOT_ID, "ok"),
                                                              delete_op(ids["file"], int(ids["rev"]))]),
}


def a_ids(owned: Owned, own: dict[str, Any]) -> dict[str, str]:
    return {"file": owned.file["id"], "rev": str(owned.file["rev"]), "folder": owned.folder["id"],
            "trashed": owned.trashed["id"], "chunk": owned.chunk_id, "device": owned.other_device,
            "own": own["id"], "own_rev": str(own["rev"])}


def unknown_ids(own: dict[str, Any]) -> dict[str, str]:
    return {"file": new_node_id(), "rev": "1", "folder": new_node_id(), "trashed": new_node_id(),
            "chunk": random_chunk_id(), "device": new_node_id(), "own": own["id"],
            "own_rev": str(own["rev"])}


def answer(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


@pytest.mark.parametrize("probe", list(PROBES), ids=list(PROBES))
def test_foreign_ids_answer_like_unknown_ids(probe: str, owner: Owned, intruder: Account) -> None:
    own = mkdir(intruder, f"own-{new_node_id()}")
    before = snapshot(owner.account)
    foreign = PROBES[probe](intruder, a_ids(owner, own))
    unknown = PROBES[probe](intruder, unknown_ids(own))
    assert foreign.status_code == 404, foreign.text
    assert answer(foreign) == answer(unknown)
    assert snapshot(owner.account) == before


def test_missing_query_treats_foreign_chunks_as_missing(owner: Owned, intruder: Account) -> None:
    """Dedup is per account: B cannot learn that A stores a chunk by asking for it."""
    unknown = random_chunk_id()
    response = intruder.client.post("/chunks/missing", json={"ids": [owner.chunk_id, unknown]})
    assert response.json()["missing"] == [owner.chunk_id, unknown]


def test_foreign_trash_and_tree_are_invisible(owner: Owned, intruder: Account) -> None:
    assert intruder.client.get("/trash").json()["nodes"] == []
    visible = {n["id"] for n in full_tree(intruder)}
    assert not visible & {owner.folder["id"], owner.file["id"], owner.trashed["id"]}
    changes = intruder.client.get("/changes", params={"cursor": 0}).json()["changes"]
    assert not {c["id"] for c in changes} & {owner.folder["id"], owner.file["id"]}
    devices = {d["id"] for d in intruder.client.get("/devices").json()["devices"]}
    assert devices == {intruder.device_id}


def test_same_node_id_in_two_accounts_are_separate_nodes(owner: Owned, intruder: Account) -> None:
    """Node ids are per account: B creating a node with A's id touches nothing of A's."""
    before = snapshot(owner.account)
    op = create_op(intruder.keys, ROOT_ID, "reused id", node_id=owner.folder["id"])
    commit(intruder, op)
    mine = intruder.client.get(f"/nodes/{owner.folder['id']}").json()
    assert mine["parent_id"] == ROOT_ID and mine["name"] == op["name"]
    assert snapshot(owner.account) == before
    theirs = owner.account.client.get(f"/nodes/{owner.folder['id']}").json()
    assert theirs["name"] == enc_name(owner.account.keys, ROOT_ID, "private")


def test_uploading_a_foreign_chunk_id_does_not_touch_the_owner(owner: Owned, intruder: Account,
                                                                 srv: RunningServer) -> None:
    """B storing bytes under A's chunk id gets its own copy; A's ciphertext is unchanged."""
    original = owner.account.client.get(f"/chunks/{owner.chunk_id}").content
    forged = b"\x01" + b"\x00" * 60
    response = intruder.client.put(f"/chunks/{owner.chunk_id}", content=forged,
                                   headers={"X-Content-Hash": content_hash(forged)})
    assert response.status_code == 200 and response.json()["stored"] == 1
    assert owner.account.client.get(f"/chunks/{owner.chunk_id}").content == original
    assert intruder.client.get(f"/chunks/{owner.chunk_id}").content == forged
