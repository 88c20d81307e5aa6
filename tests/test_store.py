"""The metadata store's contract, through its API directly (no HTTP).

Written once over every implementation: each test runs on SQLite and on a real PostgreSQL
server (see `tests/postgres.py`; skipped, with the reason, only where its binaries are absent).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.core.wire import ROOT_ID
from tandem.server.store import StoreError, open_store
from tandem.server.store.base import Retention, Snapshot
from tandem.server.store.sql import SqlStore
from tests.conftest import BACKENDS
from tests.postgres import PostgresCluster

DAY = 86400
T0 = 1_800_000_000


MakeStore = Callable[..., SqlStore]


@pytest.fixture(params=BACKENDS)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    """Opens stores on this test's backend; the same `folder` names the same database."""
    cluster: PostgresCluster | None = (
        request.getfixturevalue("pg_cluster") if request.param == "postgresql" else None)
    opened: list[SqlStore] = []
    urls: dict[str, str] = {}

    def make(retention: Retention | None = None, quota: int | None = None, folder: str = "db") -> SqlStore:
        if folder not in urls:
            urls[folder] = (cluster.new_database() if cluster is not None
                            else "sqlite:///" + str(tmp_path / folder / "meta.db"))
        store = open_store(urls[folder], retention, quota)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    if cluster is not None:
        for url in urls.values():
            cluster.drop_database(url)


@pytest.fixture
def store(make_store: MakeStore) -> SqlStore:
    return make_store(Retention(chunk_grace_seconds=0))


def new_account(store: SqlStore, email: str | None = None) -> int:
    return store.create_account(email or f"{secrets.token_hex(4)}@example.com", b"s" * 16, "{}", b"h" * 32,
                                b"w" * 60, b"r" * 60, T0)


def nid() -> str:
    return secrets.token_hex(16)


def chunk(label: str) -> str:
    """A readable, stable chunk id for a label."""
    return label.encode().hex().ljust(64, "0")[:64]


def create(node_id: str, parent_id: str = ROOT_ID, name: bytes | None = None, kind: str = "folder",
           manifest: list[tuple[str, int]] | None = None) -> dict[str, Any]:
    manifest = manifest or []
    return {"op": "create", "id": node_id, "parent_id": parent_id, "name": name or node_id.encode(),
            "kind": kind, "size": sum(s for _, s in manifest), "mtime_ns": 0, "manifest": manifest}


def update(node_id: str, if_rev: int, manifest: list[tuple[str, int]], mtime_ns: int = 0) -> dict[str, Any]:
    return {"op": "update", "id": node_id, "if_rev": if_rev, "size": sum(s for _, s in manifest),
            "mtime_ns": mtime_ns, "manifest": manifest}


def delete(node_id: str, if_rev: int) -> dict[str, Any]:
    return {"op": "delete", "id": node_id, "if_rev": if_rev}


def apply(store: SqlStore, account: int, *ops: dict[str, Any], now: int = T0) -> list[dict[str, Any]]:
    results, _ = store.apply_batch(account, "dev", list(ops), now)
    return results


def refused(call: Callable[[], Any]) -> StoreError:
    with pytest.raises(StoreError) as caught:
        call()
    return caught.value


# ---- accounts and devices -------------------------------------------------------------------

def test_accounts_are_created_once_per_email(store: SqlStore) -> None:
    account = new_account(store, "a@example.com")
    found = store.account_by_email("a@example.com")
    assert found is not None and found.id == account and found.salt == b"s" * 16 and found.cursor == 0
    assert store.account_by_email("b@example.com") is None
    error = refused(lambda: new_account(store, "a@example.com"))
    assert (error.status, error.code) == (409, "email_taken")
    assert store.account_ids() == [account]
    assert refused(lambda: store.account(account + 100)).status == 404


def test_new_account_has_only_the_root_and_the_default_quota(make_store: MakeStore) -> None:
    store = make_store(quota=1000)
    account = new_account(store)
    nodes, cursor = store.list_tree(account, "", 10)
    assert [n.id for n in nodes] == [ROOT_ID] and cursor == 0
    assert store.account(account).quota_bytes == 1000


def test_devices_tokens_and_revocation(store: SqlStore) -> None:
    account, other = new_account(store), new_account(store)
    store.add_device(account, "d1", "laptop", b"t1" * 16, T0)
    store.add_device(account, "d2", "phone", b"t2" * 16, T0 + 1)
    device = store.device_for_token(b"t1" * 16)
    assert device is not None and (device.id, device.account_id, device.name) == ("d1", account, "laptop")
    assert [d.id for d in store.devices(account)] == ["d1", "d2"]
    assert refused(lambda: store.revoke_device(other, "d1", T0)).status == 404
    store.revoke_device(account, "d1", T0 + 5)
    assert store.device_for_token(b"t1" * 16) is None
    assert store.devices(account)[0].revoked_at == T0 + 5
    assert refused(lambda: store.revoke_device(account, "d1", T0)).status == 404
    store.touch_device("d2", T0 + 99)
    assert store.devices(account)[1].last_seen_at == T0 + 99


# ---- the tree, batches and the journal ------------------------------------------------------

def test_batch_creates_nodes_with_increasing_revisions(store: SqlStore) -> None:
    account = new_account(store)
    folder, file = nid(), nid()
    store.record_chunks(account, [(chunk("c1"), 10)], T0)
    results = apply(store, account, create(folder),
                    create(file, folder, b"file", "file", [(chunk("c1"), 10)]))
    assert [r["id"] for r in results] == [folder, file] and [r["rev"] for r in results] == [1, 2]
    got = store.node(account, file)
    assert (got.parent_id, got.kind, got.size, got.version, got.manifest) == (folder, "file", 10, 1,
                                                                               [(chunk("c1"), 10)])
    assert store.cursor(account) == 2


def test_batch_is_atomic_and_names_the_failing_op(store: SqlStore) -> None:
    account = new_account(store)
    taken = nid()
    apply(store, account, create(taken, name=b"taken"))
    first = nid()
    error = refused(lambda: apply(store, account, create(first), create(nid(), name=b"taken"), create(nid())))
    assert (error.status, error.code, error.detail["op_index"]) == (409, "name_conflict", 1)
    assert refused(lambda: store.node(account, first)).status == 404
    assert store.cursor(account) == 1


def test_revision_checks_and_tree_rules(store: SqlStore) -> None:
    account = new_account(store)
    top, sub = nid(), nid()
    apply(store, account, create(top), create(sub, top))
    stale = refused(lambda: apply(store, account, delete(top, 0)))
    assert (stale.code, stale.detail["current_rev"]) == ("rev_conflict", 1)
    move = {"op": "move", "id": top, "if_rev": 1, "parent_id": sub, "name": b"x"}
    assert refused(lambda: apply(store, account, move)).code == "cycle"
    root_delete = refused(lambda: apply(store, account, delete(ROOT_ID, 0)))
    assert (root_delete.status, root_delete.code) == (400, "root")
    missing = refused(lambda: apply(store, account, create(nid(), "f" * 32)))
    assert missing.code == "parent_not_found"


def test_create_retry_is_idempotent_and_mtime_update_keeps_the_version(store: SqlStore) -> None:
    account = new_account(store)
    store.record_chunks(account, [(chunk("c"), 4)], T0)
    op = create(nid(), kind="file", manifest=[(chunk("c"), 4)])
    first = apply(store, account, op)
    assert apply(store, account, op) == first and store.cursor(account) == 1
    apply(store, account, update(op["id"], 1, [(chunk("c"), 4)], mtime_ns=7))
    got = store.node(account, op["id"])
    assert (got.version, got.mtime_ns, got.rev) == (1, 7, 2)
    assert [v.number for v in store.versions(account, op["id"])] == [1]


def test_content_checks_refuse_missing_chunks_and_wrong_sizes(store: SqlStore) -> None:
    account = new_account(store)
    absent = refused(lambda: apply(store, account, create(nid(), kind="file", manifest=[(chunk("x"), 3)])))
    assert (absent.code, absent.detail["chunks"]) == ("missing_chunks", [chunk("x")])
    store.record_chunks(account, [(chunk("x"), 3)], T0)
    op = create(nid(), kind="file", manifest=[(chunk("x"), 3)])
    op["size"] = 4
    assert refused(lambda: apply(store, account, op)).code == "size_mismatch"


def test_list_tree_pages_and_changes_follow_the_journal(store: SqlStore) -> None:
    account = new_account(store)
    ids = sorted(nid() for _ in range(7))
    apply(store, account, *(create(i) for i in ids))
    seen, after = [], ""
    while True:
        page, cursor = store.list_tree(account, after, 3)
        seen += [n.id for n in page]
        if len(page) < 3:
            break
        after = page[-1].id
    assert sorted(seen) == sorted([ROOT_ID, *ids]) and cursor == 7
    changes, new_cursor, more = store.changes(account, 0, 5)
    assert len(changes) == 5 and more and new_cursor == changes[-1].rev
    rest, final, more = store.changes(account, new_cursor, 5)
    assert len(rest) == 2 and not more and final == 7
    apply(store, account, delete(ids[0], 1))
    tail, _, _ = store.changes(account, 7, 10)
    assert [(n.id, n.state) for n in tail] == [(ids[0], "trashed")]
    assert refused(lambda: store.changes(account, 99, 10)).code == "cursor_invalid"


def test_listeners_hear_commits_but_not_refusals(store: SqlStore) -> None:
    heard: list[tuple[int, int]] = []
    store.add_listener(lambda account_id, cursor: heard.append((account_id, cursor)))
    account = new_account(store)
    apply(store, account, create(nid()), create(nid()))
    refused(lambda: apply(store, account, create(nid(), "f" * 32)))
    assert heard == [(account, 2)]


def test_concurrent_batches_serialise_per_account(store: SqlStore) -> None:
    """The API calls the store from many threads: every commit lands, revisions stay unique."""
    account = new_account(store)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(10):
                apply(store, account, create(nid()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and not any(t.is_alive() for t in threads)
    nodes, cursor = store.list_tree(account, "", 100)
    assert cursor == 40 and len({n.rev for n in nodes}) == 41


def test_accounts_do_not_see_each_other(store: SqlStore) -> None:
    owner, other = new_account(store), new_account(store)
    folder = nid()
    apply(store, owner, create(folder))
    assert refused(lambda: store.node(other, folder)).status == 404
    assert refused(lambda: apply(store, other, delete(folder, 1))).status == 404
    store.record_chunks(owner, [(chunk("mine"), 5)], T0)
    assert store.missing_chunks(other, [chunk("mine")]) == [chunk("mine")]
    assert store.chunk_size(other, chunk("mine")) is None


# ---- backups -------------------------------------------------------------------------------

def test_backups_are_listed_across_devices_with_their_newest_label(store: SqlStore) -> None:
    owner, other = new_account(store), new_account(store)
    laptop, desk = nid(), nid()
    store.add_device(owner, laptop, "laptop", secrets.token_bytes(32), T0)
    store.add_device(owner, desk, "desk", secrets.token_bytes(32), T0)
    store.record_chunks(owner, [(chunk("doc"), 9), (chunk("file"), 5)], T0)
    photos, music = sorted([nid(), nid()])

    def snap(backup: str, device: str, taken: int, label: bytes | None) -> Snapshot:
        made = Snapshot(nid(), backup, None, taken, T0, 5, 1, [(chunk("doc"), 9)], label)
        return store.create_snapshot(owner, device, made, [chunk("file")])

    snap(photos, laptop, 10, b"sealed photos")
    newest = snap(photos, laptop, 30, None)  # from a client that sends no label
    snap(music, desk, 20, b"sealed music")
    listed = store.backups(owner)
    assert [(b.id, b.device_id, b.device_name, b.snapshots, b.newest_taken_at_ns,
             b.newest_snapshot_id, b.label) for b in listed] == [
        (photos, laptop, "laptop", 2, 30, newest.id, b"sealed photos"),
        (music, desk, "desk", 1, 20, listed[1].newest_snapshot_id, b"sealed music")]
    assert store.snapshot(owner, listed[1].newest_snapshot_id).label == b"sealed music"
    assert store.backups(other) == []
    # What a snapshot references stays through GC; a backup with no snapshot is no backup.
    assert store.collect_garbage(owner, T0 + DAY).chunks == []
    for snapshot in store.snapshots(owner, music):
        store.delete_snapshot(owner, snapshot.id)
    assert [b.id for b in store.backups(owner)] == [photos]


# ---- history -----------------------------------------------------------------------------

def test_versions_restore_and_trash(store: SqlStore) -> None:
    account = new_account(store)
    store.record_chunks(account, [(chunk("v1"), 1), (chunk("v2"), 2)], T0)
    folder, file = nid(), nid()
    apply(store, account, create(folder), create(file, folder, b"f", "file", [(chunk("v1"), 1)]))
    apply(store, account, update(file, 2, [(chunk("v2"), 2)]))
    restored = store.restore_version(account, "dev", file, 1, None, T0)
    assert (restored.version, restored.manifest) == (3, [(chunk("v1"), 1)])
    apply(store, account, delete(folder, 1))
    assert [n.id for n in store.trash(account)] == [folder]
    assert {n.id for n in store.restore_trash(account, folder, None, None, T0)} == {folder, file}
    apply(store, account, delete(folder, store.node(account, folder).rev))
    assert store.empty_trash(account, None, T0) == 2
    assert store.trash(account) == []


# ---- chunks, quota and garbage collection ----------------------------------------------------

def test_chunk_records_dedup_and_count_against_the_quota(make_store: MakeStore) -> None:
    store = make_store(quota=100)
    account = new_account(store)
    assert store.record_chunks(account, [(chunk("a"), 40), (chunk("b"), 40)], T0) == 2
    assert store.record_chunks(account, [(chunk("a"), 40)], T0) == 0
    assert store.account(account).used_bytes == 80
    assert store.missing_chunks(account, [chunk("a"), chunk("c")]) == [chunk("c")]
    assert store.chunk_size(account, chunk("b")) == 40
    store.reserve_space(account, 20)
    error = refused(lambda: store.reserve_space(account, 21))
    assert (error.status, error.code) == (507, "quota_exceeded")


def test_gc_collects_only_unreferenced_chunks_past_their_grace(make_store: MakeStore) -> None:
    store = make_store(Retention(chunk_grace_seconds=3600))
    account = new_account(store)
    store.record_chunks(account, [(chunk("used"), 1), (chunk("orphan"), 1)], T0)
    apply(store, account, create(nid(), kind="file", manifest=[(chunk("used"), 1)]))
    assert store.collect_garbage(account, T0 + 10).chunks == []
    collected = store.collect_garbage(account, T0 + 3600)
    # Recorded without a pack (the layout before packs): its blob is its own, to delete.
    assert collected.chunks == collected.own_blobs == [chunk("orphan")] and collected.packs == []
    assert store.missing_chunks(account, [chunk("used"), chunk("orphan")]) == [chunk("orphan")]
    assert store.account(account).used_bytes == 1


def test_gc_applies_trash_and_version_retention(store: SqlStore) -> None:
    account = new_account(store)
    store.record_chunks(account, [(chunk(f"v{i}"), 1) for i in range(3)], T0)
    file, gone = nid(), nid()
    apply(store, account, create(file, kind="file", manifest=[(chunk("v0"), 1)]),
          create(gone, kind="file", manifest=[(chunk("v2"), 1)]))
    apply(store, account, update(file, 1, [(chunk("v1"), 1)]))
    apply(store, account, delete(gone, 2))
    assert store.collect_garbage(account, T0 + 29 * DAY).chunks == []
    doomed = set(store.collect_garbage(account, T0 + 31 * DAY).chunks)
    assert doomed == {chunk("v0"), chunk("v2")}
    assert [v.number for v in store.versions(account, file)] == [2]
    assert store.trash(account) == []


def test_old_tombstones_expire_cursors_that_predate_them(store: SqlStore) -> None:
    account = new_account(store)
    folder = nid()
    apply(store, account, create(folder))
    apply(store, account, delete(folder, 1))
    store.empty_trash(account, None, T0)
    store.collect_garbage(account, T0 + 91 * DAY)
    error = refused(lambda: store.changes(account, 0, 10))
    assert (error.status, error.code) == (410, "cursor_expired")
    assert store.changes(account, store.cursor(account), 10)[0] == []


def test_data_survives_reopening(make_store: MakeStore) -> None:
    first = make_store(folder="same")
    account = new_account(first, "keep@example.com")
    apply(first, account, create(nid()))
    first.close()
    again = make_store(folder="same")
    assert again.cursor(account) == 1 and again.account_by_email("keep@example.com") is not None
