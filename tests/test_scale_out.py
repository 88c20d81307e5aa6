"""The scale-out deployment of docs/DEPLOY.md, for real: two `tandem serve` processes on one
PostgreSQL and one SeaweedFS bucket, behind nginx running the guide's own configuration (with
TLS). Clients pinned one to each process converge, and neither the database's files nor the
object store's hold a plaintext name or content (promise 7); a long-poll held by one process
wakes on a commit through the other; a process killed (SIGKILL) in the middle of an upload
through nginx loses nothing: the client's retries reach the other process.

Skipped, with the reason, only where nginx, PostgreSQL or SeaweedFS is absent (`.ci/run`
installs them)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests import nginx
from tests.conftest import RunningServer, free_port, start_server, stop_server
from tests.helpers_api import authed_client, cursor, login, make_account, mkdir
from tests.helpers_storage import stored_blobs
from tests.postgres import PostgresCluster
from tests.seaweed import SeaweedS3
from tests.sync_helpers import PASSWORD, Device, run_cli, tree_of, wait_until, write
from tests.test_server_longpoll import WAKE_BOUND, poll_in_thread
from tests.test_server_tls import self_signed
from tests.test_zero_knowledge import CONTENT_MARKER, NAME_MARKER, encodings


@dataclass
class Stack:
    one: RunningServer
    two: RunningServer
    proxy: nginx.Nginx
    database: str


@pytest.fixture(scope="module")
def stack(pg_cluster: PostgresCluster, weed: SeaweedS3,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    reason = nginx.missing_reason()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("scale")
    cert, key = self_signed(folder)
    database = pg_cluster.new_database()
    serve = ("--database", database, "--blobs", weed.url())
    trusted = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(cert)  # for this process's clients and the CLI's
    one = start_server(folder / "data", *serve)
    try:
        two = start_server(folder / "data", *serve)
        try:
            port = free_port()
            site = nginx.adapted(nginx.guide_config(), {
                "127.0.0.1:8081": one.url.removeprefix("http://"),
                "127.0.0.1:8082": two.url.removeprefix("http://"),
                "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
                "/etc/letsencrypt/live/tandem.example.org/fullchain.pem": str(cert),
                "/etc/letsencrypt/live/tandem.example.org/privkey.pem": str(key),
            })
            proxy = nginx.Nginx(site, port, cert)
            try:
                yield Stack(one, two, proxy, database)
            finally:
                proxy.stop()
        finally:
            stop_server(two)
    finally:
        stop_server(one)
        if trusted is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = trusted


def device(tmp_path: Path, name: str, url: str, email: str, first: bool = False) -> Device:
    linked = Device(name, tmp_path / f"home-{name}", tmp_path / name)
    linked.folder.mkdir()
    result = run_cli(linked.home, "signup" if first else "login", url, email, "--password-stdin",
                     "--device-name", name, stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    return linked


def _files_holding(folders: list[Path], needles: dict[str, bytes]) -> list[tuple[str, str]]:
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                found += [(str(path), form) for form, needle in needles.items() if needle in data]
    return found


def test_clients_pinned_to_different_processes_converge(stack: Stack, tmp_path: Path,
                                                        pg_cluster: PostgresCluster,
                                                        weed: SeaweedS3) -> None:
    email = f"pinned-{os.getpid()}-{time.monotonic_ns()}@example.org"
    alpha = device(tmp_path, "alpha", stack.one.url, email, first=True)
    beta = device(tmp_path, "beta", stack.two.url, email)
    gamma = device(tmp_path, "gamma", stack.proxy.url, email)  # through nginx, over TLS
    write(alpha.folder, "notes.txt", "from alpha\n")
    write(alpha.folder, "photos/big.bin", os.urandom(3 * 1024 * 1024))
    alpha.synced()
    beta.synced()
    write(beta.folder, "notes.txt", "edited on beta\n")
    write(beta.folder, "docs/plan.md", "# plan\n" * 500)
    (beta.folder / "photos/big.bin").rename(beta.folder / "photos/moved.bin")
    beta.synced()
    alpha.synced()
    gamma.synced()
    assert tree_of(alpha.folder) == tree_of(beta.folder) == tree_of(gamma.folder)
    assert tree_of(alpha.folder)["notes.txt"] == b"edited on beta\n"
    assert "photos/moved.bin" in tree_of(gamma.folder)

    # Zero knowledge on this stack: blob keys are account ids and random pack ids, and no
    # file of PostgreSQL (this database, the WAL) or SeaweedFS holds a name or a content.
    write(alpha.folder, f"{NAME_MARKER}.txt", (CONTENT_MARKER + " ") * 2000)
    alpha.synced()
    keys = [blob.key for blob in stored_blobs(stack.one.data_dir)]
    assert keys and all(re.fullmatch(r"\d+/p/[0-9a-f]{32}", key) for key in keys)
    with psycopg.connect(stack.database, autocommit=True, connect_timeout=10) as connection:
        connection.execute("CHECKPOINT")  # the rows onto the data files (the tests run fsync off)
        oid = connection.execute("SELECT oid FROM pg_database WHERE datname = current_database()"
                                 ).fetchone()[0]
    needles = {**{f"name {k}": v for k, v in encodings(NAME_MARKER).items()},
               **{f"content {k}": v for k, v in encodings(CONTENT_MARKER).items()}}
    database_files = [pg_cluster.data / "base" / str(oid), pg_cluster.data / "pg_wal"]
    assert _files_holding([*database_files, weed.folder], needles) == []
    # The scan reads where the data is: the email (not secret) and a pack id are found.
    assert _files_holding(database_files, {"email": email.encode()})
    assert _files_holding([weed.folder], {"pack id": keys[0].rpartition("/")[2].encode()})


def test_a_long_poll_on_one_process_wakes_on_a_commit_through_the_other(stack: Stack) -> None:
    watcher = make_account(stack.one.url, f"poll-{time.monotonic_ns()}@example.org")
    committer = login(stack.two.url, watcher.email)
    proxied = login(stack.proxy.url, watcher.email)
    try:
        for waiting, committing in ((watcher, committer), (proxied, proxied)):
            since = cursor(waiting)
            thread, outcome = poll_in_thread(waiting, since, wait=10)
            time.sleep(0.3)  # let the poll subscribe first
            folder = mkdir(committing, f"folder {since}")
            committed_at = time.monotonic()
            thread.join(timeout=15)
            assert not thread.is_alive(), "the long poll did not answer within its own wait"
            assert [c["id"] for c in outcome["response"].json()["changes"]] == [folder["id"]]
            assert outcome["at"] - committed_at < WAKE_BOUND
    finally:
        for account in (watcher, committer, proxied):
            account.close()


def _counts(database: str, email: str) -> tuple[int, int]:
    """(packs stored, files committed) of the account."""
    with psycopg.connect(database, connect_timeout=10) as connection:
        return connection.execute(
            "SELECT (SELECT COUNT(*) FROM packs p JOIN accounts a ON a.id = p.account_id"
            "        WHERE a.email = %s),"
            "       (SELECT COUNT(*) FROM nodes n JOIN accounts a ON a.id = n.account_id"
            "        WHERE a.email = %s AND n.kind = 'file')", (email, email)).fetchone()


def test_killing_a_process_mid_upload_loses_nothing(stack: Stack, tmp_path: Path) -> None:
    """Runs last: it kills process one. The upload through nginx goes on on process two."""
    email = f"kill-{time.monotonic_ns()}@example.org"
    uploader = device(tmp_path, "uploader", stack.proxy.url, email, first=True)
    content = os.urandom(64 * 1024 * 1024)
    write(uploader.folder, "large.bin", content)
    env = {**os.environ, "TANDEM_HOME": str(uploader.home)}
    with open(tmp_path / "sync.log", "wb") as log:
        syncing = subprocess.Popen([sys.executable, "-m", "tandem", "sync", "--folder",
                                    str(uploader.folder), "--once"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: _counts(stack.database, email)[0] > 0, timeout=60, interval=0.02,
                   what="the first pack stored")
        assert _counts(stack.database, email)[1] == 0, "the upload ended before the kill"
        os.kill(stack.one.process.pid, signal.SIGKILL)
        stack.one.process.wait(timeout=10)
        assert syncing.wait(timeout=120) == 0, (tmp_path / "sync.log").read_text()
        # nginx saw the dead process: requests cut in flight, or connections refused.
        dead = stack.one.url.removeprefix("http://")
        assert any("[error]" in line and dead in line for line in stack.proxy.log().splitlines())
    finally:
        if syncing.poll() is None:
            syncing.kill()
            syncing.wait(timeout=10)
    checker = device(tmp_path, "checker", stack.two.url, email)
    checker.synced()
    assert tree_of(checker.folder) == {"large.bin": content}
    with authed_client(stack.proxy.url, uploader.token()) as client:
        assert client.get("/account").json()["used_bytes"] > len(content)
