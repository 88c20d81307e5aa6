"""File-manager emblems (issue 4): the pure state table, the silent fallbacks (no `gio`, no
metadata daemon), and a real `tandem sync` daemon keeping real gvfs metadata up to date on a
session bus of the test's own (`dbus-run-session`), read back with `gio info` as Nautilus
would. Skipped, with the reason, where `gio` or the gvfs metadata daemon is missing."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.sync.emblems import ERROR, ONLINE_ONLY, SYNCED, SYNCING, Emblems, changes, emblem_states
from tests.conftest import RunningServer
from tests.helpers_api import serving
from tests.sync_helpers import NO_DAC, link_devices, stop_processes, sync_all, wait_until, write

# ---- pure -----------------------------------------------------------------------------------


def test_each_state_has_its_emblem_and_the_stronger_state_wins() -> None:
    states = emblem_states(
        synced=["", "docs", "docs/a.txt", "docs/b.txt", "free.bin", "bad.txt", "v", "v/big.bin"],
        online={"free.bin": "free.bin.tandem"},
        problems=["bad.txt", "new-but-failing.txt", ""],
        moving=["v/big.bin", "up/new.bin"])
    assert states == {
        "docs": SYNCED, "docs/a.txt": SYNCED, "docs/b.txt": SYNCED,
        "free.bin.tandem": ONLINE_ONLY,  # on the placeholder, not on the absent file
        "bad.txt": ERROR, "new-but-failing.txt": ERROR,
        "v": SYNCING, "v/big.bin": SYNCING,  # a folder with something moving inside
        "up": SYNCING, "up/new.bin": SYNCING,
    }


def test_changes_sets_only_what_differs_and_clears_what_is_gone() -> None:
    applied = {"a": SYNCED, "b": SYNCING, "c": ERROR}
    wanted = {"a": SYNCED, "b": SYNCED, "d": ONLINE_ONLY}
    assert changes(applied, wanted) == ({"b": SYNCED, "d": ONLINE_ONLY}, ["c"])
    assert changes(wanted, wanted) == ({}, [])


# ---- silent fallbacks -----------------------------------------------------------------------


def test_without_gio_nothing_happens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    write(tmp_path, "f.txt", b"x")
    emblems = Emblems(tmp_path)
    assert not emblems.enabled
    emblems.update({"f.txt": SYNCED})
    assert emblems.applied == {}


def test_without_a_metadata_daemon_emblems_turn_themselves_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("gio") is None:
        pytest.skip("no gio binary here")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    for name in ("a.txt", "b.txt"):
        write(tmp_path, name, b"x")
    emblems = Emblems(tmp_path)
    assert emblems.enabled
    emblems.update({"a.txt": SYNCED, "b.txt": SYNCED})  # no exception, nothing recorded
    assert not emblems.enabled and emblems.applied == {}


# ---- a real daemon on a real session bus ----------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[RunningServer]:
    with serving(tmp_path_factory) as running:
        yield running


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment with a private session bus (its gvfs metadata kept under tmp_path),
    ended by closing its stdin; skipped where gio or gvfs metadata is not available."""
    if shutil.which("gio") is None or shutil.which("dbus-run-session") is None:
        pytest.skip("needs gio and dbus-run-session")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    session = subprocess.Popen(
        ["dbus-run-session", "--", "sh", "-c", 'echo "$DBUS_SESSION_BUS_ADDRESS"; exec cat >/dev/null'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert session.stdin is not None and session.stdout is not None
    try:
        ready, _, _ = select.select([session.stdout], [], [], 30)
        address = session.stdout.readline().decode().strip() if ready else ""
        if not address:
            pytest.skip("dbus-run-session started no session bus")
        env["DBUS_SESSION_BUS_ADDRESS"] = address
        probe = write(tmp_path, "probe.txt", b"probe")
        tried = subprocess.run(["gio", "set", "-t", "stringv", str(probe), "metadata::emblems",
                                SYNCED], env=env, capture_output=True, text=True, timeout=30)
        if tried.returncode != 0:
            pytest.skip(f"no gvfs metadata daemon here: {tried.stderr.strip()}")
        yield env
    finally:
        session.stdin.close()  # the shell ends, and dbus-run-session ends the bus with it
        try:
            session.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop_processes(session)
        session.stdout.close()


def emblems_of(env: dict[str, str], path: Path) -> list[str]:
    shown = subprocess.run(["gio", "info", "-a", "metadata::emblems", str(path)], env=env,
                           capture_output=True, text=True, timeout=30)
    for line in shown.stdout.splitlines():
        if "metadata::emblems:" in line:
            return line.split("metadata::emblems:", 1)[1].strip().strip("[]").split(", ")
    return []


def test_the_daemon_keeps_emblems_up_to_date(server: RunningServer, tmp_path: Path,
                                             bus: dict[str, str]) -> None:
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE (for an unreadable file)")
    a, b = link_devices(server, tmp_path)
    for name, data in {"docs/synced.txt": b"s", "free.bin": b"f" * 1000, "locked.txt": b"l"}.items():
        write(a.folder, name, data)
    sync_all(a, b)
    assert b.run("free", str(b.folder / "free.bin")).returncode == 0
    (b.folder / "locked.txt").chmod(0o000)  # the daemon runs without root's override: an error

    def shows(path: Path, emblem: str) -> bool:
        return emblems_of(bus, path) == [emblem]

    env = {**bus, "TANDEM_HOME": str(b.home)}
    with open(tmp_path / "daemon.log", "wb") as log:
        daemon = subprocess.Popen([*NO_DAC, sys.executable, "-m", "tandem", "sync", "--folder",
                                   str(b.folder)], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        for path, emblem in ((b.folder / "docs", SYNCED), (b.folder / "docs/synced.txt", SYNCED),
                             (b.folder / "free.bin.tandem", ONLINE_ONLY),
                             (b.folder / "locked.txt", ERROR)):
            wait_until(lambda path=path, emblem=emblem: shows(path, emblem), timeout=60,
                       interval=0.1, what=f"{emblem} on {path.name}")

        staged = tmp_path / "staged.bin"  # written outside, then moved in whole
        with open(staged, "wb") as handle:
            for _ in range(32):
                handle.write(os.urandom(4 * 1024 * 1024))
        (b.folder / "videos").mkdir()
        staged.rename(b.folder / "videos/big.bin")
        wait_until(lambda: shows(b.folder / "videos/big.bin", SYNCING), timeout=120, interval=0.02,
                   what="syncing on the file being uploaded")
        assert emblems_of(bus, b.folder / "videos") == [SYNCING]
        wait_until(lambda: shows(b.folder / "videos/big.bin", SYNCED), timeout=180, interval=0.1,
                   what="synced once uploaded")
        wait_until(lambda: shows(b.folder / "videos", SYNCED), timeout=30, what="the folder synced")

        # A free and an offline through the daemon move the emblems with them.
        assert b.run("free", str(b.folder / "docs/synced.txt")).returncode == 0
        assert b.run("offline", str(b.folder / "free.bin.tandem")).returncode == 0
        wait_until(lambda: shows(b.folder / "docs/synced.txt.tandem", ONLINE_ONLY), timeout=30,
                   what="online-only on the new placeholder")
        wait_until(lambda: shows(b.folder / "free.bin", SYNCED), timeout=30,
                   what="synced on the file back offline")
        assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()
    finally:
        stop_processes(daemon)
        (b.folder / "locked.txt").chmod(0o644)
