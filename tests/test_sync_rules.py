"""Two-way sync rules, end to end: real server, two or three clients, `tandem sync --once`.

Each test is one rule of the sync contract (DESIGN.md promises 1-3, CLI.md `tandem sync`),
driven only through the CLI and checked on the devices' folders and the server. Every rule
runs on the embedded server (SQLite, a blob folder) and again on the scale-out stack
(PostgreSQL, S3 on SeaweedFS).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.sync.state import StateDB
from tests.conftest import RunningServer, backend_args
from tests.helpers_api import serving
from tests.sync_helpers import (
    blob_bytes,
    changes_applied,
    link_devices,
    sync_all,
    transferred,
    tree_of,
    write,
)

CONFLICT = re.compile(r"^doc \(conflicted copy, beta, \d{4}-\d{2}-\d{2} \d{4}\)\.txt$")


@pytest.fixture(scope="module", params=["sqlite", "postgresql+s3"])
def server(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[RunningServer]:
    """One server per backend for the module; every test signs up its own account on it."""
    with serving(tmp_path_factory, *backend_args(request, request.param)) as running:
        yield running


def test_first_sync_copies_everything_from_a_to_b(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "notes.txt", "hello\n")
    write(a.folder, "docs/2024/report.md", "# report\n" * 100)
    write(a.folder, "docs/empty.txt", b"")
    write(a.folder, "big.bin", os.urandom(3 * 1024 * 1024))
    (a.folder / "empty-folder").mkdir()
    (a.folder / "docs/empty-nested/deeper").mkdir(parents=True)
    before = tree_of(a.folder)

    sync_all(a, b)

    assert tree_of(b.folder) == before
    assert tree_of(a.folder) == before
    assert changes_applied(a.synced()) == 0 and changes_applied(b.synced()) == 0


def test_concurrent_edits_keep_both_as_a_conflicted_copy(server: RunningServer,
                                                         tmp_path: Path) -> None:
    a, b, c = link_devices(server, tmp_path, 3)
    write(a.folder, "doc.txt", "base\n")
    sync_all(a, b, c)
    write(a.folder, "doc.txt", "edited on alpha\n")
    write(b.folder, "doc.txt", "edited on beta, longer\n")

    a.synced()
    b_result = b.synced()
    assert "conflict" in b_result.stdout
    sync_all(c, a)

    for device in (a, b, c):
        tree = tree_of(device.folder)
        assert tree["doc.txt"] == b"edited on alpha\n", device.name
        copies = [name for name in tree if name != "doc.txt"]
        assert len(copies) == 1 and CONFLICT.match(copies[0]), (device.name, copies)
        assert tree[copies[0]] == b"edited on beta, longer\n"


def test_identical_edits_on_both_sides_are_no_conflict(server: RunningServer,
                                                       tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "doc.txt", "base\n")
    sync_all(a, b)
    write(a.folder, "doc.txt", "same edit\n")
    write(b.folder, "doc.txt", "same edit\n")

    sync_all(a, b)

    assert tree_of(a.folder) == tree_of(b.folder) == {"doc.txt": b"same edit\n"}


@pytest.mark.parametrize("first", ["deleter", "editor"])
def test_edit_beats_delete(server: RunningServer, tmp_path: Path, first: str) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "keep/doc.txt", "base\n")
    sync_all(a, b)
    (a.folder / "keep/doc.txt").unlink()
    write(b.folder, "keep/doc.txt", "edited while deleted elsewhere\n")

    one, other = (a, b) if first == "deleter" else (b, a)
    sync_all(one, other, one)

    expected = {"keep": "DIR", "keep/doc.txt": b"edited while deleted elsewhere\n"}
    assert tree_of(a.folder) == tree_of(b.folder) == expected


@pytest.mark.parametrize("first", ["deleter", "adder"])
def test_file_added_in_a_folder_deleted_elsewhere_survives(server: RunningServer,
                                                          tmp_path: Path, first: str) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "proj/sub/old.txt", "old\n")
    write(a.folder, "other.txt", "other\n")
    sync_all(a, b)
    shutil.rmtree(a.folder / "proj")
    write(b.folder, "proj/sub/new.txt", "new, made while proj was deleted\n")

    one, other = (a, b) if first == "deleter" else (b, a)
    sync_all(one, other, one)

    for device in (a, b):
        tree = tree_of(device.folder)
        assert tree["proj"] == tree["proj/sub"] == "DIR", device.name
        assert tree["proj/sub/new.txt"] == b"new, made while proj was deleted\n", device.name
    assert tree_of(a.folder) == tree_of(b.folder)


def test_deleting_a_nested_folder_tree_propagates(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "old/report.txt", "report\n")
    write(a.folder, "old/sub/deeper/note.txt", "note\n")
    write(a.folder, "stays.txt", "stays\n")
    sync_all(a, b)

    shutil.rmtree(a.folder / "old")
    sync_all(a, b)

    assert tree_of(a.folder) == tree_of(b.folder) == {"stays.txt": b"stays\n"}


@pytest.mark.parametrize("first", ["renamer", "editor"])
def test_rename_and_edit_give_one_file_under_the_new_name(server: RunningServer,
                                                         tmp_path: Path, first: str) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "draft.txt", "version 1\n")
    sync_all(a, b)
    (a.folder / "draft.txt").rename(a.folder / "final.txt")
    write(b.folder, "draft.txt", "version 2, edited\n")

    one, other = (a, b) if first == "renamer" else (b, a)
    sync_all(one, other, one)  # both, then the first again

    expected = {"final.txt": b"version 2, edited\n"}
    assert tree_of(a.folder) == expected
    assert tree_of(b.folder) == expected


def test_folder_rename_propagates_as_a_move(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    for index in range(4):
        write(a.folder, f"photos/2024/img{index}.bin", os.urandom(256 * 1024))
    sync_all(a, b)
    used, stored = a.account(server.url)["used_bytes"], blob_bytes(server)
    inode_on_b = (b.folder / "photos/2024/img0.bin").stat().st_ino
    before = tree_of(a.folder)

    (a.folder / "photos").rename(a.folder / "pictures")
    moved_a = a.synced()
    moved_b = b.synced()

    expected = {k.replace("photos", "pictures", 1): v for k, v in before.items()}
    assert tree_of(a.folder) == tree_of(b.folder) == expected
    assert (b.folder / "pictures/2024/img0.bin").stat().st_ino == inode_on_b, "downloaded again"
    assert changes_applied(moved_a) == 1 and changes_applied(moved_b) == 1
    assert transferred(moved_a) == (0, 0) and transferred(moved_b) == (0, 0)
    assert a.account(server.url)["used_bytes"] == used and blob_bytes(server) == stored
    trash = json.loads(a.run("trash", "list", "--json").stdout)["trash"]
    assert trash == [], "the move went through the trash (deleted and created again)"


def test_case_only_rename_propagates(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "a.txt", "content\n")
    sync_all(a, b)
    (a.folder / "a.txt").rename(a.folder / "A.txt")

    sync_all(a, b)

    assert tree_of(a.folder) == tree_of(b.folder) == {"A.txt": b"content\n"}


def test_nfd_name_syncs_once_without_a_loop(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    nfd = unicodedata.normalize("NFD", "café.txt")
    assert nfd != "café.txt"
    write(a.folder, nfd, "accent\n")

    sync_all(a, b)

    names_b = [unicodedata.normalize("NFC", n) for n in tree_of(b.folder)]
    assert names_b == ["café.txt"]
    assert (b.folder / next(iter(tree_of(b.folder)))).read_bytes() == b"accent\n"
    assert changes_applied(a.synced()) == 0
    assert changes_applied(b.synced()) == 0
    assert list(tree_of(a.folder)) == [nfd], "the file on A was renamed or replaced"
    assert json.loads(a.run("trash", "list", "--json").stdout)["trash"] == []


def test_symlinks_are_neither_synced_nor_followed(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    outside = tmp_path / "outside"
    write(outside, "secret.txt", "not for the cloud\n")
    write(outside, "inner/deep.txt", "nor this\n")
    (a.folder / "link-to-file").symlink_to(outside / "secret.txt")
    (a.folder / "link-to-folder").symlink_to(outside)
    write(a.folder, "docs/real.txt", "synced\n")
    # B, before its first sync, has a symlink where the cloud will have a folder.
    (b.folder / "docs").symlink_to(outside)
    outside_before = tree_of(outside)

    a.synced()
    b.sync()
    a.synced()

    assert tree_of(outside) == outside_before, "written through a symlink"
    assert tree_of(b.folder) == {"docs": "LINK"}
    assert tree_of(a.folder) == {"docs": "DIR", "docs/real.txt": b"synced\n",
                                 "link-to-file": "LINK", "link-to-folder": "LINK"}
    assert (a.folder / "link-to-folder").resolve() == outside


def test_a_synced_folder_replaced_by_a_symlink_is_not_deleted_in_the_cloud(
        server: RunningServer, tmp_path: Path) -> None:
    """A symlink is not synced (the scanner reports it as ignored): putting one where a synced
    folder was is not evidence that the user deleted the folder (promise 2)."""
    a, b = link_devices(server, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    write(a.folder, "docs/real.txt", "synced\n")
    sync_all(a, b)

    shutil.rmtree(b.folder / "docs")
    (b.folder / "docs").symlink_to(outside)
    b.sync()
    a.synced()

    assert tree_of(a.folder) == {"docs": "DIR", "docs/real.txt": b"synced\n"}
    assert tree_of(outside) == {}


def test_mtime_only_change_uploads_nothing(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    path = write(a.folder, "same.bin", os.urandom(200_000))
    sync_all(a, b)
    used = a.account(server.url)["used_bytes"]
    st = path.stat()

    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 3_600_000_000_000))
    assert transferred(a.synced()) == (0, 0)
    assert transferred(b.synced()) == (0, 0)

    assert a.account(server.url)["used_bytes"] == used
    listed = json.loads(a.run("versions", str(path), "--json").stdout)["versions"]
    assert len(listed) == 1, listed
    assert tree_of(a.folder) == tree_of(b.folder)


def test_same_size_edit_with_the_old_mtime_is_detected(server: RunningServer,
                                                       tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    path = write(a.folder, "racy.txt", "aaaa")
    sync_all(a, b)
    st = path.stat()

    path.write_bytes(b"bbbb")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size
    a.synced()
    b.synced()

    assert (b.folder / "racy.txt").read_bytes() == b"bbbb"


def test_empty_files_and_folders_sync_both_ways(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    (a.folder / "empty/nested/twice").mkdir(parents=True)
    write(a.folder, "empty.txt", b"")
    write(b.folder, "from-b/empty.dat", b"")
    (b.folder / "from-b/hollow").mkdir()

    sync_all(a, b, a)
    assert tree_of(a.folder) == tree_of(b.folder) == {
        "empty": "DIR", "empty/nested": "DIR", "empty/nested/twice": "DIR", "empty.txt": b"",
        "from-b": "DIR", "from-b/empty.dat": b"", "from-b/hollow": "DIR"}

    (a.folder / "empty/nested/twice").rmdir()
    (b.folder / "from-b/hollow").rmdir()
    sync_all(a, b, a)
    assert "empty/nested/twice" not in tree_of(b.folder)
    assert "from-b/hollow" not in tree_of(a.folder)
    assert tree_of(a.folder) == tree_of(b.folder)


def test_deep_tree_and_wide_folder_sync(server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    deep = "/".join(f"level{n:02d}" for n in range(50))
    write(a.folder, f"{deep}/bottom.txt", "at the bottom\n")
    wide = a.folder / "wide"
    wide.mkdir()
    for index in range(2000):
        (wide / f"f{index:04d}.txt").write_bytes(f"file {index}\n".encode())
    before = tree_of(a.folder)

    sync_all(a, b)

    assert tree_of(b.folder) == before
    assert changes_applied(b.synced()) == 0


def test_a_downloaded_file_is_known_without_reading_it_and_its_later_edit_is_seen(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    write(a.folder, "docs/report.txt", "version one")
    sync_all(a, b)
    state = StateDB(b.home / "state.db")
    try:
        local, synced = state.local_tree(), state.synced_tree()
    finally:
        state.close()
    # Recorded as the download placed it: the next scan need not read it again.
    assert local["docs/report.txt"].content == synced["docs/report.txt"].content is not None

    # Edited in place on B, same size, old mtime put back: the stat still differs (ctime).
    path = b.folder / "docs" / "report.txt"
    st = path.stat()
    path.write_bytes(b"version two")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    sync_all(b, a)
    assert (a.folder / "docs" / "report.txt").read_bytes() == b"version two"


def test_an_edit_inside_a_large_file_moves_only_the_changed_chunks_both_ways(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    size = 12 * 1024 * 1024
    path = write(a.folder, "big.bin", os.urandom(size))
    sync_all(a, b)

    with open(path, "r+b") as handle:
        handle.seek(size // 2)
        handle.write(os.urandom(4096))
    sent, _ = transferred(a.synced())
    _, received = transferred(b.synced())
    # The 4 KiB land in one chunk (at most 4 MiB): the rest is copied from the old file.
    assert 0 < sent <= 4 * 1024 * 1024 + 1024
    assert 0 < received <= 4 * 1024 * 1024 + 1024
    assert (b.folder / "big.bin").read_bytes() == path.read_bytes()
