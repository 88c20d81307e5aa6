"""A placeholder that cannot be made (issue 4): disk full or permission denied, during `tandem
free` and when a new cloud file arrives in an online-only folder. Each time the command fails
cleanly, nothing is deleted in the cloud, the local file stays as it was, and once the disk has
room (or the folder is writable again) the same command succeeds. Real server, real CLI, a
real 2 MiB tmpfs and real permissions (the CLI runs without root's override, `setpriv`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.helpers_api import serving
from tests.sync_helpers import NO_DAC, Device, link_devices, sync_all, tree_of, write


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[RunningServer]:
    with serving(tmp_path_factory) as running:
        yield running


@contextmanager
def small_disk(folder: Path) -> Iterator[None]:
    """`folder` becomes a 2 MiB tmpfs for the block (skipped where mounting is refused)."""
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Path:
    """Fill the filesystem of `folder` from a file in its `.tandem` (never synced)."""
    filler = folder / ".tandem" / "filler"
    filler.parent.mkdir(exist_ok=True)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass  # ENOSPC: full
    finally:
        os.close(fd)
    assert shutil.disk_usage(folder).free < 4096
    return filler


def needs_no_dac() -> None:
    if shutil.which("setpriv") is None or os.geteuid() != 0:
        pytest.skip("needs root and setpriv to drop CAP_DAC_OVERRIDE")


def failed(result: subprocess.CompletedProcess[str], reason: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and reason in result.stderr, result.stderr


def state_of(device: Device, path: Path) -> str:
    result = device.run("status", "--json", str(path))
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["paths"][str(path)]["state"])


def cloud(device: Device) -> dict[str, bytes | str]:
    """What the cloud holds, as another device gets it after a sync."""
    device.synced()
    return tree_of(device.folder)


def test_free_on_a_full_disk_keeps_the_file_and_the_cloud_copy(server: RunningServer,
                                                               tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    with small_disk(b.folder):
        write(a.folder, "report.pdf", os.urandom(500_000))
        sync_all(a, b)
        before = tree_of(b.folder)
        filler = fill(b.folder)
        failed(b.run("free", str(b.folder / "report.pdf")), "no space left")
        assert tree_of(b.folder) == before
        assert state_of(b, b.folder / "report.pdf") == "synced"
        assert b.sync().returncode == 0  # the failed free leaves nothing to undo or send
        assert tree_of(b.folder) == before
        assert cloud(a) == before
        filler.unlink()
        assert b.run("free", str(b.folder / "report.pdf")).returncode == 0
        assert sorted(tree_of(b.folder)) == ["report.pdf.tandem"]
    assert cloud(a) == before


def test_free_in_a_read_only_folder_keeps_the_file_and_the_cloud_copy(server: RunningServer,
                                                                      tmp_path: Path) -> None:
    needs_no_dac()
    a, b = link_devices(server, tmp_path)
    write(a.folder, "docs/report.pdf", b"the report")
    sync_all(a, b)
    before = tree_of(b.folder)
    (b.folder / "docs").chmod(0o555)
    try:
        failed(b.run("free", str(b.folder / "docs/report.pdf"), prefix=NO_DAC), "ermission denied")
        assert tree_of(b.folder) == before
        assert b.sync(prefix=NO_DAC).returncode == 0
        assert tree_of(b.folder) == before
        assert cloud(a) == before
    finally:
        (b.folder / "docs").chmod(0o755)
    assert b.run("free", str(b.folder / "docs/report.pdf")).returncode == 0
    assert cloud(a) == before


def test_a_new_cloud_file_in_an_online_only_folder_on_a_full_disk(server: RunningServer,
                                                                   tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    with small_disk(b.folder):
        write(a.folder, "inbox/old.txt", b"old")
        sync_all(a, b)
        assert b.run("free", str(b.folder / "inbox")).returncode == 0
        here = tree_of(b.folder)
        write(a.folder, "inbox/new.txt", b"new")
        a.synced()
        filler = fill(b.folder)
        failed(b.sync(), "no space left")
        assert tree_of(b.folder) == here
        assert cloud(a) == {"inbox": "DIR", "inbox/old.txt": b"old", "inbox/new.txt": b"new"}
        filler.unlink()
        b.synced()
        assert sorted(tree_of(b.folder)) == ["inbox", "inbox/new.txt.tandem", "inbox/old.txt.tandem"]
    assert cloud(a) == {"inbox": "DIR", "inbox/old.txt": b"old", "inbox/new.txt": b"new"}


def test_a_new_cloud_file_in_a_read_only_online_only_folder(server: RunningServer,
                                                            tmp_path: Path) -> None:
    needs_no_dac()
    a, b = link_devices(server, tmp_path)
    write(a.folder, "inbox/old.txt", b"old")
    sync_all(a, b)
    assert b.run("free", str(b.folder / "inbox")).returncode == 0
    here = tree_of(b.folder)
    write(a.folder, "inbox/new.txt", b"new")
    a.synced()
    (b.folder / "inbox").chmod(0o555)
    try:
        failed(b.sync(prefix=NO_DAC), "ermission denied")
        failed(b.sync(prefix=NO_DAC), "ermission denied")  # a second try: still nothing lost
        assert tree_of(b.folder) == here
        assert cloud(a) == {"inbox": "DIR", "inbox/old.txt": b"old", "inbox/new.txt": b"new"}
    finally:
        (b.folder / "inbox").chmod(0o755)
    b.synced()
    assert sorted(tree_of(b.folder)) == ["inbox", "inbox/new.txt.tandem", "inbox/old.txt.tandem"]
    assert cloud(a) == {"inbox": "DIR", "inbox/old.txt": b"old", "inbox/new.txt": b"new"}
