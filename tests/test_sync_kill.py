"""SIGKILL of the client at chosen and at random points of a pass, and of the server during
commits (issue 6, section 3; promise 5). Real `tandem sync` and `tandem serve` processes,
killed by PID; after the restart nothing is lost or duplicated, no partial file is visible,
the devices converge and `tandem check` is clean (`settle`).

The points: while a large file is hashed (its bytes read by the process, no upload asked
yet), at a commit (the proxy holds `POST /tree/batch`, then lets it through and the client
is killed a random few milliseconds later: before, during or after the server applies it),
and at seeded random moments of a pass that downloads, renames, uploads and records many
small files. CI runs seeds 1 and 2; `TANDEM_CRASH_SEEDS=1,2,...` runs others."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer, stop_server
from tests.helpers_api import serving
from tests.sync_helpers import (
    Device,
    link_devices,
    restart_on_same_port,
    stop_processes,
    sync_all,
    tree_of,
    wait_until,
    write,
)
from tests.test_sync_disk_faults import _through_proxy, settle

SEEDS = [int(seed) for seed in os.environ.get("TANDEM_CRASH_SEEDS", "1,2").split(",")]
#: The server's restart is the slowest part: one seed in CI unless seeds are asked for.
SERVER_SEEDS = SEEDS if "TANDEM_CRASH_SEEDS" in os.environ else SEEDS[:1]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: Any) -> Iterator[RunningServer]:
    with serving(tmp_path_factory) as running:
        yield running


def start_pass(device: Device) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tandem", "sync", "--folder", str(device.folder), "--once"],
        env={**os.environ, "TANDEM_HOME": str(device.home)}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill(process: subprocess.Popen[str]) -> bool:
    """SIGKILL by PID; whether it landed (the pass had not ended on its own)."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    return process.returncode == -signal.SIGKILL


def bytes_read(process: subprocess.Popen[str]) -> int:
    """What the process has read so far (files and sockets: /proc/PID/io's rchar)."""
    try:
        io = Path(f"/proc/{process.pid}/io").read_text()
    except OSError:
        return 0
    return next(int(line.split()[1]) for line in io.splitlines() if line.startswith("rchar:"))


def visible_files(folder: Path) -> int:
    count = 0
    for _, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if name != ".tandem"]
        count += len(files)
    return count


def no_partial_file(folder: Path, contents: set[bytes]) -> None:
    """Every file in the folder holds content some device saved, whole."""
    for path, content in tree_of(folder).items():
        assert content in ("DIR", *contents), f"{path}: a partial or unknown file is visible"


def test_killed_while_hashing_a_large_file(shared: RunningServer, tmp_path: Path) -> None:
    """Killed while its scan reads the large file (and sends its first chunks ahead): the
    rerun sends what is missing and commits it whole."""
    a, b, proxy = _through_proxy(shared, tmp_path, b"POST /tree/batch")
    try:
        big = random.Random(7).randbytes(64 << 20)
        write(b.folder, "big.bin", big)
        write(b.folder, "small.txt", "small\n")
        proxy.holding = True  # nothing is committed: the kill lands before any commit
        process = start_pass(b)
        try:
            wait_until(lambda: bytes_read(process) > 32 << 20 or process.poll() is not None,
                       timeout=60, what="the pass to be hashing the large file")
        finally:
            assert kill(process)
        assert proxy.held == 0, "killed after the scan, not during it"
        proxy.holding = False
        proxy.release()
        no_partial_file(b.folder, {big, b"small\n"})
        assert settle(b, a) == {"big.bin": big, "small.txt": b"small\n"}
    finally:
        proxy.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_at_a_commit(shared: RunningServer, tmp_path: Path, seed: int) -> None:
    """B's pass commits new files, an edit and a folder move; it is killed just after its
    first commit request is let through (the server may or may not have applied it)."""
    rng = random.Random(seed)
    a, b, proxy = _through_proxy(shared, tmp_path, b"POST /tree/batch")
    try:
        for index in range(30):
            write(b.folder, f"photos/p{index:02d}.jpg", f"photo {index}\n")
        sync_all(b, a)
        (b.folder / "photos").rename(b.folder / "albums")
        write(b.folder, "albums/p00.jpg", "edited\n")
        for index in range(100):
            write(b.folder, f"new/n{index:03d}.txt", f"new {index}\n")
        expected = tree_of(b.folder)
        proxy.holding = True
        process = start_pass(b)
        try:
            wait_until(lambda: proxy.held > 0 or process.poll() is not None, timeout=30,
                       what="the first commit")
            proxy.holding = False
            proxy.release()
            time.sleep(rng.uniform(0, 0.05))
        finally:
            assert kill(process), "the pass ended before the kill"
        assert tree_of(b.folder) == expected
        assert settle(b, a) == expected
    finally:
        proxy.close()


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_at_random_moments_of_a_busy_pass(shared: RunningServer, tmp_path: Path,
                                                 seed: int) -> None:
    """A renames a folder, edits, deletes and adds files; B, meanwhile, adds and edits its
    own. B's passes (downloads, local renames, uploads, commits, state writes) are killed
    at seeded random moments (once a random number of A's files has arrived, plus up to
    50 ms), three times, then passes run to their end."""
    rng = random.Random(seed)
    a, b = link_devices(shared, tmp_path)
    contents: set[bytes] = set()

    def put(device: Device, path: str, size: int) -> None:
        contents.add(write(device.folder, path, rng.randbytes(size)).read_bytes())

    for index in range(120):
        put(a, f"docs/d{index % 6}/f{index:03d}.bin", rng.randint(1, 3000))
    sync_all(a, b)
    (a.folder / "docs").rename(a.folder / "papers")
    (a.folder / "papers" / "d1").rename(a.folder / "d1-moved")
    for index in range(0, 120, 7):
        put(a, f"papers/d{index % 6}/f{index:03d}.bin", rng.randint(1, 3000))
    (a.folder / "papers" / "d2" / "f002.bin").unlink()
    for index in range(80):
        put(a, f"fresh/g{index:03d}.bin", rng.randint(1, 3000))
    put(a, "large.bin", 3 << 20)
    a.synced()
    for index in range(40):
        put(b, f"mine/m{index:03d}.bin", rng.randint(1, 3000))
    put(b, "docs/d3/f003.bin", 500)  # an edit on B of a file A moved
    expected = visible_files(a.folder) + 40
    landed = 0
    for _ in range(3):  # each kill lands once a random number of new files has appeared
        present = visible_files(b.folder)
        goal = present + rng.randint(1, max(1, expected - present))
        process = start_pass(b)
        try:
            wait_until(lambda goal=goal, process=process: visible_files(b.folder) >= goal
                       or process.poll() is not None,
                       timeout=60, interval=0.005, what="files to arrive")
            time.sleep(rng.uniform(0, 0.05))
        finally:
            landed += kill(process)
        no_partial_file(b.folder, contents)
    assert landed, "every pass ended before its kill"
    final = settle(b, a)
    files = sorted(v for v in final.values() if v != "DIR")
    assert len(files) == len(set(files)), "a file was duplicated"
    assert "d1-moved/f001.bin" in final and "mine/m000.bin" in final
    assert final.get("papers/d3/f003.bin") in contents, "B's edit of a moved file was lost"


@pytest.mark.parametrize("seed", SERVER_SEEDS)
def test_server_killed_during_commits(server: RunningServer, tmp_path: Path, seed: int) -> None:
    """`tandem serve` is killed with SIGKILL a random few milliseconds after B's first
    commit reached it, and started again on the same port: B's pass retries or fails
    cleanly; the next passes converge with every file exactly once."""
    rng = random.Random(seed)
    a, b, proxy = _through_proxy(server, tmp_path, b"POST /tree/batch")
    again: RunningServer | None = None
    try:
        for index in range(300):
            write(b.folder, f"batch/f{index:03d}.txt", f"file {index}\n")
        expected = tree_of(b.folder)
        proxy.holding = True
        process = start_pass(b)
        try:
            wait_until(lambda: proxy.held > 0 or process.poll() is not None, timeout=30,
                       what="the first commit")
            proxy.holding = False
            proxy.release()
            time.sleep(rng.uniform(0, 0.03))
            os.kill(server.process.pid, signal.SIGKILL)
            again = restart_on_same_port(server)
            _, stderr = process.communicate(timeout=120)
            assert "Traceback" not in stderr, stderr
        finally:
            stop_processes(process)
        assert settle(b, a) == expected
    finally:
        proxy.close()
        if again is not None:
            stop_server(again)
