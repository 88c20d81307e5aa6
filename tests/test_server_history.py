"""History over HTTP: versions and restore, trash and restore, emptying and garbage collection."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tandem.core.wire import ROOT_ID
from tests.conftest import BACKENDS, RunningServer, backend_args
from tests.helpers_api import (
    Account,
    batch,
    commit,
    create_op,
    delete_op,
    error_code,
    fresh_email,
    full_tree,
    make_account,
    mkdir,
    node,
    put_file,
    serving,
    update_op,
    upload_chunk,
)
from tests.helpers_storage import StoredBlob, blob_exists, chunk_blob


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


def trash_ids(account: Account) -> list[str]:
    response = account.client.get("/trash")
    assert response.status_code == 200, response.text
    return [n["id"] for n in response.json()["nodes"]]


def test_updates_are_kept_as_versions_and_restorable(acct: Account) -> None:
    """Restoring an old version makes it current as a new version; the history only grows."""
    manifests = [[upload_chunk(acct, f"version {i}".encode())] for i in range(1, 4)]
    created = commit(acct, create_op(acct.keys, ROOT_ID, "doc.txt", "file", manifests[0], mtime_ns=1))[0]
    rev = created["rev"]
    for number, manifest in enumerate(manifests[1:], start=2):
        rev = commit(acct, update_op(created["id"], rev, manifest, mtime_ns=number))[0]["rev"]
    versions = acct.client.get(f"/nodes/{created['id']}/versions").json()["versions"]
    assert [v["number"] for v in versions] == [3, 2, 1]
    assert [v["manifest"] for v in versions] == [[list(e) for e in m] for m in reversed(manifests)]
    assert all(v["device_id"] == acct.device_id for v in versions)

    restored = acct.client.post(f"/nodes/{created['id']}/versions/1/restore", json={"if_rev": rev})
    assert restored.status_code == 200, restored.text
    assert restored.json()["version"] == 4 and restored.json()["rev"] > rev
    current = node(acct, created["id"])
    assert current["manifest"] == [list(e) for e in manifests[0]] and current["size"] == manifests[0][0][1]
    numbers = [v["number"] for v in acct.client.get(f"/nodes/{created['id']}/versions").json()["versions"]]
    assert numbers == [4, 3, 2, 1]


def test_restore_version_with_a_stale_rev_or_unknown_number(acct: Account) -> None:
    file = put_file(acct, "f", b"first")
    stale = acct.client.post(f"/nodes/{file['id']}/versions/1/restore", json={"if_rev": file["rev"] + 99})
    assert stale.status_code == 409 and error_code(stale) == "rev_conflict"
    unknown = acct.client.post(f"/nodes/{file['id']}/versions/7/restore")
    assert unknown.status_code == 404 and error_code(unknown) == "not_found"


def test_folders_have_no_versions(acct: Account) -> None:
    folder = mkdir(acct, "folder")
    response = acct.client.get(f"/nodes/{folder['id']}/versions")
    assert response.status_code == 400 and error_code(response) == "not_a_file"


def test_deleted_folder_is_one_trash_entry_and_restores_whole(acct: Account) -> None:
    folder = mkdir(acct, "projects")
    sub = mkdir(acct, "sub", folder["id"])
    files = [put_file(acct, f"f{i}", f"content {i}".encode(), sub["id"]) for i in range(3)]
    commit(acct, delete_op(folder["id"], folder["rev"]))
    assert trash_ids(acct) == [folder["id"]]
    assert {n["id"] for n in full_tree(acct)} == {ROOT_ID}

    response = acct.client.post(f"/trash/{folder['id']}/restore")
    assert response.status_code == 200, response.text
    subtree = {folder["id"], sub["id"], *(f["id"] for f in files)}
    assert {n["id"] for n in response.json()["nodes"]} == subtree
    assert {n["id"] for n in full_tree(acct)} == {ROOT_ID, *subtree}
    assert node(acct, files[0]["id"])["parent_id"] == sub["id"]
    assert trash_ids(acct) == []


def test_separately_deleted_child_stays_in_trash_when_its_folder_is_restored(acct: Account) -> None:
    folder = mkdir(acct, "parent")
    early = put_file(acct, "deleted first", b"x", folder["id"])
    kept = put_file(acct, "deleted with folder", b"y", folder["id"])
    commit(acct, delete_op(early["id"], early["rev"]))
    commit(acct, delete_op(folder["id"], node(acct, folder["id"])["rev"]))
    assert set(trash_ids(acct)) == {folder["id"], early["id"]}
    assert acct.client.post(f"/trash/{folder['id']}/restore").status_code == 200
    assert node(acct, kept["id"])["state"] == "live"
    assert node(acct, early["id"])["state"] == "trashed"


def test_restore_when_the_name_is_taken_is_409(acct: Account) -> None:
    old = mkdir(acct, "name")
    commit(acct, delete_op(old["id"], old["rev"]))
    newer = mkdir(acct, "name")
    response = acct.client.post(f"/trash/{old['id']}/restore")
    assert response.status_code == 409 and error_code(response) == "name_conflict"
    assert response.json()["error"]["existing_id"] == newer["id"]
    assert trash_ids(acct) == [old["id"]]


def test_restore_of_something_not_in_trash_is_404(acct: Account) -> None:
    live = mkdir(acct, "live")
    response = acct.client.post(f"/trash/{live['id']}/restore")
    assert response.status_code == 404 and error_code(response) == "not_found"


def test_empty_trash_collects_chunk_records_and_blob_files(acct: Account, srv: RunningServer) -> None:
    """Deleted for good means gone: the database record and the file on disk both."""
    folder = mkdir(acct, "doomed")
    entry = upload_chunk(acct, b"soon collected")
    commit(acct, create_op(acct.keys, folder["id"], "f", "file", [entry]))
    chunk_id = entry[0]
    assert blob_exists(srv.data_dir, chunk_id)
    where = chunk_blob(srv.data_dir, chunk_id)
    assert where is not None
    commit(acct, delete_op(folder["id"], node(acct, folder["id"])["rev"]))
    # Still in the trash: the chunk must survive a collection.
    assert acct.client.post("/gc").json()["collected"] == 0
    assert acct.client.get(f"/chunks/{chunk_id}").status_code == 200

    emptied = acct.client.post("/trash/empty")
    assert emptied.status_code == 200 and emptied.json()["purged"] == 2
    assert trash_ids(acct) == []
    assert acct.client.get(f"/chunks/{chunk_id}").status_code == 404
    missing = acct.client.post("/chunks/missing", json={"ids": [chunk_id]}).json()["missing"]
    assert missing == [chunk_id]
    # Its pack held only this chunk: the file is gone.
    assert chunk_blob(srv.data_dir, chunk_id) is None and not where[0].exists()
    assert acct.client.get("/account").json()["used_bytes"] == 0
    assert acct.client.get(f"/nodes/{folder['id']}").status_code == 404


def test_gc_collects_an_uploaded_chunk_nothing_references(acct: Account, srv: RunningServer) -> None:
    """With a grace of 0, an upload never committed is garbage at the next collection."""
    chunk_id, _ = upload_chunk(acct, b"orphan")
    where = chunk_blob(srv.data_dir, chunk_id)
    assert where is not None and where[0].exists()
    assert acct.client.post("/gc").json()["collected"] == 1
    assert acct.client.get(f"/chunks/{chunk_id}").status_code == 404
    assert chunk_blob(srv.data_dir, chunk_id) is None and not where[0].exists()


def test_chunk_referenced_by_a_live_file_is_never_collected(acct: Account, srv: RunningServer) -> None:
    shared = upload_chunk(acct, b"shared by two files")
    keeper = commit(acct, create_op(acct.keys, ROOT_ID, "keeper", "file", [shared]))[0]
    victim = commit(acct, create_op(acct.keys, ROOT_ID, "victim", "file", [shared]))[0]
    old = upload_chunk(acct, b"only in an old version")
    history = commit(acct, create_op(acct.keys, ROOT_ID, "history", "file", [old]))[0]
    commit(acct, update_op(history["id"], history["rev"], [upload_chunk(acct, b"newer")]))
    commit(acct, delete_op(victim["id"], victim["rev"]))
    assert acct.client.post("/trash/empty").json()["purged"] == 1
    assert acct.client.post("/gc").status_code == 200
    for chunk_id, _ in (shared, old):
        response = acct.client.get(f"/chunks/{chunk_id}")
        assert response.status_code == 200 and blob_exists(srv.data_dir, chunk_id)
    assert node(acct, keeper["id"])["manifest"] == [list(shared)]


def test_empty_one_trashed_node(acct: Account) -> None:
    first, second = mkdir(acct, "first"), mkdir(acct, "second")
    commit(acct, delete_op(first["id"], first["rev"]), delete_op(second["id"], second["rev"]))
    response = acct.client.post("/trash/empty", json={"id": first["id"]})
    assert response.status_code == 200 and response.json()["purged"] == 1
    assert trash_ids(acct) == [second["id"]]
    again = acct.client.post("/trash/empty", json={"id": first["id"]})
    assert again.status_code == 404 and error_code(again) == "not_found"


def test_purged_node_id_cannot_be_reused_by_a_stale_batch(acct: Account) -> None:
    folder = mkdir(acct, "purged")
    commit(acct, delete_op(folder["id"], folder["rev"]))
    acct.client.post("/trash/empty")
    refused = batch(acct, delete_op(folder["id"], folder["rev"]))
    assert refused.status_code == 404 and error_code(refused) == "not_found"


def test_gc_removes_blob_files_left_without_a_record(acct: Account, srv: RunningServer) -> None:
    """A crash between writing a blob and recording it leaves an orphan file (a pack, or a
    blob under a chunk's id from before packs): GC removes it, and leaves recorded blobs alone."""
    kept = upload_chunk(acct, b"recorded and referenced")
    commit(acct, create_op(acct.keys, ROOT_ID, "kept", "file", [kept]))
    where = chunk_blob(srv.data_dir, kept[0])
    assert where is not None
    kept_blob = where[0]
    account = kept_blob.key.split("/")[0]
    orphans = [StoredBlob(srv.data_dir, f"{account}/{'f' * 64}"),
               StoredBlob(srv.data_dir, f"{account}/p/{'e' * 32}")]
    for orphan in orphans:
        orphan.write(b"left over from a crash")
    assert acct.client.post("/gc").status_code == 200
    assert not any(orphan.exists() for orphan in orphans)
    assert kept_blob.exists() and blob_exists(srv.data_dir, kept[0])
    assert acct.client.get(f"/chunks/{kept[0]}").status_code == 200
