"""Randomized, seeded runs of two `tandem sync` daemons: the way users actually run Tandem.

While both daemons run, random creates, edits, deletes, renames and moves of files and
folders happen on both folders at random moments (so passes overlap changes, watcher hints
arrive mid-pass and journal wake-ups race local edits). Then quiescence, and three checks:
- both folders hold the same tree;
- `tandem check` finds nothing on either device;
- nothing is lost: every content either folder held when the changes stopped is in the final
  tree or in the cloud's history (a version of some file, alive or in the trash). A content a
  user overwrote before it was ever synced may be gone; the last one on each side may not.

Seeds: TANDEM_DAEMON_SEEDS="1,2,3" (default "1,2"); a failure names its seed, which replays
the same operations (their timing against the daemons varies, as it does for users).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import time
from pathlib import Path

import pytest

from tandem.client import Home, Session
from tests.conftest import RunningServer
from tests.simulation import cloud_history, content_key
from tests.sync_helpers import Device, daemons, link_devices, tree_of

SEEDS = [int(s) for s in os.environ.get("TANDEM_DAEMON_SEEDS", "1,2").split(",") if s.strip()]
STEPS = 40
FOLDERS = ["", "docs", "docs/old", "pics"]
NAMES = ["a.txt", "b.bin", "c", "d.md"]


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and ".tandem" not in p.relative_to(folder).parts)


def _folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_dir() and ".tandem" not in p.relative_to(folder).parts)


def _step(rng: random.Random, folder: Path, serial: int) -> None:
    """One random change to `folder` (a change that cannot apply is skipped)."""
    files, folders = _files(folder), _folders(folder)
    kind = rng.choice(["create", "create", "edit", "edit", "delete", "rename", "move",
                       "rename_folder", "delete_folder"])
    content = f"content {serial} {rng.random()}\n".encode() * rng.randint(1, 50)
    try:
        if kind == "create" or not files:
            target = folder / rng.choice(FOLDERS) / rng.choice(NAMES)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_dir():
                target.write_bytes(content)
        elif kind == "edit":
            rng.choice(files).write_bytes(content)
        elif kind == "delete":
            rng.choice(files).unlink()
        elif kind in ("rename", "move"):
            source = rng.choice(files)
            parent = source.parent if kind == "rename" else folder / rng.choice(FOLDERS)
            parent.mkdir(parents=True, exist_ok=True)
            target = parent / f"{rng.choice(NAMES)}.{serial}"
            source.rename(target)
        elif kind == "rename_folder" and folders:
            source = rng.choice(folders)
            source.rename(source.parent / f"{source.name}-{serial}")
        elif kind == "delete_folder" and folders:
            shutil.rmtree(rng.choice(folders))
    except OSError:
        pass  # e.g. a folder the other side's changes just moved away


def _contents(folder: Path) -> set[bytes]:
    found = set()
    for path in _files(folder):
        with contextlib.suppress(OSError):
            found.add(path.read_bytes())
    return found


def _lost(device: Device, contents: set[bytes]) -> list[bytes]:
    """The contents that are in no version of any file node the account ever had (live or
    trashed), as the change journal from 0 lists them."""
    session = Session.open(Home(device.home))
    try:
        history = cloud_history(session)
        return [data for data in contents if content_key(session, data) not in history]
    finally:
        session.close()


def _settled(a: Device, b: Device, timeout: float) -> None:
    """Wait until both trees are equal and stay so for 2 s (bounded)."""
    deadline = time.monotonic() + timeout
    stable_since = None
    while time.monotonic() < deadline:
        same = tree_of(a.folder) == tree_of(b.folder)
        if same and stable_since is None:
            stable_since = time.monotonic()
        elif not same:
            stable_since = None
        if stable_since is not None and time.monotonic() - stable_since >= 2.0:
            return
        time.sleep(0.2)
    left, right = tree_of(a.folder), tree_of(b.folder)
    differ = sorted(p for p in left.keys() | right.keys() if left.get(p) != right.get(p))
    raise AssertionError(f"the folders did not converge within {timeout:.0f} s: {differ[:10]}"
                         f"\n{a.name} status: {a.run('status').stdout}"
                         f"\n{b.name} status: {b.run('status').stdout}"
                         f"\n{a.name} log: {a.daemon_log()[-2000:]}\n{b.name} log: {b.daemon_log()[-2000:]}")


@pytest.mark.parametrize("seed", SEEDS)
def test_random_changes_under_running_daemons_converge_and_lose_nothing(
        server: RunningServer, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    a, b = link_devices(server, tmp_path)
    with daemons(a, b) as running:
        for serial in range(STEPS):
            _step(rng, rng.choice([a, b]).folder, serial)
            time.sleep(rng.choice([0.0, 0.0, 0.05, 0.2, 0.5]))
        for process, device in zip(running, (a, b), strict=True):
            assert process.poll() is None, f"seed {seed}: {device.name} died:\n{device.daemon_log()}"
        last = _contents(a.folder) | _contents(b.folder)
        _settled(a, b, timeout=90)
    final = tree_of(a.folder)
    assert final == tree_of(b.folder), f"seed {seed}"
    for device in (a, b):
        checked = device.run("check")
        assert checked.returncode == 0, f"seed {seed}, {device.name}: {checked.stdout}{checked.stderr}"
    kept = {data for data in final.values() if isinstance(data, bytes)}
    lost = [data[:40] for data in _lost(a, last - kept)]
    assert not lost, f"seed {seed}: contents lost: {lost}"
