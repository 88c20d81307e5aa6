"""Sync safety, end to end through the CLI: what must never cause a deletion, and the errors a
user sees (DESIGN.md promise 2, CLI.md exit codes): a missing sync folder, a mass delete,
unreadable files, a full disk, an unreachable server; one sync per TANDEM_HOME; the daemon.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tandem.sync.control import ask
from tests.conftest import RunningServer, stop_server
from tests.helpers_api import serving
from tests.sync_helpers import (
    NO_DAC,
    PASSWORD,
    Device,
    HoldingProxy,
    daemons,
    link_devices,
    one_error_line,
    restart_on_same_port,
    run_cli,
    stop_processes,
    sync_all,
    tree_of,
    wait_until,
    write,
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: Any) -> Iterator[RunningServer]:
    """One server for the module; every test signs up its own account on it."""
    with serving(tmp_path_factory) as running:
        yield running


def _trash(device: Any) -> list[dict[str, Any]]:
    listed = device.run("trash", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout)["trash"])


def test_missing_sync_folder_stops_and_deletes_nothing(shared: RunningServer,
                                                       tmp_path: Path) -> None:
    a, b = link_devices(shared, tmp_path)
    write(a.folder, "docs/one.txt", "one\n")
    write(a.folder, "two.txt", "two\n")
    sync_all(a, b)
    everything = tree_of(a.folder)

    shutil.rmtree(a.folder)
    line = one_error_line(a.sync())
    assert str(a.folder) in line and "missing" in line
    assert "missing" in one_error_line(a.run("sync", "--once"))  # the remembered folder
    assert not a.folder.exists(), "a missing sync folder was recreated empty"
    b.synced()
    assert tree_of(b.folder) == everything
    assert _trash(b) == []

    a.folder.mkdir()  # an empty folder at the same path: a new folder, merged, not "all deleted"
    a.synced()
    b.synced()
    assert tree_of(a.folder) == tree_of(b.folder) == everything
    assert _trash(b) == []


def _mass_delete_on_a(server: RunningServer, tmp_path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """150 synced files; A deletes 120 of them (a folder of 100 and 20 more)."""
    a, b = link_devices(server, tmp_path)
    for index in range(100):
        write(a.folder, f"bulk/f{index:03d}.txt", f"bulk {index}\n")
    for index in range(50):
        write(a.folder, f"r{index:02d}.txt", f"root {index}\n")
    sync_all(a, b)
    everything = tree_of(b.folder)
    shutil.rmtree(a.folder / "bulk")
    for index in range(20):
        (a.folder / f"r{index:02d}.txt").unlink()
    return a, b, everything


def test_mass_delete_waits_for_the_user(shared: RunningServer, tmp_path: Path) -> None:
    a, b, everything = _mass_delete_on_a(shared, tmp_path)

    assert "--allow-mass-delete" in one_error_line(a.sync())
    b.synced()
    assert tree_of(b.folder) == everything
    assert _trash(b) == []


def test_allowed_mass_delete_goes_ahead_and_other_devices_follow(shared: RunningServer,
                                                                 tmp_path: Path) -> None:
    a, b, _ = _mass_delete_on_a(shared, tmp_path)
    assert a.sync().returncode == 1

    a.synced("--allow-mass-delete")
    b.synced()  # the user allowed it on A: B follows without asking again
    expected = {f"r{i:02d}.txt": f"root {i}\n".encode() for i in range(20, 50)}
    assert tree_of(a.folder) == tree_of(b.folder) == expected


def test_unreadable_files_and_folders_are_errors_not_deletions(shared: RunningServer,
                                                               tmp_path: Path) -> None:
    """Tests run as root; the sync runs without root's permission override (setpriv), so
    chmod 000 really denies it."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE")
    a, b = link_devices(shared, tmp_path)
    write(a.folder, "secret.txt", "secret\n")
    write(a.folder, "locked/inner.txt", "inner\n")
    write(a.folder, "fine.txt", "fine\n")
    sync_all(a, b)
    everything = tree_of(b.folder)
    new = write(a.folder, "new.txt", "new but unreadable\n")
    for path, mode in ((a.folder / "secret.txt", 0o000), (a.folder / "locked", 0o000), (new, 0o000)):
        path.chmod(mode)
    try:
        result = a.sync(prefix=NO_DAC)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        assert "ermission denied" in result.stderr
        for path in ("secret.txt", "locked", "new.txt"):
            assert path in result.stderr, result.stderr
        b.synced()
        assert tree_of(b.folder) == everything
        assert _trash(b) == []
    finally:
        for path, mode in ((a.folder / "secret.txt", 0o644), (a.folder / "locked", 0o755), (new, 0o644)):
            path.chmod(mode)
    sync_all(a, b)
    assert tree_of(a.folder) == tree_of(b.folder) == {**everything, "new.txt": b"new but unreadable\n"}


def test_disk_full_during_download_fails_cleanly_then_recovers(shared: RunningServer,
                                                               tmp_path: Path) -> None:
    """B's folder is a 2 MiB tmpfs; the cloud holds a 3 MiB file."""
    a, b = link_devices(shared, tmp_path)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(b.folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        big = os.urandom(3 * 1024 * 1024)
        write(a.folder, "small.txt", "small\n")
        write(a.folder, "big.bin", big)
        a.synced()

        result = b.sync()
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "no space left" in result.stderr
        assert "big.bin" in result.stderr
        assert tree_of(b.folder) == {"small.txt": b"small\n"}, "a partial file is visible"
        assert shutil.disk_usage(b.folder).used < 512 * 1024, "a partial download was left behind"
        a.synced()
        assert (a.folder / "big.bin").read_bytes() == big, "the cloud copy was deleted"

        subprocess.run(["mount", "-o", "remount,size=16m", str(b.folder)], check=True)
        b.synced()
        assert tree_of(b.folder) == tree_of(a.folder)
    finally:
        subprocess.run(["umount", "-l", str(b.folder)], check=False)


@pytest.mark.parametrize("scanned_earlier", [False, True],
                         ids=["manifest-from-this-scan", "read-whole-while-sending"])
def test_a_file_changed_while_uploading_is_not_committed_as_that_version(
        shared: RunningServer, tmp_path: Path, scanned_earlier: bool) -> None:
    """The upload of a 40 MiB file is frozen by a proxy holding its missing-chunk queries;
    the file is overwritten in place with other content of the same size and mtime, then the
    upload goes on. A version made of the old start and the new end must never be committed;
    the new content must end up as the current version. Two ways in:
    - the pass scanned the file itself, so the upload knows its manifest and first asks the
      server which chunks are missing (held there, before reading anything);
    - an earlier pass scanned it (and could not reach the server), so this one reads it whole
      while sending: three queries held (the windows in flight) means the reader has read
      12 MiB or more and stops at about 16-20 MiB, mid-file."""
    (b,) = link_devices(shared, tmp_path, 1)
    b.synced()  # B only looks at the cloud's versions (its folder is known from now on)
    proxy = HoldingProxy(shared.url, b"POST /chunks/missing")
    try:
        a = Device("gamma", tmp_path / "home-gamma", tmp_path / "gamma")
        a.folder.mkdir()
        logged = run_cli(a.home, "login", proxy.url, _email_of(b), "--password-stdin",
                         "--device-name", "gamma", stdin=f"{PASSWORD}\n")
        assert logged.returncode == 0, logged.stderr
        old, new = os.urandom(40 << 20), os.urandom(40 << 20)
        path = write(a.folder, "video.bin", old)
        st = path.stat()
        if scanned_earlier:
            proxy.failing = True
            assert a.sync().returncode == 1  # scanned and recorded, nothing sent
            proxy.failing = False
        proxy.holding = True
        pass_ = subprocess.Popen(  # a.sync(), in the background
            [sys.executable, "-m", "tandem", "sync", "--folder", str(a.folder), "--once"],
            env={**os.environ, "TANDEM_HOME": str(a.home)}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            queries = 3 if scanned_earlier else 1
            wait_until(lambda: proxy.held >= queries or pass_.poll() is not None, timeout=30,
                       what=f"{queries} missing-chunk queries to be held")
            assert pass_.poll() is None, "the upload did not stall as planned"
            with open(path, "r+b") as handle:
                handle.write(new)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
            proxy.holding = False
            proxy.release()
            _, stderr = pass_.communicate(timeout=120)
        finally:
            stop_processes(pass_)
        assert "Traceback" not in stderr, stderr
        a.synced()
    finally:
        proxy.close()
    assert threading.active_count() == 1, threading.enumerate()

    digests = {hashlib.sha256(old).hexdigest(): "old", hashlib.sha256(new).hexdigest(): "new"}
    versions = json.loads(b.run("versions", str(b.folder / "video.bin"), "--json").stdout)["versions"]
    seen = []
    for version in versions:
        copy = tmp_path / f"v{version['number']}.bin"
        got = b.run("restore", str(b.folder / "video.bin"), "--version", str(version["number"]),
                    "--to", str(copy))
        assert got.returncode == 0, got.stderr
        seen.append(digests.get(hashlib.sha256(copy.read_bytes()).hexdigest(), "torn"))
        copy.unlink()
    assert "torn" not in seen and seen[0] == "new", seen


def _email_of(device: Device) -> str:
    return str(json.loads((device.home / "device.json").read_text())["email"])


def test_server_unreachable_fails_cleanly_and_changes_sync_later(server: RunningServer,
                                                                 tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "before.txt", "before\n")
    sync_all(a, b)
    write(a.folder, "offline-edit.txt", "written while the server was down\n")

    stop_server(server)
    line = one_error_line(a.sync())
    assert "cannot reach the server" in line
    assert (a.folder / "offline-edit.txt").read_bytes() == b"written while the server was down\n"

    again = restart_on_same_port(server)
    try:
        sync_all(a, b)
        assert tree_of(b.folder) == tree_of(a.folder) == {
            "before.txt": b"before\n", "offline-edit.txt": b"written while the server was down\n"}
    finally:
        stop_server(again)


def test_one_sync_process_per_home(shared: RunningServer, tmp_path: Path) -> None:
    """A running daemon holds the home's lock: a second daemon is refused, `--once` asks the
    daemon for a full pass (and is refused for another folder); SIGTERM stops the daemon
    promptly and cleanly, and the lock goes with it."""
    a, b = link_devices(shared, tmp_path)
    lock = a.home / "sync.lock"
    with daemons(a) as (daemon,):
        wait_until(lambda: daemon.poll() is not None or (
            lock.exists() and lock.read_text().strip() == str(daemon.pid)
            and ask(a.home, {"op": "status"}) is not None),
            what="the daemon holding the lock and answering on its socket")
        assert daemon.poll() is None, a.daemon_log()
        second = a.run("sync", "--folder", str(a.folder), timeout=30)
        assert second.returncode == 1
        assert "another `tandem sync` is already running" in one_error_line(second)
        write(a.folder, "through-the-daemon.txt", "synced by the daemon's pass\n")
        once = a.synced()  # the daemon's pass: done when it answers
        assert "Sync done:" in once.stdout
        b.synced()
        assert tree_of(b.folder) == {"through-the-daemon.txt": b"synced by the daemon's pass\n"}
        other = a.run("sync", "--folder", str(tmp_path), "--once")
        assert other.returncode == 1
        assert f"the running `tandem sync` syncs {a.folder}" in one_error_line(other)
        assert daemon.poll() is None, a.daemon_log()

        time.sleep(0.3)  # past its first pass, into the journal long-poll
        started = time.monotonic()
        os.kill(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running 5 s after SIGTERM:\n{a.daemon_log()}")
        assert daemon.returncode == 0 and time.monotonic() - started < 5, a.daemon_log()
    write(a.folder, "after.txt", "after the daemon\n")
    a.synced()  # the lock went with the daemon (this commit also ends its long-poll on the server)


def test_daemons_sync_new_files_and_edits_both_ways(shared: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(shared, tmp_path)
    with daemons(a, b) as running:
        def arrived(path: Path, content: bytes) -> bool:
            for process, device in zip(running, (a, b), strict=True):
                assert process.poll() is None, f"{device.name} daemon died:\n{device.daemon_log()}"
            return path.is_file() and path.read_bytes() == content

        write(a.folder, "hello.txt", "written on alpha\n")
        wait_until(lambda: arrived(b.folder / "hello.txt", b"written on alpha\n"),
                   what="alpha's new file on beta")
        write(b.folder, "hello.txt", "edited on beta\n")
        wait_until(lambda: arrived(a.folder / "hello.txt", b"edited on beta\n"),
                   what="beta's edit on alpha")
    assert tree_of(a.folder) == tree_of(b.folder) == {"hello.txt": b"edited on beta\n"}
    # A pass after the daemons stopped carries on from their state (and its commit ends
    # their long-polls still open on the server, which would otherwise delay its shutdown).
    write(b.folder, "later.txt", "later\n")
    b.synced()
    a.synced()
    assert tree_of(a.folder) == tree_of(b.folder)


def test_server_stops_promptly_while_a_client_long_polls(server: RunningServer,
                                                         tmp_path: Path) -> None:
    """Every running `tandem sync` keeps a journal long-poll open (wait=25 s); `tandem serve`
    must still stop promptly on SIGTERM (a restart, systemd, the tests' own teardown)."""
    (a,) = link_devices(server, tmp_path, 1)
    cursor = a.account(server.url)["cursor"]
    ended = threading.Event()

    def long_poll() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"{server.url}/changes", params={"cursor": cursor, "wait": 25},
                      headers={"Authorization": f"Bearer {a.token()}"}, timeout=40)
        ended.set()

    poller = threading.Thread(target=long_poll, daemon=True)
    poller.start()
    try:
        assert not ended.wait(0.5), "the long-poll answered at once"
        os.kill(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            raise AssertionError("`tandem serve` still running 5 s after SIGTERM") from None
    finally:
        if server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=10)
        poller.join(timeout=30)
