"""Several server processes on one database: the journal stays gap-free under concurrent
commits, a commit through one `tandem serve` wakes long-polls held by another, uploads and
collection exclude each other across processes, and a database that cannot be used stops
`tandem serve` with one clear line."""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tandem.server.locks import AccountLocks
from tandem.server.store import StoreError, open_store
from tests.conftest import BACKENDS, backend_args, free_port, start_server, stop_server
from tests.helpers_api import cursor, fresh_email, login, make_account, mkdir
from tests.postgres import PostgresCluster
from tests.test_server_longpoll import WAKE_BOUND, poll_in_thread
from tests.test_store import new_account

WRITERS = 2
COMMITS = 40

_WRITER = textwrap.dedent("""
    import secrets, sys
    from tandem.server.store import open_store
    url, account, label, commits = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    store = open_store(url)
    for i in range(commits):
        node = secrets.token_hex(16)
        store.apply_batch(account, label, [{"op": "create", "id": node, "parent_id": "ROOT",
                          "name": f"{label}-{i}".encode(), "kind": "folder", "size": 0,
                          "mtime_ns": 0, "manifest": []}], 0)
    store.close()
""")


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    args = backend_args(request, request.param)
    return args[1] if args else "sqlite:///" + str(tmp_path / "meta.db")


def test_cursor_is_gap_free_under_concurrent_commits_from_several_processes(database_url: str) -> None:
    """Writer processes commit to one account at once while a reader follows the journal in
    small pages: every change is seen (none skipped by a cursor that moved past it), and the
    sequence numbers are exactly 1..N."""
    store = open_store(database_url)
    try:
        account = new_account(store)
        root_id = store.list_tree(account, "", 1)[0][0].id
        writer = _WRITER.replace('"ROOT"', repr(root_id))
        processes = [subprocess.Popen([sys.executable, "-c", writer, database_url, str(account),
                                       f"w{n}", str(COMMITS)]) for n in range(WRITERS)]
        try:
            seen: dict[str, int] = {}
            cursors = [0]
            deadline = time.monotonic() + 120
            while len(seen) < WRITERS * COMMITS and time.monotonic() < deadline:
                nodes, next_cursor, _ = store.changes(account, cursors[-1], 3)
                for node in nodes:
                    assert node.id not in seen, "a node changed once was reported twice"
                    seen[node.id] = node.rev
                assert next_cursor >= cursors[-1]
                cursors.append(next_cursor)
            for process in processes:
                assert process.wait(timeout=120) == 0
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=10)
        assert sorted(seen.values()) == list(range(1, WRITERS * COMMITS + 1))
        assert store.cursor(account) == WRITERS * COMMITS
    finally:
        store.close()


def test_a_commit_through_one_server_process_wakes_a_long_poll_held_by_another(
        pg_cluster: PostgresCluster, tmp_path: Path) -> None:
    """Two `tandem serve` on one PostgreSQL: a long-poll on the first wakes within 100 ms
    (median of a few rounds) of a commit through the second (LISTEN/NOTIFY)."""
    url = pg_cluster.new_database()
    first = start_server(tmp_path / "one", "--database", url)
    try:
        second = start_server(tmp_path / "two", "--database", url)
        try:
            watcher = make_account(first.url, fresh_email())
            committer = login(second.url, watcher.email)
            delays = []
            for round_number in range(3):
                since = cursor(watcher)
                thread, outcome = poll_in_thread(watcher, since, wait=10)
                time.sleep(0.3)  # let the poll subscribe on the first process
                folder = mkdir(committer, f"round {round_number}")
                committed_at = time.monotonic()
                thread.join(timeout=15)
                assert not thread.is_alive(), "the long poll did not answer within its own wait"
                assert [c["id"] for c in outcome["response"].json()["changes"]] == [folder["id"]]
                delays.append(outcome["at"] - committed_at)
            assert max(delays) < WAKE_BOUND
            assert statistics.median(delays) < 0.1, delays
        finally:
            stop_server(second)
    finally:
        stop_server(first)


def _serve(tmp_path: Path, database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tandem", "serve", "--data", str(tmp_path / "d"),
                           "--port", str(free_port()), "--database", database],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("database", "says"), [
    ("mysql://db/x", "unsupported database URL"),
    ("postgresql://127.0.0.1:notaport/x", "bad database URL"),
    ("postgresql://tandem@127.0.0.1:{closed}/x", "cannot use the database"),
])
def test_serve_refuses_an_unusable_database_in_one_line(tmp_path: Path, database: str, says: str) -> None:
    result = _serve(tmp_path, database.format(closed=free_port()))
    assert result.returncode == 1
    assert says in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_uploads_and_collection_exclude_each_other_across_processes(pg_cluster: PostgresCluster) -> None:
    """Two stores on one database (two processes' sessions): a collection in one holds off an
    upload in the other until it ends; uploads share."""
    url = pg_cluster.new_database()
    one, two = open_store(url), open_store(url)
    try:
        account = new_account(one)
        collecting, release, uploaded = threading.Event(), threading.Event(), threading.Event()

        def collect() -> None:
            with one.account_exclusion(account, True, 10):
                collecting.set()
                release.wait(10)

        def upload() -> None:
            with two.account_exclusion(account, False, 10):
                uploaded.set()

        collector = threading.Thread(target=collect)
        collector.start()
        assert collecting.wait(10)
        uploader = threading.Thread(target=upload)
        uploader.start()
        assert not uploaded.wait(0.5), "an upload ran while another process was collecting"
        release.set()
        assert uploaded.wait(10)
        collector.join(timeout=10)
        uploader.join(timeout=10)
        with one.account_exclusion(account, False, 1), two.account_exclusion(account, False, 1):
            pass
    finally:
        one.close()
        two.close()


def test_waits_for_the_storage_lock_are_bounded_and_answer_busy(pg_cluster: PostgresCluster) -> None:
    """An upload that waits for a collection (in this process or another) past its bound is
    refused with 503 busy and a Retry-After, instead of hanging; so is a collection waiting
    for uploads, and the lock is free again afterwards."""
    url = pg_cluster.new_database()
    one, two = open_store(url), open_store(url)
    try:
        account = new_account(one)
        here = AccountLocks(one.account_exclusion, wait=0.3)
        there = AccountLocks(two.account_exclusion, wait=0.3)
        for blocked in (here.uploading, there.uploading):  # same process, then across processes
            with here.collecting(account):
                started = time.monotonic()
                with pytest.raises(StoreError) as refused, blocked(account):
                    pass
                assert 0.25 < time.monotonic() - started < 5
                assert (refused.value.status, refused.value.code) == (503, "busy")
                assert refused.value.detail["retry_after"] > 0
        with there.uploading(account), pytest.raises(StoreError, match="busy"), \
                here.collecting(account):
            pass
        with there.collecting(account):  # nothing is left held by the refusals
            pass
    finally:
        one.close()
        two.close()
