"""The tree over HTTP: creates, revisions, names, moves, deletes, batches, listing, journal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tandem.core.crypto import b64decode
from tandem.core.wire import ROOT_ID
from tests.conftest import BACKENDS, RunningServer, backend_args
from tests.helpers_api import (
    Account,
    batch,
    commit,
    create_op,
    cursor,
    delete_op,
    error_code,
    fresh_email,
    full_tree,
    make_account,
    mkdir,
    move_op,
    new_node_id,
    node,
    put_file,
    serving,
    update_op,
    upload_chunk,
)


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


def test_create_folder_and_file(acct: Account) -> None:
    folder = mkdir(acct, "Documents")
    entry = upload_chunk(acct, b"hello world")
    op = create_op(acct.keys, folder["id"], "hello.txt", "file", [entry], mtime_ns=123)
    created = commit(acct, op)[0]
    got = node(acct, created["id"])
    assert got["parent_id"] == folder["id"] and got["kind"] == "file" and got["state"] == "live"
    assert got["size"] == 11 and got["mtime_ns"] == 123 and got["version"] == 1
    assert got["manifest"] == [list(entry)] and got["rev"] == created["rev"]
    assert acct.keys.decrypt_name(folder["id"], b64decode(got["name"])) == "hello.txt"
    assert node(acct, folder["id"])["kind"] == "folder"


def test_stale_if_rev_is_409_with_the_current_rev(acct: Account) -> None:
    """No lost updates (promise 6): a change based on an old revision is refused."""
    file = put_file(acct, "a.txt", b"one")
    newer = commit(acct, update_op(file["id"], file["rev"], [upload_chunk(acct, b"two")]))[0]
    stale = batch(acct, update_op(file["id"], file["rev"], [upload_chunk(acct, b"three")]))
    assert stale.status_code == 409 and error_code(stale) == "rev_conflict"
    assert stale.json()["error"]["current_rev"] == newer["rev"]
    stale_move = move_op(acct.keys, file["id"], file["rev"], ROOT_ID, "b.txt")
    for op in (stale_move, delete_op(file["id"], file["rev"])):
        refused = batch(acct, op)
        assert refused.status_code == 409 and error_code(refused) == "rev_conflict"
    assert node(acct, file["id"])["rev"] == newer["rev"]


def test_name_clash_is_409_with_the_existing_id(acct: Account) -> None:
    first = mkdir(acct, "same")
    clash = batch(acct, create_op(acct.keys, ROOT_ID, "same", "file"))
    assert clash.status_code == 409 and error_code(clash) == "name_conflict"
    assert clash.json()["error"]["existing_id"] == first["id"]
    other = mkdir(acct, "other")
    moved = batch(acct, move_op(acct.keys, other["id"], other["rev"], ROOT_ID, "same"))
    assert moved.status_code == 409 and error_code(moved) == "name_conflict"
    # The same name in another folder is fine: names are only unique per folder.
    mkdir(acct, "same", parent_id=other["id"])


def test_move_into_own_descendant_is_400_cycle(acct: Account) -> None:
    top = mkdir(acct, "top")
    middle = mkdir(acct, "middle", top["id"])
    bottom = mkdir(acct, "bottom", middle["id"])
    for target in (top, bottom):
        refused = batch(acct, move_op(acct.keys, top["id"], top["rev"], target["id"], "top"))
        assert refused.status_code == 400 and error_code(refused) == "cycle"
    assert node(acct, top["id"])["parent_id"] == ROOT_ID


def test_root_cannot_be_deleted_or_moved(acct: Account) -> None:
    folder = mkdir(acct, "f")
    root_rev = node(acct, ROOT_ID)["rev"]
    for op in (delete_op(ROOT_ID, root_rev), move_op(acct.keys, ROOT_ID, root_rev, folder["id"], "r")):
        refused = batch(acct, op)
        assert refused.status_code == 400 and error_code(refused) == "root"
    assert node(acct, ROOT_ID)["state"] == "live"


def test_batch_is_all_or_nothing(acct: Account) -> None:
    """One bad operation in the middle: nothing applies, the error names it, the cursor stays."""
    taken = mkdir(acct, "taken")
    before = cursor(acct)
    ops = [create_op(acct.keys, ROOT_ID, f"ok-{i}") for i in range(3)]
    ops.append(create_op(acct.keys, ROOT_ID, "taken"))
    ops += [create_op(acct.keys, ROOT_ID, f"after-{i}") for i in range(3)]
    refused = batch(acct, *ops)
    assert refused.status_code == 409 and error_code(refused) == "name_conflict"
    assert refused.json()["error"]["op_index"] == 3
    assert refused.json()["error"]["existing_id"] == taken["id"]
    assert cursor(acct) == before
    live = {n["id"] for n in full_tree(acct)}
    assert live == {ROOT_ID, taken["id"]}
    assert acct.client.get(f"/nodes/{ops[0]['id']}").status_code == 404


def test_batch_with_over_a_thousand_creates(acct: Account) -> None:
    """A large first sync goes in few requests: one folder and 1,200 files in one batch."""
    folder = create_op(acct.keys, ROOT_ID, "bulk")
    entry = upload_chunk(acct, b"shared content")
    files = [create_op(acct.keys, folder["id"], f"file-{i:04}.txt", "file", [entry]) for i in range(1200)]
    results = commit(acct, folder, *files)
    assert len(results) == 1201
    revs = [r["rev"] for r in results]
    assert revs == sorted(revs) and len(set(revs)) == len(revs)
    assert cursor(acct) == revs[-1]
    assert len(full_tree(acct, limit=5000)) == 1202


def test_retried_create_is_idempotent(acct: Account) -> None:
    """A create whose answer was lost can be resent: same node, same revision, no copy."""
    op = create_op(acct.keys, ROOT_ID, "retry.txt", "file", [upload_chunk(acct, b"data")])
    first = commit(acct, op)[0]
    at = cursor(acct)
    again = commit(acct, op)[0]
    assert again == first and cursor(acct) == at
    # Renamed by another device before the retry arrived: still the same create, no copy.
    moved = commit(acct, move_op(acct.keys, first["id"], first["rev"], ROOT_ID, "renamed.txt"))[0]
    assert commit(acct, op)[0]["rev"] == moved["rev"]
    # The same id as another kind of node is not a retry: refused.
    refused = batch(acct, dict(op, kind="folder", manifest=None, size=0))
    assert refused.status_code == 409 and error_code(refused) == "id_exists"


def test_size_must_match_the_manifest(acct: Account) -> None:
    op = create_op(acct.keys, ROOT_ID, "f.bin", "file", [upload_chunk(acct, b"12345")])
    op["size"] = 6
    folder = create_op(acct.keys, ROOT_ID, "d")
    refused = batch(acct, folder, op)
    assert refused.status_code == 400 and error_code(refused) == "size_mismatch"
    assert refused.json()["error"]["op_index"] == 1
    assert acct.client.get(f"/nodes/{folder['id']}").status_code == 404


def test_manifest_with_chunks_not_uploaded_is_409_missing_chunks(acct: Account) -> None:
    present = upload_chunk(acct, b"uploaded")
    absent = (acct.keys.chunk_id(b"never uploaded"), 14)
    refused = batch(acct, create_op(acct.keys, ROOT_ID, "f", "file", [present, absent]))
    assert refused.status_code == 409 and error_code(refused) == "missing_chunks"
    assert refused.json()["error"]["chunks"] == [absent[0]]
    file = put_file(acct, "g", b"content")
    refused = batch(acct, update_op(file["id"], file["rev"], [absent]))
    assert refused.status_code == 409 and error_code(refused) == "missing_chunks"


def test_mtime_only_update_creates_no_new_version(acct: Account) -> None:
    """Touching a file must not make every other device download it again."""
    entry = upload_chunk(acct, b"unchanged")
    file = commit(acct, create_op(acct.keys, ROOT_ID, "t.txt", "file", [entry], mtime_ns=1))[0]
    touched = commit(acct, update_op(file["id"], file["rev"], [entry], mtime_ns=2))[0]
    assert touched["rev"] > file["rev"]
    got = node(acct, file["id"])
    assert got["version"] == 1 and got["mtime_ns"] == 2
    versions = acct.client.get(f"/nodes/{file['id']}/versions").json()["versions"]
    assert [v["number"] for v in versions] == [1]


def test_a_batch_of_updates_checks_each_against_the_tree_as_it_goes(acct: Account) -> None:
    """Updates only are read ahead in a few queries: the same node updated twice in one batch
    still meets its own first update (stale revision), a new chunk that is not stored is still
    refused, and chunks the replaced versions hold need no upload."""
    kept = upload_chunk(acct, b"kept content")
    files = [commit(acct, create_op(acct.keys, ROOT_ID, f"u{i}", "file", [kept], mtime_ns=1))[0]
             for i in range(3)]
    touched = commit(acct, *(update_op(f["id"], f["rev"], [kept], mtime_ns=5) for f in files))
    assert [node(acct, f["id"])["mtime_ns"] for f in files] == [5, 5, 5]
    twice = batch(acct, update_op(files[0]["id"], touched[0]["rev"], [kept], mtime_ns=6),
                  update_op(files[0]["id"], touched[0]["rev"], [kept], mtime_ns=7))
    assert twice.status_code == 409 and error_code(twice) == "rev_conflict"
    assert twice.json()["error"]["op_index"] == 1
    absent = (acct.keys.chunk_id(b"never uploaded either"), 21)
    refused = batch(acct, update_op(files[1]["id"], touched[1]["rev"], [kept], mtime_ns=8),
                    update_op(files[2]["id"], touched[2]["rev"], [kept, absent]))
    assert refused.status_code == 409 and error_code(refused) == "missing_chunks"
    assert refused.json()["error"]["chunks"] == [absent[0]]
    assert node(acct, files[1]["id"])["mtime_ns"] == 5  # nothing of a refused batch applied


def test_paged_tree_listing_covers_every_node(acct: Account) -> None:
    folder = mkdir(acct, "pages")
    ops = [create_op(acct.keys, folder["id"], f"n{i}") for i in range(23)]
    commit(acct, *ops)
    expected = {ROOT_ID, folder["id"], *(op["id"] for op in ops)}
    pages = 0
    after, seen = "", []
    while True:
        page = acct.client.get("/tree", params={"after": after, "limit": 4}).json()
        pages += 1
        assert len(page["nodes"]) <= 4
        seen += [n["id"] for n in page["nodes"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
        assert pages < 100
    assert len(seen) == len(set(seen)) and set(seen) == expected
    assert pages >= 7


def test_changes_after_a_cursor(acct: Account) -> None:
    start = cursor(acct)
    folder = mkdir(acct, "c")
    file = put_file(acct, "x", b"x", folder["id"])
    answer = acct.client.get("/changes", params={"cursor": start})
    assert answer.status_code == 200
    body = answer.json()
    assert [c["id"] for c in body["changes"]] == [folder["id"], file["id"]]
    assert body["cursor"] == file["rev"] and not body["has_more"]
    commit(acct, delete_op(folder["id"], folder["rev"]))
    later = acct.client.get("/changes", params={"cursor": body["cursor"]}).json()
    assert {c["id"]: c["state"] for c in later["changes"]} == {folder["id"]: "trashed", file["id"]: "trashed"}
    assert acct.client.get("/changes", params={"cursor": later["cursor"]}).json()["changes"] == []


def test_changes_in_pages(acct: Account) -> None:
    start = cursor(acct)
    commit(acct, *(create_op(acct.keys, ROOT_ID, f"p{i}") for i in range(5)))
    first = acct.client.get("/changes", params={"cursor": start, "limit": 3}).json()
    assert len(first["changes"]) == 3 and first["has_more"]
    rest = acct.client.get("/changes", params={"cursor": first["cursor"], "limit": 3}).json()
    assert len(rest["changes"]) == 2 and not rest["has_more"]


def test_cursor_ahead_of_the_server_is_400(acct: Account) -> None:
    mkdir(acct, "one")
    ahead = acct.client.get("/changes", params={"cursor": cursor(acct) + 1})
    assert ahead.status_code == 400 and error_code(ahead) == "cursor_invalid"


def test_delete_moves_a_subtree_to_trash_and_frees_the_name(acct: Account) -> None:
    folder = mkdir(acct, "gone")
    child = put_file(acct, "c", b"c", folder["id"])
    deleted = commit(acct, delete_op(folder["id"], folder["rev"]))[0]
    assert node(acct, child["id"])["state"] == "trashed"
    assert node(acct, folder["id"])["rev"] == deleted["rev"]
    assert {n["id"] for n in full_tree(acct)} == {ROOT_ID}
    mkdir(acct, "gone")


def test_create_under_a_file_or_a_missing_parent_is_refused(acct: Account) -> None:
    file = put_file(acct, "plain", b"p")
    under_file = batch(acct, create_op(acct.keys, file["id"], "x"))
    assert under_file.status_code == 409 and error_code(under_file) == "parent_not_folder"
    nowhere = batch(acct, create_op(acct.keys, new_node_id(), "x"))
    assert nowhere.status_code == 404 and error_code(nowhere) == "parent_not_found"
