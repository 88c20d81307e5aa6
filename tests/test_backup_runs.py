"""Backup runs over time: retention with an injected clock and the server's GC, a run killed
with kill -9 and resumed, and scheduled runs inside the `tandem sync` daemon."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tandem.backup.local import BackupHome
from tandem.backup.run import BackupCancelled, run_backup
from tandem.client.account import Session
from tandem.client.home import Home
from tests.conftest import RunningServer
from tests.helpers_storage import recorded_chunk_ids
from tests.sync_helpers import daemons, link_devices, stop_processes, tree_of, wait_until, write
from tests.test_backup_cli import MIB, counts, ok, snapshots

DAY = 86400.0


def blob_ids(server: RunningServer) -> set[str]:
    """Stored chunks: recorded, with their bytes in a blob file (a pack being written is not
    recorded yet)."""
    return recorded_chunk_ids(server.data_dir)


def settled_blob_ids(server: RunningServer) -> set[str]:
    """The stored chunks once a pack the server was still writing has landed."""
    seen: list[set[str]] = [set(), blob_ids(server)]

    def steady() -> bool:
        time.sleep(0.3)
        seen.append(blob_ids(server))
        return seen[-1] == seen[-2]

    wait_until(steady, timeout=30, what="the server's last pack")
    return seen[-1]


def test_retention_drops_snapshots_and_gc_collects_only_their_chunks(
        server: RunningServer, tmp_path: Path) -> None:
    device = link_devices(server, tmp_path, 1)[0]
    ok(device.run("backup", "add", str(device.folder), "--keep-within", "2", "--keep-daily", "0",
                  "--keep-monthly", "0"))
    session = Session.open(Home(device.home))
    try:
        local = BackupHome(session.home)
        backup = local.all()[0]
        contents = {}
        start = 1_900_000_000.0
        for day in range(4):
            contents[day] = os.urandom(1000) + f"day {day}".encode()
            write(device.folder, "diary.bin", contents[day])
            write(device.folder, "constant.txt", "the same every day")
            run_backup(session, local, backup, clock=lambda day=day: start + day * DAY)
        # On day 3, snapshots of days 2 and 3 are younger than 2 days; 0 and 1 were dropped.
        assert [s["taken_at_ns"] // 10**9 for s in snapshots(device)] == [start + 2 * DAY,
                                                                          start + 3 * DAY]
        assert session.api.collect_garbage() >= 2
        stored = blob_ids(server)
        chunk = session.keys.chunk_id
        assert chunk(contents[0]) not in stored and chunk(contents[1]) not in stored
        assert chunk(contents[2]) in stored and chunk(contents[3]) in stored
        assert chunk(b"the same every day") in stored
    finally:
        session.close()
    ok(device.run("backup", "restore", str(device.folder), "--to", str(tmp_path / "out")))
    assert tree_of(tmp_path / "out") == tree_of(device.folder)


def test_kill_9_during_a_run_then_rerun_resumes_without_resending(
        server: RunningServer, tmp_path: Path) -> None:
    device = link_devices(server, tmp_path, 1)[0]
    for index in range(24):
        write(device.folder, f"f{index:02}.bin", os.urandom(4 * MIB))
    ok(device.run("backup", "add", str(device.folder)))
    env = {**os.environ, "TANDEM_HOME": str(device.home)}
    process = subprocess.Popen([sys.executable, "-m", "tandem", "backup", "run"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(blob_ids(server)) >= 8 or process.poll() is not None,
                   timeout=60, interval=0.005, what="some chunks on the server")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        stop_processes(process)
    before = settled_blob_ids(server)
    assert snapshots(device) == [], "the run was meant to be interrupted"
    _, sent, _ = counts(ok(device.run("backup", "run")))
    after = blob_ids(server)
    # Every chunk already there was skipped: what was sent is exactly what is new.
    assert sent == len(after - before) and before <= after and len(before) >= 8
    ok(device.run("backup", "restore", str(device.folder), "--to", str(tmp_path / "out")))
    assert tree_of(tmp_path / "out") == tree_of(device.folder)


def test_the_sync_daemon_runs_due_backups_and_status_shows_them(
        server: RunningServer, tmp_path: Path) -> None:
    device = link_devices(server, tmp_path, 1)[0]
    photos = tmp_path / "photos"
    write(photos, "cat.jpg", os.urandom(5000))
    ok(device.run("backup", "add", str(photos), "--every", "6h"))
    manual = tmp_path / "manual"
    write(manual, "x.txt", "by hand")
    ok(device.run("backup", "add", str(manual)))
    # Never run: due since it was added (a schedule missed while no daemon ran).
    with daemons(device):
        wait_until(lambda: len(snapshots(device)) == 1, timeout=60, interval=0.2,
                   what="the daemon's scheduled backup")
    listed = json.loads(ok(device.run("backup", "list", "--json")).stdout)["backups"]
    by_folder = {b["folder"]: b for b in listed}
    assert len(by_folder[str(photos)]["snapshots"]) == 1 and by_folder[str(manual)]["snapshots"] == []
    status = ok(device.run("status")).stdout
    assert "Backups:" in status and f"{photos}: last " in status and "every 6h" in status
    assert f"{manual}: last never; run by hand" in status
    info = json.loads(ok(device.run("status", "--json")).stdout)
    row = next(b for b in info["backups"] if b["folder"] == str(photos))
    assert row["next_run"] == row["last_run"] + 6 * 3600


def test_a_stopped_run_records_nothing_and_stays_due(server: RunningServer, tmp_path: Path) -> None:
    device = link_devices(server, tmp_path, 1)[0]
    write(device.folder, "a.txt", "a")
    ok(device.run("backup", "add", str(device.folder), "--every", "1h"))
    session = Session.open(Home(device.home))
    try:
        local = BackupHome(session.home)
        stop = threading.Event()
        stop.set()
        with pytest.raises(BackupCancelled):
            run_backup(session, local, local.all()[0], cancel=stop)
        assert local.last_run(local.all()[0].id).started is None
    finally:
        session.close()
    assert snapshots(device) == []
