"""Faults on the client's disk (issue 6, section 3), end to end through the CLI with a real
server: a file that fails with a real EIO when read, a folder that refuses writes (EACCES)
on the receiving side, a full disk under a running daemon, a file replaced by a folder
between the scan and the action, and the sync root renamed away mid-pass. Each time:
nothing is deleted anywhere, the fault is a per-path problem (exit 1) or a clean stop, and
once it is gone the devices converge with `tandem check` clean (the oracle, `settle`).

Real mechanisms only: EIO comes from a bind mount of `/proc/PID/mem` over a file (reading
offset 0 of a process's memory, which is never mapped, fails with EIO), permissions from
chmod with root's override dropped (`setpriv`), ENOSPC from a 2 MiB tmpfs; races are landed
by a proxy that holds one kind of request until the disk has been changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.helpers_api import serving
from tests.sync_helpers import (
    NO_DAC,
    PASSWORD,
    Device,
    HoldingProxy,
    daemons,
    link_devices,
    run_cli,
    stop_processes,
    sync_all,
    tree_of,
    wait_until,
    write,
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: Any) -> Iterator[RunningServer]:
    with serving(tmp_path_factory) as running:
        yield running


def settle(*devices: Device) -> dict[str, bytes | str]:
    """The oracle after a fault: passes until nothing is left to do, then every device holds
    the same tree and `tandem check` finds nothing (not even pending work)."""
    sync_all(*devices)
    sync_all(*devices[:-1])  # the last one's changes (a conflicted copy) reach the others
    trees = [tree_of(device.folder) for device in devices]
    assert all(tree == trees[0] for tree in trees), "the devices did not converge"
    for device in devices:
        result = device.run("check", "--json")
        document = json.loads(result.stdout)
        assert result.returncode == 0 and not document["pending"], (device.name, result.stdout)
    return trees[0]


def trash(device: Device) -> list[dict[str, Any]]:
    listed = device.run("trash", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout)["trash"])


@contextmanager
def failing_reads(path: Path) -> Iterator[None]:
    """Every read of `path` fails with a real EIO while the block runs."""
    with failing_reads_later(path) as start:
        start()
        yield


@contextmanager
def failing_reads_later(path: Path) -> Iterator[Callable[[], None]]:
    """Reads of `path` fail with a real EIO from the moment the block calls what it gets."""
    mounted: list[bool] = []

    def start() -> None:
        done = subprocess.run(["mount", "--bind", f"/proc/{os.getpid()}/mem", str(path)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
        mounted.append(True)
        with pytest.raises(OSError, match="Input/output error"):
            path.read_bytes()

    try:
        yield start
    finally:
        if mounted:
            subprocess.run(["umount", str(path)], check=True)


def test_a_file_failing_with_eio_is_a_problem_never_a_deletion(shared: RunningServer,
                                                              tmp_path: Path) -> None:
    a, b = link_devices(shared, tmp_path)
    write(a.folder, "synced.bin", b"synced before the disk failed\n")
    write(a.folder, "fine.txt", "fine\n")
    sync_all(a, b)
    before = tree_of(b.folder)
    write(a.folder, "new.bin", b"new, on a failing sector\n")
    write(a.folder, "other.txt", "unaffected\n")
    with failing_reads(a.folder / "synced.bin"), failing_reads(a.folder / "new.bin"):
        result = a.sync()
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        for name in ("synced.bin", "new.bin"):
            assert f"{name}: cannot read: Input/output error" in result.stderr, result.stderr
        b.synced()
        assert tree_of(b.folder) == {**before, "other.txt": b"unaffected\n"}
        assert trash(b) == []
    assert settle(a, b) == {**before, "other.txt": b"unaffected\n",
                            "new.bin": b"new, on a failing sector\n"}


def test_a_folder_refusing_writes_on_the_receiving_side(shared: RunningServer,
                                                        tmp_path: Path) -> None:
    """B's folder `locked` is read-only (B runs without root's override): A's rename, new
    file and delete there are per-path problems on B, and hold back nothing else (a failed
    move once held back the whole pass, since a plan holding moves holds only moves)."""
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE")
    a, b = link_devices(shared, tmp_path)
    for name in ("old", "gone", "keep"):
        write(a.folder, f"locked/{name}.txt", f"{name}\n")
    sync_all(a, b)
    before = tree_of(b.folder)
    (a.folder / "locked" / "old.txt").rename(a.folder / "locked" / "renamed.txt")
    write(a.folder, "locked/new.txt", "new\n")
    write(a.folder, "open.txt", "open\n")
    (a.folder / "locked" / "gone.txt").unlink()  # after the new files: no inode reused
    a.synced()
    (b.folder / "locked").chmod(0o555)
    try:
        result = b.sync(prefix=NO_DAC)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        for name in ("old", "new", "gone"):
            assert f"locked/{name}.txt: permission denied" in result.stderr, result.stderr
        assert tree_of(b.folder) == {**before, "open.txt": b"open\n"}, result.stdout
        assert not list((b.folder / ".tandem" / "tmp").glob("*")), "a temp file was left"
    finally:
        (b.folder / "locked").chmod(0o755)
    assert settle(a, b) == {"locked": "DIR", "locked/keep.txt": b"keep\n",
                            "locked/renamed.txt": b"old\n", "locked/new.txt": b"new\n",
                            "open.txt": b"open\n"}


def test_a_daemon_with_a_full_disk_retries_once_there_is_room(shared: RunningServer,
                                                              tmp_path: Path) -> None:
    """B's daemon syncs into a 2 MiB tmpfs; a 3 MiB file arrives: no space, no partial file,
    the daemon keeps running, and fetches the file on its own once the disk has room."""
    a, b = link_devices(shared, tmp_path)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(b.folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        write(a.folder, "small.txt", "small\n")
        a.synced()
        with daemons(b) as (daemon,):
            wait_until(lambda: (b.folder / "small.txt").exists(), timeout=30,
                       what="the daemon's first pass")
            big = write(a.folder, "big.bin", os.urandom(3 << 20)).read_bytes()
            a.synced()

            def saw_no_space() -> bool:
                assert daemon.poll() is None, b.daemon_log()
                return "big.bin: no space left" in b.run("status").stdout

            wait_until(saw_no_space, timeout=30, what="the daemon to report the full disk")
            assert tree_of(b.folder) == {"small.txt": b"small\n"}, "a partial file is visible"
            subprocess.run(["mount", "-o", "remount,size=16m", str(b.folder)], check=True)
            wait_until(lambda: (b.folder / "big.bin").exists(), timeout=40,
                       what="the daemon to fetch the file once there is room")
            assert (b.folder / "big.bin").read_bytes() == big
        settle(a, b)
    finally:
        subprocess.run(["umount", "-l", str(b.folder)], check=False)


def _through_proxy(server: RunningServer, tmp_path: Path, marker: bytes,
                   ) -> tuple[Device, Device, HoldingProxy]:
    """A (direct) and B, whose requests go through a proxy holding those with `marker`."""
    (a,) = link_devices(server, tmp_path, 1)
    proxy = HoldingProxy(server.url, marker)
    b = Device("beta", tmp_path / "home-beta", tmp_path / "beta")
    b.folder.mkdir()
    email = json.loads((a.home / "device.json").read_text())["email"]
    logged = run_cli(b.home, "login", proxy.url, email, "--password-stdin", "--device-name",
                     "beta", stdin=f"{PASSWORD}\n")
    assert logged.returncode == 0, logged.stderr
    return a, b, proxy


@contextmanager
def held_pass(device: Device, proxy: HoldingProxy) -> Iterator[subprocess.Popen[str]]:
    """A `--once` pass of `device` in the background, frozen at its first held request for
    the block (which changes the disk), then released and awaited."""
    proxy.holding = True
    process = subprocess.Popen(
        [sys.executable, "-m", "tandem", "sync", "--folder", str(device.folder), "--once"],
        env={**os.environ, "TANDEM_HOME": str(device.home)}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: proxy.held > 0 or process.poll() is not None, timeout=30,
                   what="the pass to reach the held request")
        assert process.poll() is None, process.communicate()
        yield process
        proxy.holding = False
        proxy.release()
        _, stderr = process.communicate(timeout=60)
        assert "Traceback" not in stderr, stderr
    finally:
        stop_processes(process)


@pytest.mark.parametrize("direction", ["upload", "download"])
def test_a_file_replaced_by_a_folder_between_scan_and_action(shared: RunningServer,
                                                             tmp_path: Path, direction: str) -> None:
    """B's pass is frozen after its scan (at its commit when sending, at its fetch when
    receiving); meanwhile `report` on B's disk becomes a folder holding a file."""
    marker = b"POST /tree/batch" if direction == "upload" else b"POST /chunks/fetch"
    a, b, proxy = _through_proxy(shared, tmp_path, marker)
    try:
        sync_all(a, b)
        if direction == "upload":
            write(b.folder, "report", "a file on B\n")
        else:
            write(a.folder, "report", "a file from A\n")
            a.synced()
        with held_pass(b, proxy):
            if direction == "upload":
                (b.folder / "report").unlink()
            write(b.folder, "report/inside.txt", "a folder now\n")
        final = settle(a, b)
    finally:
        proxy.close()
    if direction == "upload":
        assert final == {"report": "DIR", "report/inside.txt": b"a folder now\n"}, final
    else:  # both sides made `report`: B's folder becomes the conflicted copy, nothing is lost
        assert final["report"] == b"a file from A\n", final
        assert sorted(v for k, v in final.items() if k.endswith("/inside.txt")) == [
            b"a folder now\n"], final


def test_the_sync_root_renamed_away_mid_pass(shared: RunningServer, tmp_path: Path) -> None:
    """B's pass is frozen while it fetches A's new file (its own is still to be committed);
    its folder is renamed away meanwhile. Nothing is deleted, nothing is created at the old path, and
    once the folder is back, everything converges."""
    a, b, proxy = _through_proxy(shared, tmp_path, b"POST /chunks/fetch")
    try:
        write(a.folder, "old.txt", "old\n")
        sync_all(a, b)
        write(b.folder, "from-b.txt", "from B\n")
        write(a.folder, "from-a.txt", "from A\n")
        a.synced()
        away = b.folder.with_name("beta-away")
        with held_pass(b, proxy):
            b.folder.rename(away)
        assert not b.folder.exists(), "the old path of the sync folder was recreated"
        assert tree_of(away)["old.txt"] == b"old\n"
        assert trash(a) == []
        away.rename(b.folder)
        final = settle(a, b)
    finally:
        proxy.close()
    assert final == {"old.txt": b"old\n", "from-a.txt": b"from A\n", "from-b.txt": b"from B\n"}


def test_eio_while_uploading_a_file_the_scan_could_read(shared: RunningServer,
                                                        tmp_path: Path) -> None:
    """The scan reads both files; the upload's first slice (6 MiB) is held at its query for
    missing chunks while the disk under `second.bin` (the next slice) starts failing: that
    upload fails with EIO, a per-path problem, and the first file is committed. (The mount
    makes the file's size read 0: the upload skipped reading a file of size 0 and committed
    it empty, the scan kept the content it had seen, and each round uploaded it again.)"""
    a, b, proxy = _through_proxy(shared, tmp_path, b"POST /chunks/missing")
    try:
        first = write(b.folder, "first.bin", os.urandom(6 << 20)).read_bytes()
        second = write(b.folder, "second.bin", os.urandom(3 << 20)).read_bytes()
        with failing_reads_later(b.folder / "second.bin") as start_failing:
            with held_pass(b, proxy) as process:
                start_failing()
            assert process.returncode == 1
            a.synced()
            assert tree_of(a.folder) == {"first.bin": first}
            status = b.run("status").stdout
            assert "second.bin: " in status and "Input/output error" in status, status
        assert settle(a, b) == {"first.bin": first, "second.bin": second}
    finally:
        proxy.close()
