"""`tandem migrate`: a server that grows up moves its metadata from SQLite to PostgreSQL and
goes on serving the same accounts, tokens, tree, history and chunks."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg

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
