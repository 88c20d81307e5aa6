"""kill -9 at random points of a large transfer and of a folder move, then restart: nothing
lost, no partial file visible, interrupted uploads resume without re-sending stored chunks,
and the devices converge (promise 5). Real `tandem sync` subprocesses, killed by PID."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import RunningServer, tandem
from tests.test_sync_model import tree_of

BIG = 32 << 20


def _link(server: RunningServer, tmp_path: Path, name: str, first: bool) -> tuple[Path, Path]:
    home, folder = tmp_path / f"home-{name}", tmp_path / f"folder-{name}"
    folder.mkdir()
    verb = "signup" if first else "login"
    result = tandem(home, verb, server.url, "crash@example.org", "--password-stdin",
                    "--device-name", name, stdin="pw\n")
    assert result.returncode == 0, result.stderr
    return home, folder


def _start_sync(home: Path, folder: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TANDEM_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "tandem", "sync", "--folder", str(folder), "--once"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def _used_bytes(server: RunningServer, home: Path) -> int:
    token = re.search(r'"token": "([^"]+)"', (home / "device.json").read_text())
    assert token
    answer = httpx.get(f"{server.url}/account", headers={"Authorization": f"Bearer {token[1]}"})
    return int(answer.json()["used_bytes"])


def _sent_bytes(output: str) -> int:
    found = re.search(r"(\d+) bytes sent", output)
    assert found, output
    return int(found[1])


def _sync_ok(home: Path, folder: Path) -> str:
    result = tandem(home, "sync", "--folder", str(folder), "--once", timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_upload_killed_midway_resumes_without_resending(server: RunningServer, tmp_path: Path) -> None:
    home_a, folder_a = _link(server, tmp_path, "A", first=True)
    home_b, folder_b = _link(server, tmp_path, "B", first=False)
    content = random.Random(1).randbytes(BIG)
    (folder_a / "big.bin").write_bytes(content)
    process = _start_sync(home_a, folder_a)
    try:
        deadline = time.monotonic() + 120
        while _used_bytes(server, home_a) < BIG // 4 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.02)
    finally:
        _kill(process)
    stored = _used_bytes(server, home_a)
    assert 0 < stored < BIG + (1 << 20), "killed before the upload finished"
    sent = _sent_bytes(_sync_ok(home_a, folder_a))
    assert sent < BIG - stored + (8 << 20), "chunks already on the server were sent again"
    _sync_ok(home_b, folder_b)
    assert (folder_b / "big.bin").read_bytes() == content


def test_download_killed_midway_shows_no_partial_file(server: RunningServer, tmp_path: Path) -> None:
    home_a, folder_a = _link(server, tmp_path, "A", first=True)
    home_b, folder_b = _link(server, tmp_path, "B", first=False)
    content = random.Random(2).randbytes(BIG)
    (folder_a / "big.bin").write_bytes(content)
    _sync_ok(home_a, folder_a)
    for delay in (0.3, 0.6, 0.9):
        process = _start_sync(home_b, folder_b)
        try:
            time.sleep(delay)
        finally:
            _kill(process)
        target = folder_b / "big.bin"
        assert not target.exists() or target.read_bytes() == content, "a partial file is visible"
    _sync_ok(home_b, folder_b)
    assert (folder_b / "big.bin").read_bytes() == content
    assert tree_of(folder_a) == tree_of(folder_b)


def test_folder_move_killed_at_random_points_converges(server: RunningServer, tmp_path: Path) -> None:
    home_a, folder_a = _link(server, tmp_path, "A", first=True)
    home_b, folder_b = _link(server, tmp_path, "B", first=False)
    rng = random.Random(3)
    for index in range(300):
        path = folder_a / "photos" / f"sub{index % 7}" / f"img{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(1, 4000)))
    _sync_ok(home_a, folder_a)
    _sync_ok(home_b, folder_b)
    before = tree_of(folder_a)
    (folder_a / "photos").rename(folder_a / "albums")
    (folder_a / "albums" / "sub3").rename(folder_a / "sub3-moved")
    for delay in (0.05, 0.2, 0.4):
        process = _start_sync(home_a, folder_a)
        try:
            time.sleep(delay + rng.random() * 0.1)
        finally:
            _kill(process)
        process = _start_sync(home_b, folder_b)
        try:
            time.sleep(delay)
        finally:
            _kill(process)
    for _ in range(2):
        _sync_ok(home_a, folder_a)
        _sync_ok(home_b, folder_b)
    after_a, after_b = tree_of(folder_a), tree_of(folder_b)
    assert after_a == after_b
    assert sorted(v for v in after_a.values() if v != "DIR") == \
        sorted(v for v in before.values() if v != "DIR"), "a file was lost or duplicated"
    assert "albums/sub0/img0.jpg" in after_b and "sub3-moved/img3.jpg" in after_b


def test_moves_recorded_on_the_server_but_not_locally_neither_duplicate_nor_lose(
        server: RunningServer, tmp_path: Path) -> None:
    """A crash right after the server accepted a folder move, before the state DB recorded
    it: replayed deterministically by putting back the state DB from before the pass."""
    home_a, folder_a = _link(server, tmp_path, "A", first=True)
    home_b, folder_b = _link(server, tmp_path, "B", first=False)
    for index in range(40):
        path = folder_a / "photos" / f"sub{index % 4}" / f"img{index}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"image {index}".encode())
    _sync_ok(home_a, folder_a)
    _sync_ok(home_b, folder_b)
    before = sorted(v for v in tree_of(folder_a).values() if v != "DIR")
    (folder_a / "photos").rename(folder_a / "albums")
    saved = {p.name: p.read_bytes() for p in home_a.glob("state.db*")}
    _sync_ok(home_a, folder_a)  # the server has the move ...
    for leftover in home_a.glob("state.db*"):
        leftover.unlink()
    for name, data in saved.items():  # ... and the state DB does not
        (home_a / name).write_bytes(data)
    (folder_a / "albums" / "sub3").rename(folder_a / "sub3-moved")  # then the user moves on
    for _ in range(2):
        _sync_ok(home_a, folder_a)
        _sync_ok(home_b, folder_b)
    after = tree_of(folder_a)
    assert after == tree_of(folder_b)
    assert sorted(v for v in after.values() if v != "DIR") == before, "duplicated or lost"
    assert "sub3-moved/img3.jpg" in after and "albums/sub0/img0.jpg" in after
