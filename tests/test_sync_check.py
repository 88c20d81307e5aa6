"""`tandem check` end to end: real server, real folders, the real CLI; state DBs tampered with
to make the discrepancies a broken engine would leave."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from tests.conftest import RunningServer
from tests.sync_helpers import (
    Device,
    daemons,
    link_devices,
    one_error_line,
    sync_all,
    tree_of,
    wait_until,
    write,
)


def checked(device: Device, *args: str) -> dict[str, object]:
    result = device.run("check", "--json", *args)
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    document: dict[str, object] = json.loads(result.stdout)
    assert (result.returncode == 0) == document["consistent"], result.stdout
    return document


def kinds(document: dict[str, object]) -> list[tuple[str, str]]:
    return [(f["path"], f["kind"]) for f in document["findings"]]  # type: ignore[attr-defined, index]


def hide_edit(device: Device, relative: str, data: bytes) -> None:
    """Change a file's bytes (same size and mtime) and make the state DB's local record match
    the new stat with the old content: what a scanner that missed a write would leave."""
    path = device.folder / relative
    before = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    with sqlite3.connect(device.home / "state.db") as db:
        db.execute("UPDATE local_entries SET size = ?, mtime_ns = ?, ctime_ns = ?, inode = ?,"
                   " hashed_at_ns = ? WHERE path = ?",
                   (after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino,
                    time.time_ns() + 10**10, relative))


def test_clean_after_sync_and_pending_is_not_a_discrepancy(server: RunningServer,
                                                           tmp_path: Path) -> None:
    alpha, beta = link_devices(server, tmp_path)
    write(alpha.folder, "docs/a.txt", "one")
    write(alpha.folder, "b.bin", os.urandom(300_000))
    sync_all(alpha, beta, alpha)
    for device in (alpha, beta):
        result = device.run("check")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Consistent" in result.stdout
    # Not yet synced changes on both sides are waiting, not wrong.
    write(alpha.folder, "docs/a.txt", "two")
    write(beta.folder, "new.txt", "new")
    beta.synced()
    document = checked(alpha)
    assert document["consistent"] is True
    assert document["pending"] == ["docs/a.txt", "new.txt"]


def test_finds_an_unnoticed_edit_and_repairs_it(server: RunningServer, tmp_path: Path) -> None:
    alpha, beta = link_devices(server, tmp_path)
    write(alpha.folder, "docs/a.txt", "first")
    sync_all(alpha, beta)
    hide_edit(alpha, "docs/a.txt", b"FIRST")
    alpha.synced()  # the engine does not see it: nothing to do
    assert kinds(checked(alpha)) == [("docs/a.txt", "local_unnoticed")]
    assert checked(alpha, str(alpha.folder / "docs"))["consistent"] is False
    assert checked(alpha, str(alpha.folder / "other"))["consistent"] is True
    text = alpha.run("check")
    assert text.returncode == 1
    assert "docs/a.txt: its content differs from the synced version" in text.stdout
    assert "1 discrepancy found" in one_error_line(text)

    repaired = checked(alpha, "--repair")
    assert repaired["consistent"] is True and repaired["repaired"] == {"docs/a.txt": "rehash"}
    beta.synced()
    assert (beta.folder / "docs/a.txt").read_bytes() == b"FIRST"


def test_finds_cloud_changes_the_journal_skipped(server: RunningServer, tmp_path: Path) -> None:
    alpha, beta = link_devices(server, tmp_path)
    write(alpha.folder, "a.txt", "a")
    sync_all(alpha, beta)
    write(beta.folder, "b.txt", "from beta")
    write(beta.folder, "a.txt", "edited by beta")
    beta.synced()
    skip_journal(alpha, server)
    alpha.synced()
    assert "b.txt" not in tree_of(alpha.folder)
    assert kinds(checked(alpha)) == [("a.txt", "cloud_unnoticed"), ("b.txt", "cloud_unnoticed")]
    assert checked(alpha, "--repair")["consistent"] is True
    assert tree_of(alpha.folder) == tree_of(beta.folder)
    assert checked(beta)["consistent"] is True


def skip_journal(device: Device, server: RunningServer) -> None:
    """The device's cursor jumps to the server's: as if a page of the journal were lost."""
    cursor = device.account(server.url)["cursor"]
    with sqlite3.connect(device.home / "state.db") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'cursor'", (str(cursor),))


def test_finds_a_placeholder_whose_file_is_gone(server: RunningServer, tmp_path: Path) -> None:
    alpha, beta = link_devices(server, tmp_path)
    write(alpha.folder, "p.txt", "placeholder me")
    sync_all(alpha, beta)
    assert alpha.run("free", str(alpha.folder / "p.txt")).returncode == 0
    (beta.folder / "p.txt").unlink()
    beta.synced()
    skip_journal(alpha, server)
    alpha.synced()
    assert kinds(checked(alpha)) == [("p.txt", "placeholder_orphan")]
    assert checked(alpha, "--repair")["consistent"] is True
    assert tree_of(alpha.folder) == tree_of(beta.folder) == {}


def test_repair_goes_through_a_running_daemon(server: RunningServer, tmp_path: Path) -> None:
    alpha, beta = link_devices(server, tmp_path)
    write(alpha.folder, "a.txt", "first")
    sync_all(alpha, beta)
    hide_edit(alpha, "a.txt", b"FIRST")
    with daemons(alpha):
        wait_until(lambda: (alpha.home / "control.sock").exists(), timeout=30,
                   what="the daemon's control socket")
        assert kinds(checked(alpha)) == [("a.txt", "local_unnoticed")]
        # Through the daemon: taking the sync lock itself would fail while it runs.
        assert checked(alpha, "--repair")["consistent"] is True
    beta.synced()
    assert (beta.folder / "a.txt").read_bytes() == b"FIRST"


def test_without_a_folder_one_line(tmp_path: Path, server: RunningServer) -> None:
    (alpha,) = link_devices(server, tmp_path, count=1)
    assert "run `tandem sync` first" in one_error_line(alpha.run("check"))
