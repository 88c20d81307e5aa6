"""Chunks stored in packs: one blob file per upload, exact ranged reads, chunks of the layout
before packs still readable after the migration, GC of packs (delete when dead, repack when
mostly dead, keep every live chunk byte-identical), the orphan sweep, and crash safety."""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tandem.core.wire import ROOT_ID, decode_download_frames, encode_upload_frame
from tandem.server.app import open_services
from tandem.server.blobs.local import LocalBlobStore
from tandem.server.config import ServerConfig
from tandem.server.deps import Services
from tandem.server.packs import collect_account, pack_key, read_chunk, store_pack
from tandem.server.store.base import ChunkLocation, Retention
from tandem.server.store.schema import MIGRATIONS
from tests.conftest import SCALE_BACKENDS, RunningServer, backend_args, start_server, stop_server
from tests.helpers_api import (
    Account,
    authed_client,
    commit,
    content_hash,
    create_op,
    delete_op,
    fresh_email,
    make_account,
    seal,
    serving,
)
from tests.helpers_storage import StoredBlob, chunk_blob, stored_blobs, stored_bytes

KIB = 1024


@pytest.fixture(scope="module", params=SCALE_BACKENDS)
def srv(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serving(tmp_path_factory, *backend_args(request, request.param)) as running:
        yield running


@pytest.fixture
def acct(srv: RunningServer) -> Iterator[Account]:
    account = make_account(srv.url, fresh_email())
    yield account
    account.close()


def sealed(account: Account, plaintexts: list[bytes]) -> list[tuple[str, bytes, int]]:
    """(chunk id, ciphertext, plaintext size) of each plaintext."""
    return [(*seal(account.keys, p), len(p)) for p in plaintexts]


def upload_pack(account: Account, chunks: list[tuple[str, bytes, int]]) -> None:
    body = b"".join(encode_upload_frame(cid, content_hash(ct), ct) for cid, ct, _ in chunks)
    response = account.client.post("/chunks/pack", content=body)
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == len(chunks)


def fetch(account: Account, ids: list[str]) -> list[tuple[str, bytes]]:
    response = account.client.post("/chunks/fetch", json={"ids": ids})
    assert response.status_code == 200, response.text
    return list(decode_download_frames([response.content]))


def commit_file(account: Account, name: str, chunks: list[tuple[str, bytes, int]]) -> dict[str, Any]:
    return commit(account, create_op(account.keys, ROOT_ID, name, "file",
                                     [(cid, size) for cid, _, size in chunks]))[0]


def assert_readable(account: Account, data_dir: Path, chunks: list[tuple[str, bytes, int]]) -> None:
    """Every chunk answers byte-identical to what was uploaded, alone, fetched, and on disk."""
    for chunk_id, ciphertext, _ in chunks:
        response = account.client.get(f"/chunks/{chunk_id}")
        assert response.status_code == 200 and response.content == ciphertext
        assert stored_bytes(data_dir, chunk_id) == ciphertext
    assert fetch(account, [c for c, _, _ in chunks]) == [(c, ct) for c, ct, _ in chunks]


def test_a_pack_upload_is_one_blob_file_for_many_chunks(acct: Account, srv: RunningServer) -> None:
    before = stored_blobs(srv.data_dir)
    chunks = sealed(acct, [os.urandom(random.randint(1, 16 * KIB)) for _ in range(300)])
    upload_pack(acct, chunks)
    new = stored_blobs(srv.data_dir) - before
    assert len(new) == 1, "300 chunks, one blob"
    (pack,) = new
    offset = 0
    for chunk_id, ciphertext, _ in chunks:
        assert chunk_blob(srv.data_dir, chunk_id) == (pack, offset, len(ciphertext))
        offset += len(ciphertext)
    assert pack.size() == offset == acct.client.get("/account").json()["used_bytes"]
    assert_readable(acct, srv.data_dir, chunks)


def test_ranged_reads_return_exactly_each_chunk(acct: Account) -> None:
    chunks = sealed(acct, [b"a", os.urandom(70000), b"bb", os.urandom(5000), b"c"])
    upload_pack(acct, chunks)
    for chunk_id, ciphertext, _ in chunks:
        whole = acct.client.get(f"/chunks/{chunk_id}")
        assert whole.content == ciphertext and whole.headers["accept-ranges"] == "bytes"
        size = len(ciphertext)
        for header, want in ((f"bytes=1-{size - 2}", ciphertext[1:-1]),
                             ("bytes=10-", ciphertext[10:]),
                             ("bytes=-5", ciphertext[-5:]),
                             (f"bytes=0-{size + 100}", ciphertext)):
            part = acct.client.get(f"/chunks/{chunk_id}", headers={"Range": header})
            assert part.status_code == 206 and part.content == want, header
            first = size - len(want) if header.startswith("bytes=-") else int(header[6:].split("-")[0])
            assert part.headers["content-range"] == f"bytes {first}-{first + len(want) - 1}/{size}"
        past = acct.client.get(f"/chunks/{chunk_id}", headers={"Range": f"bytes={size}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    # In pack order (one ranged read for neighbours), shuffled, and with repeats.
    ids = [c for c, _, _ in chunks]
    by_id = {c: ct for c, ct, _ in chunks}
    for order in (ids, ids[::-1], [ids[2], ids[0], ids[1], ids[2], ids[4], ids[3]]):
        assert fetch(acct, order) == [(c, by_id[c]) for c in order]


def test_gc_deletes_a_dead_pack_repacks_a_mostly_dead_one_and_keeps_the_rest(
        acct: Account, srv: RunningServer) -> None:
    dead = sealed(acct, [os.urandom(4 * KIB) for _ in range(4)])
    sparse = sealed(acct, [os.urandom(4 * KIB) for _ in range(10)])
    dense = sealed(acct, [os.urandom(4 * KIB) for _ in range(10)])
    files = {}
    for name, chunks in (("dead", dead), ("sparse", sparse), ("dense", dense)):
        before = stored_blobs(srv.data_dir)
        upload_pack(acct, chunks)
        (files[name],) = stored_blobs(srv.data_dir) - before
    live = sparse[2:5] + dense[:7]
    commit_file(acct, "sparse survivors", sparse[2:5])
    commit_file(acct, "dense survivors", dense[:7])

    collected = acct.client.post("/gc")
    assert collected.status_code == 200 and collected.json()["collected"] == 4 + 7 + 3
    assert not files["dead"].exists(), "a pack with no live chunk is deleted"
    assert not files["sparse"].exists(), "a pack less than half live is repacked"
    assert files["dense"].exists(), "a pack more than half live stays"
    assert_readable(acct, srv.data_dir, live)
    (repacked,) = {chunk_blob(srv.data_dir, c)[0] for c, _, _ in sparse[2:5]}  # type: ignore[index]
    assert repacked not in files.values()
    assert repacked.size() == sum(len(ct) for _, ct, _ in sparse[2:5])
    for chunk_id, _, _ in dead + sparse[:2] + sparse[5:] + dense[7:]:
        assert chunk_blob(srv.data_dir, chunk_id) is None
        assert acct.client.get(f"/chunks/{chunk_id}").status_code == 404
    assert acct.client.get("/account").json()["used_bytes"] == sum(len(ct) for _, ct, _ in live)
    # Stable: the next collection has nothing to do and moves nothing.
    layout = {c: chunk_blob(srv.data_dir, c) for c, _, _ in live}
    assert acct.client.post("/gc").json()["collected"] == 0
    assert {c: chunk_blob(srv.data_dir, c) for c, _, _ in live} == layout


def test_orphan_sweep_keeps_live_packs(acct: Account, srv: RunningServer) -> None:
    """A pack stays while any chunk record points into it, even one mostly dead's survivor;
    packs and own-id blobs nothing points to are deleted (left by crashes)."""
    live = sealed(acct, [os.urandom(2 * KIB) for _ in range(6)])
    upload_pack(acct, live)
    commit_file(acct, "live", live)
    where = chunk_blob(srv.data_dir, live[0][0])
    assert where is not None
    pack = where[0]
    account = pack.key.split("/")[0]
    orphans = [StoredBlob(srv.data_dir, f"{account}/p/{'0f' * 16}"),
               StoredBlob(srv.data_dir, f"{account}/{'ab' * 32}")]
    for orphan in orphans:
        orphan.write(os.urandom(100))
    assert acct.client.post("/gc").status_code == 200
    assert pack.exists() and not any(o.exists() for o in orphans)
    assert_readable(acct, srv.data_dir, live)


def account_id(data_dir: Path, email: str) -> int:
    with closing(sqlite3.connect(data_dir / "meta.db")) as db:
        return int(db.execute("SELECT id FROM accounts WHERE email = ?", (email,)).fetchone()[0])


def test_chunks_of_the_layout_before_packs_are_read_and_collected_after_the_migration(
        tmp_path: Path) -> None:
    """A server from before packs kept each chunk as `<account>/<chunk id>`, recorded without a
    location. Its database is migrated on start, nothing is rewritten, and those chunks are
    read (alone, by range, fetched beside packed ones), kept while referenced and collected."""
    data = tmp_path / "data"
    server = start_server(data, "--gc-grace", "0")
    try:
        account = make_account(server.url, fresh_email())
        account.close()
    finally:
        stop_server(server)
    acct_id = account_id(data, account.email)
    old = sealed(account, [os.urandom(3000), b"old and small"])
    # Turn the database back into schema 2 (as the server before packs left it) and store
    # the chunks that server's way: a blob each under its own id, a record with no location.
    with closing(sqlite3.connect(data / "meta.db")) as db:
        assert db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
        db.executescript(
            "DROP INDEX chunks_pack; ALTER TABLE chunks DROP COLUMN pack;"
            " ALTER TABLE chunks DROP COLUMN pack_offset; DROP TABLE packs;"
            " ALTER TABLE snapshots DROP COLUMN label;"
            " DELETE FROM schema_version WHERE version > 2;")
        for chunk_id, ciphertext, _ in old:
            db.execute("INSERT INTO chunks (account_id, id, size, created_at) VALUES (?, ?, ?, 0)",
                       (acct_id, chunk_id, len(ciphertext)))
        db.execute("UPDATE accounts SET used_bytes = ? WHERE id = ?",
                   (sum(len(ct) for _, ct, _ in old), acct_id))
        db.commit()
    blobs = LocalBlobStore(data / "blobs")
    blobs.put_many([(f"{acct_id}/{cid}", ct) for cid, ct, _ in old])
    own_files = {cid: StoredBlob(data, f"{acct_id}/{cid}") for cid, _, _ in old}
    assert all(blob.exists() for blob in own_files.values())
    assert (data / "blobs" / str(acct_id) / old[0][0][:2] / old[0][0]).is_file(), "the old layout"

    server = start_server(data, "--gc-grace", "0")
    account.client = authed_client(server.url, account.token)
    try:
        with closing(sqlite3.connect(data / "meta.db")) as db:
            assert db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
        assert account.client.post("/chunks/missing",
                                   json={"ids": [c for c, _, _ in old]}).json()["missing"] == []
        new = sealed(account, [os.urandom(2000), b"new"])
        upload_pack(account, new)
        assert_readable(account, data, old + new)
        mixed = [old[0], new[0], old[1], new[1]]
        assert fetch(account, [c for c, _, _ in mixed]) == [(c, ct) for c, ct, _ in mixed]
        ranged = account.client.get(f"/chunks/{old[0][0]}", headers={"Range": "bytes=100-199"})
        assert ranged.status_code == 206 and ranged.content == old[0][1][100:200]

        kept = commit_file(account, "kept", [old[0], new[0]])
        dropped = commit_file(account, "dropped", [old[1]])
        assert account.client.post("/gc").json()["collected"] == 1  # new[1]: never committed
        assert own_files[old[0][0]].exists() and own_files[old[1][0]].exists()
        commit(account, delete_op(dropped["id"], dropped["rev"]))
        assert account.client.post("/trash/empty").status_code == 200
        assert not own_files[old[1][0]].exists(), "an old-layout blob is collected as before"
        assert own_files[old[0][0]].exists()
        assert_readable(account, data, [old[0], new[0]])
        assert kept["id"]
    finally:
        account.close()
        stop_server(server)


def in_process(data: Path) -> Services:
    """The server's parts without HTTP, on a data folder a real server also uses."""
    return open_services(ServerConfig(data_dir=data, gc_interval=0,
                                      retention=Retention(chunk_grace_seconds=0)))


def test_a_crash_between_writing_a_pack_and_recording_it_leaves_no_visible_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    server = start_server(data, "--gc-grace", "0")
    account = make_account(server.url, fresh_email())
    live = sealed(account, [os.urandom(1000) for _ in range(3)])
    upload_pack(account, live)
    commit_file(account, "live", live)
    stop_server(server)
    acct_id = account_id(data, account.email)

    lost = sealed(account, [os.urandom(1000) for _ in range(5)])
    parts = in_process(data)
    before = stored_blobs(data)

    def crash(*_: object, **__: object) -> int:
        raise OSError("power lost before the commit")

    monkeypatch.setattr(parts.store, "record_pack", crash)
    with pytest.raises(OSError):
        store_pack(parts, acct_id, {cid: ct for cid, ct, _ in lost})
    (orphan,) = stored_blobs(data) - before  # the pack was written, durably, and never recorded
    parts.store.close()

    server = start_server(data, "--gc-grace", "0")
    account.client = authed_client(server.url, account.token)
    try:
        ids = [c for c, _, _ in lost]
        assert account.client.post("/chunks/missing", json={"ids": ids}).json()["missing"] == ids
        assert account.client.get(f"/chunks/{ids[0]}").status_code == 404
        assert account.client.post("/chunks/fetch", json={"ids": ids[:1]}).status_code == 404
        assert account.client.get("/account").json()["used_bytes"] == sum(len(ct) for _, ct, _ in live)
        assert account.client.post("/gc").json()["collected"] == 0
        assert not orphan.exists(), "GC deletes the pack no record points to"
        assert_readable(account, data, live)
        upload_pack(account, lost)  # the client resends them: stored as new
        assert_readable(account, data, lost)
    finally:
        account.close()
        stop_server(server)


def test_a_crash_while_repacking_keeps_every_chunk_readable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The new pack is written first and the records switched after: a crash before the switch
    leaves the old pack in use and the new one unrecorded (swept later); reads that raced a
    repack look the chunk up again."""
    data = tmp_path / "data"
    server = start_server(data, "--gc-grace", "0")
    account = make_account(server.url, fresh_email())
    chunks = sealed(account, [os.urandom(1000) for _ in range(10)])
    upload_pack(account, chunks)
    live = chunks[:2]
    commit_file(account, "live", live)
    stop_server(server)
    acct_id = account_id(data, account.email)
    (old_pack,) = {chunk_blob(data, c)[0] for c, _, _ in live}  # type: ignore[index]

    parts = in_process(data)
    real_move = parts.store.move_chunks

    def crash(*_: object, **__: object) -> bool:
        raise OSError("power lost before the switch")

    monkeypatch.setattr(parts.store, "move_chunks", crash)
    with pytest.raises(OSError):
        collect_account(parts, acct_id)
    assert old_pack.exists()
    assert [read_chunk(parts, acct_id, c) for c, _, _ in live] == [ct for _, ct, _ in live]
    stale = parts.store.chunk_locations(acct_id, [live[0][0]])[live[0][0]]

    monkeypatch.setattr(parts.store, "move_chunks", real_move)
    collect_account(parts, acct_id)
    assert not old_pack.exists()
    moved = parts.store.chunk_locations(acct_id, [live[0][0]])[live[0][0]]
    assert moved.pack != stale.pack and moved == ChunkLocation(moved.pack, 0, len(live[0][1]))
    # A reader that looked the chunk up before the repack finds it at its new place.
    assert read_chunk(parts, acct_id, live[0][0], stale) == live[0][1]
    packs = {p for p in parts.blobs.keys(f"{acct_id}/p/")}
    assert packs == {pack_key(acct_id, str(moved.pack))}, "the unrecorded new pack was swept"
    parts.store.close()

    server = start_server(data, "--gc-grace", "0")
    account.client = authed_client(server.url, account.token)
    try:
        assert_readable(account, data, live)
    finally:
        account.close()
        stop_server(server)
