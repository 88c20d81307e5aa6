"""`tandem versions`, `tandem restore` and `tandem trash` on synced folders (CLI.md "History"),
with a real server and two devices; every effect is checked after the devices sync."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer
from tests.helpers_api import serving
from tests.sync_helpers import (
    Device,
    changes_applied,
    link_devices,
    one_error_line,
    sync_all,
    tree_of,
    write,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[RunningServer]:
    """One server for the module; every test signs up its own account on it."""
    with serving(tmp_path_factory) as running:
        yield running


def _three_versions(server: RunningServer, tmp_path: Path) -> tuple[Device, Device, list[bytes]]:
    a, b = link_devices(server, tmp_path)
    contents = [b"first version\n", b"second version, longer\n", b"third\n"]
    for content in contents:
        write(a.folder, "notes/plan.txt", content)
        a.synced()
    b.synced()
    return a, b, contents


def _versions(device: Device, path: Path) -> list[dict[str, Any]]:
    listed = device.run("versions", str(path), "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    return list(document["versions"])


def _trash(device: Device) -> list[dict[str, Any]]:
    listed = device.run("trash", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout)["trash"])


def test_versions_lists_every_edit_newest_first(server: RunningServer, tmp_path: Path) -> None:
    a, b, contents = _three_versions(server, tmp_path)
    path = a.folder / "notes/plan.txt"

    listed = a.run("versions", str(path), "--json")
    assert listed.returncode == 0, listed.stderr
    document = json.loads(listed.stdout)
    assert document["path"] == "notes/plan.txt"
    versions = document["versions"]
    assert [v["number"] for v in versions] == [3, 2, 1]
    assert [v["size"] for v in versions] == [len(c) for c in reversed(contents)]
    for version in versions:
        assert isinstance(version["created_at"], int) and "manifest" not in version

    text = b.run("versions", str(b.folder / "notes/plan.txt"))
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stdout.splitlines() if line.strip()]
    assert len(lines) == 3 and "(current)" in lines[0]


def test_restore_a_version_syncs_to_every_device(server: RunningServer, tmp_path: Path) -> None:
    a, b, contents = _three_versions(server, tmp_path)

    restored = b.run("restore", str(b.folder / "notes/plan.txt"), "--version", "1")
    assert restored.returncode == 0, restored.stderr
    sync_all(a, b)

    assert (a.folder / "notes/plan.txt").read_bytes() == contents[0]
    assert (b.folder / "notes/plan.txt").read_bytes() == contents[0]
    assert _versions(a, a.folder / "notes/plan.txt")[0]["size"] == len(contents[0])


def test_restore_to_a_destination_changes_nothing_else(server: RunningServer,
                                                      tmp_path: Path) -> None:
    a, _, contents = _three_versions(server, tmp_path)
    before = tree_of(a.folder)
    destination = tmp_path / "elsewhere/plan-v1.txt"

    written = a.run("restore", str(a.folder / "notes/plan.txt"), "--version", "1",
                    "--to", str(destination))
    assert written.returncode == 0, written.stderr

    assert destination.read_bytes() == contents[0]
    assert tree_of(a.folder) == before
    assert changes_applied(a.synced()) == 0
    assert len(_versions(a, a.folder / "notes/plan.txt")) == 3
    again = a.run("restore", str(a.folder / "notes/plan.txt"), "--version", "1",
                  "--to", str(destination))
    assert "exists" in one_error_line(again)


def test_trash_lists_a_deleted_file_and_restore_brings_it_back(server: RunningServer,
                                                               tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    photo = os.urandom(300_000)
    write(a.folder, "docs/photo.jpg", photo)
    write(a.folder, "stays.txt", "stays\n")
    sync_all(a, b)
    everything = tree_of(a.folder)
    (a.folder / "docs/photo.jpg").unlink()
    sync_all(a, b)
    assert "docs/photo.jpg" not in tree_of(b.folder)

    (item,) = _trash(a)
    assert (item["path"], item["kind"], item["size"]) == ("docs/photo.jpg", "file", len(photo))
    result = a.run("trash", "restore", str(a.folder / "docs/photo.jpg"))
    assert result.returncode == 0, result.stderr
    sync_all(a, b)

    assert tree_of(a.folder) == tree_of(b.folder) == everything
    assert _trash(b) == []


def test_trash_restore_brings_back_a_deleted_folder_tree(server: RunningServer,
                                                         tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "old/report.pdf", os.urandom(50_000))
    write(a.folder, "old/sub/note.txt", "note\n")
    write(a.folder, "stays.txt", "stays\n")
    sync_all(a, b)
    everything = tree_of(a.folder)
    shutil.rmtree(a.folder / "old")
    sync_all(a, b)
    assert "old" not in tree_of(a.folder) and "old" not in tree_of(b.folder)

    trashed = _trash(a)
    assert [(item["path"], item["kind"]) for item in trashed] == [("old", "folder")]
    result = a.run("trash", "restore", str(a.folder / "old"))
    assert result.returncode == 0, result.stderr
    sync_all(a, b)

    assert tree_of(a.folder) == tree_of(b.folder) == everything


def test_restore_brings_back_a_deleted_file(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    content = os.urandom(70_000)
    write(a.folder, "keep/data.bin", content)
    sync_all(a, b)
    (b.folder / "keep/data.bin").unlink()
    sync_all(b, a)
    assert not (a.folder / "keep/data.bin").exists()

    result = a.run("restore", str(a.folder / "keep/data.bin"))
    assert result.returncode == 0, result.stderr
    sync_all(a, b)

    assert (a.folder / "keep/data.bin").read_bytes() == content
    assert (b.folder / "keep/data.bin").read_bytes() == content


def test_trash_empty_empties_it_for_good(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "one.txt", "one\n")
    write(a.folder, "two/three.txt", "three\n")
    sync_all(a, b)
    (a.folder / "one.txt").unlink()
    shutil.rmtree(a.folder / "two")
    a.synced()
    assert len(_trash(a)) == 2

    emptied = a.run("trash", "empty")
    assert emptied.returncode == 0, emptied.stderr
    assert _trash(a) == [] and _trash(b) == []
    gone = a.run("trash", "restore", str(a.folder / "one.txt"))
    assert "neither in the cloud nor in the trash" in one_error_line(gone)


def test_history_commands_refuse_a_path_outside_the_sync_folder(server: RunningServer,
                                                                tmp_path: Path) -> None:
    a, _ = link_devices(server, tmp_path)
    write(a.folder, "inside.txt", "inside\n")
    a.synced()
    outside = write(tmp_path, "outside.txt", "outside\n")

    for args in (("versions", str(outside)), ("restore", str(outside), "--version", "1"),
                 ("restore", str(outside), "--to", str(tmp_path / "copy.txt")),
                 ("trash", "restore", str(outside))):
        line = one_error_line(a.run(*args))
        assert "not inside the sync folder" in line, args
