"""Backups restored from another device: the computer that made them is lost, a new device
linked to the account lists them and restores them byte-identical; a folder several devices
backed up is refused with its candidates; another account sees nothing; the server holds no
plaintext folder path. One server and one set of devices for the module: each test only reads.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.helpers_api import data_files, serving
from tests.sync_helpers import Device, link_devices, one_error_line, run_cli, tree_of, write
from tests.test_backup_cli import ok
from tests.test_zero_knowledge import encodings

NAME_MARKER = "MARKER-NAME-d07c"


@dataclass
class Lost:
    """alpha backed up its folder twice and `shared` once, then was lost (folder and
    TANDEM_HOME gone); gamma backed up `shared` too, later; beta is the new device."""

    server: RunningServer
    alpha_folder: Path
    shared: Path
    beta: Device
    gamma: Device
    first: dict[str, bytes | str]
    latest: dict[str, bytes | str]
    shared_by_alpha: dict[str, bytes | str]
    shared_by_gamma: dict[str, bytes | str]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with serving(tmp_path_factory) as running:
        yield running


def snapshots_of(device: Device, folder: Path, maker: str) -> list[dict[str, Any]]:
    """The snapshots of `maker`'s backup of `folder`, as `device` lists them, oldest first."""
    rows = json.loads(ok(device.run("backup", "list", "--all-devices", str(folder), "--json")).stdout)
    return [s for row in rows["backups"] if row["device_name"] == maker for s in row["snapshots"]]


@pytest.fixture(scope="module")
def lost(srv: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Lost:
    alpha, beta, gamma = link_devices(srv, tmp_path_factory.mktemp("devices"), 3)
    write(alpha.folder, "notes.txt", "first draft\n")
    write(alpha.folder, "photos/beach.jpg", os.urandom(300_000))
    write(alpha.folder, "docs/ünïcode näme.md", "# title\n" * 50)
    (alpha.folder / "empty folder").mkdir()
    shared = alpha.folder.parent / f"shared {NAME_MARKER}"
    write(shared, "plan.txt", "alpha's plan\n")
    ok(alpha.run("backup", "add", str(alpha.folder)))
    ok(alpha.run("backup", "add", str(shared)))
    ok(alpha.run("backup", "run"))
    first = tree_of(alpha.folder)
    shared_by_alpha = tree_of(shared)
    write(alpha.folder, "notes.txt", "second draft, longer\n")
    ok(alpha.run("backup", "run", str(alpha.folder)))
    latest = tree_of(alpha.folder)
    write(shared, "plan.txt", "gamma's plan\n")
    ok(gamma.run("backup", "add", str(shared)))
    ok(gamma.run("backup", "run"))
    shutil.rmtree(alpha.folder)
    shutil.rmtree(alpha.home)
    return Lost(srv, alpha.folder, shared, beta, gamma, first, latest, shared_by_alpha,
                tree_of(shared))


def test_a_new_device_lists_and_restores_a_lost_devices_backups(lost: Lost, tmp_path: Path) -> None:
    beta = lost.beta
    listed = json.loads(ok(beta.run("backup", "list", "--all-devices", "--json")).stdout)["backups"]
    assert sorted((b["folder"], b["device_name"], b["this_device"], len(b["snapshots"]))
                  for b in listed) == [(str(lost.alpha_folder), "alpha", False, 2),
                                       (str(lost.shared), "alpha", False, 1),
                                       (str(lost.shared), "gamma", False, 1)]
    assert f"{lost.alpha_folder} on alpha (2 snapshot(s)" in ok(
        beta.run("backup", "list", "--all-devices")).stdout
    # Collection with no grace keeps every chunk a snapshot references.
    assert httpx.post(f"{lost.server.url}/gc", timeout=30,
                      headers={"Authorization": f"Bearer {beta.token()}"}).status_code == 200

    done = ok(beta.run("backup", "restore", str(lost.alpha_folder), "--to", str(tmp_path / "all")))
    assert f"of {lost.alpha_folder} on alpha" in done.stdout
    assert tree_of(tmp_path / "all") == lost.latest
    first = snapshots_of(beta, lost.alpha_folder, "alpha")[0]
    ok(beta.run("backup", "restore", str(lost.alpha_folder), "--device", "alpha", "--snapshot",
                first["id"][:8], "--path", "notes.txt", "--to", str(tmp_path / "old")))
    assert tree_of(tmp_path / "old") == {"notes.txt": lost.first["notes.txt"]}
    ok(beta.run("backup", "restore", str(lost.alpha_folder), "--path", "photos",
                "--to", str(tmp_path / "one")))
    assert tree_of(tmp_path / "one") == {k: v for k, v in lost.latest.items() if k.startswith("photos")}
    line = one_error_line(beta.run("backup", "restore", str(lost.alpha_folder), "--snapshot",
                                   first["id"], "--to", str(tmp_path / "all")))
    assert "exists" in line and "--overwrite" in line
    assert tree_of(tmp_path / "all") == lost.latest
    # Restoring another device's backup does not make it this device's: nothing to run here.
    assert not (beta.home / "backups" / "config.json").exists()
    assert json.loads(ok(beta.run("backup", "list", "--json")).stdout) == {"backups": []}
    assert "nothing to back up" in one_error_line(beta.run("backup", "run"))


def test_a_folder_several_devices_backed_up_needs_a_choice(lost: Lost, tmp_path: Path) -> None:
    beta, shared = lost.beta, str(lost.shared)
    line = one_error_line(beta.run("backup", "restore", shared, "--to", str(tmp_path / "x")))
    assert "2 backups" in line and "on alpha" in line and "on gamma" in line and "--device" in line
    assert not (tmp_path / "x").exists()
    ok(beta.run("backup", "restore", shared, "--device", "gamma", "--to", str(tmp_path / "g")))
    assert tree_of(tmp_path / "g") == lost.shared_by_gamma
    by_alpha = snapshots_of(beta, lost.shared, "alpha")[0]
    ok(beta.run("backup", "restore", shared, "--snapshot", by_alpha["id"][:10],
                "--to", str(tmp_path / "a")))
    assert tree_of(tmp_path / "a") == lost.shared_by_alpha
    # The device that has a backup of the folder gets its own, unasked.
    ok(lost.gamma.run("backup", "restore", shared, "--to", str(tmp_path / "own")))
    assert tree_of(tmp_path / "own") == lost.shared_by_gamma
    assert "no device called 'nobody'" in one_error_line(
        beta.run("backup", "restore", shared, "--device", "nobody", "--to", str(tmp_path / "n")))
    line = one_error_line(beta.run("backup", "restore", "/nowhere/else", "--to", str(tmp_path / "n")))
    assert "no backup of /nowhere/else" in line and str(lost.alpha_folder) in line
    assert "is not a snapshot" in one_error_line(beta.run(
        "backup", "restore", shared, "--snapshot", "ffffffff", "--to", str(tmp_path / "n")))


def test_another_account_sees_none_of_them(lost: Lost, tmp_path: Path) -> None:
    home = tmp_path / "home-mallory"
    assert run_cli(home, "signup", lost.server.url, "mallory@example.org", "--password-stdin",
                   stdin="another password\n").returncode == 0
    assert json.loads(ok(run_cli(home, "backup", "list", "--all-devices", "--json")).stdout) == {
        "backups": []}
    line = one_error_line(run_cli(home, "backup", "restore", str(lost.alpha_folder),
                                  "--to", str(tmp_path / "out")))
    assert "no backup of" in line and "has no backup" in line


def test_without_a_label_that_opens_the_folder_is_read_from_the_document(
        lost: Lost, tmp_path: Path) -> None:
    """Snapshots of an older client carry no label, and a label moved to another backup does
    not open (its backup id is bound to it): the newest snapshot's document names the folder."""

    def folders() -> list[tuple[str, str, int]]:
        rows = json.loads(ok(lost.beta.run("backup", "list", "--all-devices", "--json")).stdout)
        return sorted((b["folder"], b["device_name"], len(b["snapshots"])) for b in rows["backups"])

    before = folders()
    with closing(sqlite3.connect(lost.server.data_dir / "meta.db", timeout=30)) as db:
        saved = db.execute("SELECT id, backup_id, label FROM snapshots ORDER BY backup_id").fetchall()
        with db:
            db.execute("UPDATE snapshots SET label = ? WHERE backup_id <> ?",
                       (saved[0][2], saved[0][1]))
            db.execute("UPDATE snapshots SET label = NULL WHERE backup_id = ?", (saved[0][1],))
        try:
            assert folders() == before
            ok(lost.beta.run("backup", "restore", str(lost.shared), "--device", "gamma",
                             "--to", str(tmp_path / "g")))
            assert tree_of(tmp_path / "g") == lost.shared_by_gamma
        finally:
            with db:
                db.executemany("UPDATE snapshots SET label = ? WHERE id = ?",
                               [(label, snapshot_id) for snapshot_id, _, label in saved])


def test_the_server_holds_no_plaintext_folder_path(lost: Lost) -> None:
    labels = httpx.get(f"{lost.server.url}/backups", timeout=30,
                       headers={"Authorization": f"Bearer {lost.beta.token()}"}).json()["backups"]
    assert len(labels) == 3 and all(b["label"] for b in labels)
    files = data_files(lost.server.data_dir)
    assert any(b"gamma" in p.read_bytes() for p in files if p.name.startswith("meta.db"))
    needles = {f"{what} {form}": needle
               for what, text in (("marker", NAME_MARKER), ("path", str(lost.alpha_folder)))
               for form, needle in encodings(text).items()}
    leaks = [(p.name, form) for p in files for form, needle in needles.items()
             if needle in p.read_bytes()]
    assert leaks == []
