"""Chunks over HTTP: the missing query, single and packed uploads, dedup, downloads, quota."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tandem.core.wire import decode_download_frames, encode_upload_frame
from tests.conftest import SCALE_BACKENDS, RunningServer, backend_args
from tests.helpers_api import (
    Account,
    content_hash,
    error_code,
    fresh_email,
    make_account,
    put_chunk_raw,
    seal,
    serving,
)
from tests.helpers_storage import chunk_blob, stored_blobs, stored_bytes


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


def missing(account: Account, ids: list[str]) -> list[str]:
    response = account.client.post("/chunks/missing", json={"ids": ids})
    assert response.status_code == 200, response.text
    return list(response.json()["missing"])


def pack(account: Account, plaintexts: list[bytes]) -> tuple[list[str], bytes]:
    ids, frames = [], []
    for plaintext in plaintexts:
        chunk_id, ciphertext = seal(account.keys, plaintext)
        ids.append(chunk_id)
        frames.append(encode_upload_frame(chunk_id, content_hash(ciphertext), ciphertext))
    return ids, b"".join(frames)


def test_missing_query_names_only_what_the_server_lacks(acct: Account) -> None:
    have, _ = seal(acct.keys, b"have")
    lack, _ = seal(acct.keys, b"lack")
    assert missing(acct, [have, lack]) == [have, lack]
    assert put_chunk_raw(acct, *seal(acct.keys, b"have")).status_code == 200
    assert missing(acct, [have, lack, lack]) == [lack]
    assert missing(acct, []) == []


def test_single_upload_stores_the_chunk(acct: Account, srv: RunningServer) -> None:
    chunk_id, ciphertext = seal(acct.keys, b"single upload " * 100)
    response = put_chunk_raw(acct, chunk_id, ciphertext)
    assert response.status_code == 200
    assert response.json() == {"stored": 1, "already_present": 0}
    assert acct.client.get("/account").json()["used_bytes"] == len(ciphertext)
    assert stored_bytes(srv.data_dir, chunk_id) == ciphertext


def test_hash_mismatch_is_400_and_stores_nothing(acct: Account, srv: RunningServer) -> None:
    """A corrupted or truncated transfer must never be stored as the chunk."""
    chunk_id, ciphertext = seal(acct.keys, b"will be corrupted")
    files = stored_blobs(srv.data_dir)
    corrupted = ciphertext[:-1] + bytes([ciphertext[-1] ^ 1])
    response = acct.client.put(f"/chunks/{chunk_id}", content=corrupted,
                               headers={"X-Content-Hash": content_hash(ciphertext)})
    assert response.status_code == 400 and error_code(response) == "hash_mismatch"
    assert missing(acct, [chunk_id]) == [chunk_id]
    assert chunk_blob(srv.data_dir, chunk_id) is None and stored_blobs(srv.data_dir) == files
    assert acct.client.get("/account").json()["used_bytes"] == 0


def test_packed_upload_of_many_chunks(acct: Account) -> None:
    plaintexts = [f"chunk number {i} ".encode() * (i + 1) for i in range(200)]
    ids, body = pack(acct, plaintexts)
    response = acct.client.post("/chunks/pack", content=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"stored": 200, "already_present": 0}
    assert missing(acct, ids) == []
    fetched = acct.client.post("/chunks/fetch", json={"ids": ids[::37]})
    frames = list(decode_download_frames([fetched.content]))
    assert [acct.keys.decrypt_chunk(cid, data) for cid, data in frames] == plaintexts[::37]


def test_pack_larger_than_the_flush_threshold(acct: Account) -> None:
    """Packs are stored while they stream in, in several flushes: every chunk still arrives."""
    plaintexts = [os.urandom(1024 * 1024) for _ in range(12)]
    ids, body = pack(acct, plaintexts)
    response = acct.client.post("/chunks/pack", content=body)
    assert response.status_code == 200 and response.json()["stored"] == 12
    assert missing(acct, ids) == []


def test_reupload_of_present_chunks_stores_nothing(acct: Account, srv: RunningServer) -> None:
    _, body = pack(acct, [b"dedup one", b"dedup two"])
    assert acct.client.post("/chunks/pack", content=body).json()["stored"] == 2
    used = acct.client.get("/account").json()["used_bytes"]
    files = stored_blobs(srv.data_dir)
    # Encrypted again (new nonces), the same chunk ids are still recognised as present.
    _, again = pack(acct, [b"dedup one", b"dedup two"])
    assert acct.client.post("/chunks/pack", content=again).json() == {"stored": 0, "already_present": 2}
    single = put_chunk_raw(acct, *seal(acct.keys, b"dedup one"))
    assert single.json() == {"stored": 0, "already_present": 1}
    assert acct.client.get("/account").json()["used_bytes"] == used
    assert stored_blobs(srv.data_dir) == files


def test_pack_mixing_present_new_and_repeated_chunks_stores_each_new_one_once(
        acct: Account) -> None:
    _, body = pack(acct, [b"present already"])
    assert acct.client.post("/chunks/pack", content=body).json()["stored"] == 1
    ids, mixed = pack(acct, [b"present already", b"new one", b"new one", b"new two"])
    assert acct.client.post("/chunks/pack", content=mixed).json() == {
        "stored": 2, "already_present": 2}
    fetched = acct.client.post("/chunks/fetch", json={"ids": ids})
    frames = list(decode_download_frames([fetched.content]))
    assert [acct.keys.decrypt_chunk(cid, data) for cid, data in frames] == [
        b"present already", b"new one", b"new one", b"new two"]


def test_download_single_chunk_decrypts(acct: Account) -> None:
    plaintext = os.urandom(5000)
    chunk_id, ciphertext = seal(acct.keys, plaintext)
    assert put_chunk_raw(acct, chunk_id, ciphertext).status_code == 200
    response = acct.client.get(f"/chunks/{chunk_id}")
    assert response.status_code == 200
    assert response.content == ciphertext
    assert acct.keys.decrypt_chunk(chunk_id, response.content) == plaintext


def test_range_request_returns_206_partial(acct: Account) -> None:
    """An interrupted download resumes from where it stopped."""
    chunk_id, ciphertext = seal(acct.keys, os.urandom(3000))
    assert put_chunk_raw(acct, chunk_id, ciphertext).status_code == 200
    response = acct.client.get(f"/chunks/{chunk_id}", headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.content == ciphertext[100:200]
    tail = acct.client.get(f"/chunks/{chunk_id}", headers={"Range": "bytes=2000-"})
    assert tail.status_code == 206 and tail.content == ciphertext[2000:]


def test_fetch_returns_frames_in_the_order_asked(acct: Account) -> None:
    plaintexts = [os.urandom(n) for n in (10, 70000, 1)]
    ids, body = pack(acct, plaintexts)
    assert acct.client.post("/chunks/pack", content=body).status_code == 200
    order = [ids[2], ids[0], ids[1], ids[0]]
    with acct.client.stream("POST", "/chunks/fetch", json={"ids": order}) as response:
        assert response.status_code == 200
        frames = list(decode_download_frames(response.iter_bytes()))
    assert [cid for cid, _ in frames] == order
    by_id = dict(zip(ids, plaintexts, strict=True))
    assert all(acct.keys.decrypt_chunk(cid, data) == by_id[cid] for cid, data in frames)


def test_fetch_with_an_unknown_id_sends_nothing(acct: Account) -> None:
    ids, body = pack(acct, [b"known"])
    assert acct.client.post("/chunks/pack", content=body).status_code == 200
    unknown, _ = seal(acct.keys, b"unknown")
    response = acct.client.post("/chunks/fetch", json={"ids": [ids[0], unknown]})
    assert response.status_code == 404 and error_code(response) == "not_found"
    assert response.json()["error"]["chunks"] == [unknown]


def test_download_of_an_unknown_chunk_is_404(acct: Account) -> None:
    chunk_id, _ = seal(acct.keys, b"never uploaded")
    response = acct.client.get(f"/chunks/{chunk_id}")
    assert response.status_code == 404 and error_code(response) == "not_found"


def test_quota_refuses_uploads_beyond_it(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Past the quota an upload is 507 quota_exceeded, by single PUT or pack, declared or not."""
    with serving(tmp_path_factory, "--quota", "100000") as srv:
        account = make_account(srv.url, fresh_email())
        for i in range(3):
            assert put_chunk_raw(account, *seal(account.keys, bytes([i]) * 30000)).status_code == 200
        used = account.client.get("/account").json()
        assert used["quota_bytes"] == 100000 and used["used_bytes"] == 3 * (30000 + 29)
        over = put_chunk_raw(account, *seal(account.keys, b"\xff" * 30000))
        assert over.status_code == 507 and error_code(over) == "quota_exceeded"
        _, body = pack(account, [b"\xfe" * 30000])
        packed = account.client.post("/chunks/pack", content=body)
        assert packed.status_code == 507 and error_code(packed) == "quota_exceeded"
        streamed = account.client.post("/chunks/pack", content=iter([body[:1000], body[1000:]]))
        assert streamed.status_code == 507 and error_code(streamed) == "quota_exceeded"
        chunk_id, ciphertext = seal(account.keys, b"\xfd" * 30000)
        streamed_single = account.client.put(f"/chunks/{chunk_id}", content=iter([ciphertext]),
                                             headers={"X-Content-Hash": content_hash(ciphertext)})
        assert streamed_single.status_code == 507 and error_code(streamed_single) == "quota_exceeded"
        assert account.client.get("/account").json()["used_bytes"] == used["used_bytes"]
        assert len(stored_blobs(srv.data_dir)) == 3
