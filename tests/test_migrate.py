"""`tandem migrate`: a server that grows up moves its metadata from SQLite to PostgreSQL and its
blobs from a folder to S3 (SeaweedFS), and goes on serving the same accounts, tokens, tree,
history and chunks; blob copies between any two stores resume and verify."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from tandem.server.blobs import open_blob_store
from tandem.server.blobs.copy import BlobCopyError, copy_blobs, verify_blobs
from tests.conftest import start_server, stop_server, tandem
from tests.helpers_api import (
    authed_client,
    commit,
    cursor,
    fresh_email,
    full_tree,
    make_account,
    mkdir,
    put_file,
    update_op,
    upload_chunk,
)
from tests.postgres import PostgresCluster
from tests.seaweed import SeaweedS3


def test_migrate_moves_a_server_from_sqlite_to_postgresql(pg_cluster: PostgresCluster,
                                                          tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data)
    try:
        account = make_account(server.url, fresh_email())
        folder = mkdir(account, "docs")
        content = os.urandom(5000)
        file = put_file(account, "report", content, folder["id"])
        commit(account, update_op(file["id"], file["rev"], [upload_chunk(account, b"second")]))
        tree, journal = full_tree(account), cursor(account)
        versions = account.client.get(f"/nodes/{file['id']}/versions").json()
        account.close()
    finally:
        stop_server(server)

    target = pg_cluster.new_database()
    source = "sqlite:///" + str(data / "meta.db")
    result = tandem(tmp_path / "home", "migrate", "--from", source, "--to", target)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Copied and verified: 1 accounts, 1 devices, 3 nodes")

    again = tandem(tmp_path / "home", "migrate", "--from", source, "--to", target)
    assert again.returncode == 1 and "already holds 1 account" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    server = start_server(data, "--database", target, "--blobs", (data / "blobs").as_uri())
    try:
        account.client = authed_client(server.url, account.token)
        assert full_tree(account) == tree and cursor(account) == journal
        assert account.client.get(f"/nodes/{file['id']}/versions").json() == versions
        old_chunk = versions["versions"][-1]["manifest"][0][0]
        assert account.client.get(f"/chunks/{old_chunk}").status_code == 200
        newcomer = make_account(server.url, fresh_email())  # the id sequence moved past the copy
        assert cursor(newcomer) == 0
        newcomer.close()
        account.close()
    finally:
        stop_server(server)


def test_migrate_refuses_a_missing_source_and_a_digest_mismatch_is_named(
        pg_cluster: PostgresCluster, tmp_path: Path) -> None:
    missing = tandem(tmp_path / "home", "migrate", "--from", f"sqlite:///{tmp_path}/none.db",
                     "--to", pg_cluster.new_database())
    assert missing.returncode == 1 and "no database at" in missing.stderr

    from tandem.server.store import open_store
    from tandem.server.store.copy import CopyError, copy_store, verify_copy

    source = open_store("sqlite:///" + str(tmp_path / "meta.db"))
    target_url = pg_cluster.new_database()
    target = open_store(target_url)
    try:
        source.create_account("a@example.com", b"s", "{}", b"h", b"w", b"r", 1)
        assert copy_store(source, target)["accounts"] == 1
        verify_copy(source, target)
        with psycopg.connect(target_url, autocommit=True) as connection:
            connection.execute("UPDATE accounts SET used_bytes = 7")
        try:
            verify_copy(source, target)
            raise AssertionError("a changed row verified")
        except CopyError as exc:
            assert "table accounts differs" in str(exc)
    finally:
        source.close()
        target.close()


def test_migrate_moves_metadata_and_blobs_to_postgresql_and_s3_and_resumes(
        pg_cluster: PostgresCluster, weed: SeaweedS3, tmp_path: Path) -> None:
    """One command moves both (blobs first: resumable; then the metadata, all or nothing); the
    server on PostgreSQL + S3 serves every chunk; a blob copy run again copies only what the
    target lacks."""
    data = tmp_path / "data"
    server = start_server(data)
    try:
        account = make_account(server.url, fresh_email())
        contents = [os.urandom(size) for size in (300, 70_000, 5)]
        files = [put_file(account, f"file {i}", content) for i, content in enumerate(contents)]
        tree = full_tree(account)
        account.close()
    finally:
        stop_server(server)
    database, blobs = pg_cluster.new_database(), weed.url()
    source_db, source_blobs = "sqlite:///" + str(data / "meta.db"), (data / "blobs").as_uri()
    moved = tandem(tmp_path / "home", "migrate", "--from", source_db, "--from", source_blobs,
                   "--to", blobs, "--to", database)
    assert moved.returncode == 0, moved.stderr
    first, second = moved.stdout.strip().splitlines()
    assert first.startswith("Copied and verified: 3 blobs (3 copied") and "content digest" in first
    assert second.startswith("Copied and verified: 1 accounts")

    target = open_blob_store(blobs)
    lost = sorted(target.keys())[0]
    target.delete(lost)
    again = tandem(tmp_path / "home", "migrate", "--from", source_blobs, "--to", blobs)
    assert again.returncode == 0, again.stderr
    assert "(1 copied" in again.stdout and "2 already there" in again.stdout

    server = start_server(data, "--database", database, "--blobs", blobs)
    try:
        account.client = authed_client(server.url, account.token)
        assert full_tree(account) == tree
        for file in files:
            manifest = account.client.get(f"/nodes/{file['id']}/versions").json()["versions"][-1]["manifest"]
            for chunk_id, _ in manifest:
                assert account.client.get(f"/chunks/{chunk_id}").status_code == 200
        account.close()
    finally:
        stop_server(server)


@pytest.mark.parametrize(("args", "says"), [
    (["--from", "sqlite:///x.db", "--to", "s3://bucket"], "in pairs"),
    (["--from", "file:///a", "--from", "file:///b", "--to", "file:///c"], "one blob store URL"),
    (["--from", "ftp://host/x", "--to", "file:///c"], "not a database URL"),
])
def test_migrate_refuses_urls_that_do_not_pair(tmp_path: Path, args: list[str], says: str) -> None:
    result = tandem(tmp_path / "home", "migrate", *args)
    assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr


def test_blob_copies_between_any_stores_verify_and_name_what_differs(
        weed: SeaweedS3, tmp_path: Path) -> None:
    """Folder to S3, S3 to a folder, folder to folder: every blob lands, once; a target blob
    with another length is refused, one with other bytes fails the verification."""
    folder = open_blob_store((tmp_path / "a").as_uri())
    blobs = {f"{i % 3}/p/{i:032x}": os.urandom(i * 997) for i in range(1, 40)}
    folder.put_many(list(blobs.items()))
    bucket = open_blob_store(weed.url())
    back, again = (open_blob_store((tmp_path / name).as_uri()) for name in ("b", "c"))
    for source, target in ((folder, bucket), (bucket, back), (back, again)):
        done = copy_blobs(source, target)
        assert (done.copied, done.skipped) == (len(blobs), 0)
        count, digest = verify_blobs(source, target)
        assert count == len(blobs) and verify_blobs(folder, target) == (count, digest)
        assert copy_blobs(source, target).skipped == len(blobs)
        assert {key: target.get(key) for key in blobs} == blobs

    key = next(iter(blobs))
    other = open_blob_store(weed.url())
    other.put(key, blobs[key] + b"longer")
    with pytest.raises(BlobCopyError, match=f"already holds blob {key} with"):
        copy_blobs(folder, other)
    forged = open_blob_store(weed.url())
    forged.put(key, bytes(len(blobs[key])))
    copy_blobs(folder, forged)
    with pytest.raises(BlobCopyError, match=f"blob {key} differs"):
        verify_blobs(folder, forged)
