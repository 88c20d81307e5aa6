"""Files on demand through the CLI (issue 4, CLI.md `free`, `offline`, `open`, `status`): a real
server, two devices, real folders. Every rule is a named test; after each, the devices sync and
the cloud is checked from the other device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tandem.sync.placeholder import HEADER, MAX_NAME_BYTES
from tandem.sync.state import StateDB
from tests.conftest import RunningServer
from tests.helpers_api import serving
from tests.sync_helpers import (
    Device,
    daemons,
    link_devices,
    one_error_line,
    sync_all,
    transferred,
    tree_of,
    wait_until,
    write,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[RunningServer]:
    with serving(tmp_path_factory) as running:
        yield running


def _pair(server: RunningServer, tmp_path: Path, files: dict[str, bytes]) -> tuple[Device, Device]:
    a, b = link_devices(server, tmp_path)
    for relative, data in files.items():
        write(a.folder, relative, data)
    sync_all(a, b)
    return a, b


def _ok(device: Device, *args: str) -> str:
    result = device.run(*args)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result.stdout


def _status(device: Device, *paths: Path) -> dict[str, Any]:
    return json.loads(_ok(device, "status", "--json", *map(str, paths)))["paths"]  # type: ignore[no-any-return]


def test_free_leaves_a_small_placeholder_and_offline_brings_the_same_bytes_back(
        server: RunningServer, tmp_path: Path) -> None:
    content = os.urandom(3_000_000)
    a, b = _pair(server, tmp_path, {"docs/report.pdf": content, "docs/notes.txt": b"keep"})
    real, placeholder = b.folder / "docs/report.pdf", b.folder / "docs/report.pdf.tandem"

    _ok(b, "free", str(real))
    assert not real.exists()
    text = placeholder.read_bytes()
    assert text.startswith(HEADER) and len(text) < 1024
    assert b"report.pdf" in text and b"3,000,000 bytes" in text and b"tandem offline" in text
    assert _status(b, real, placeholder) == {
        str(real): {"state": "online-only", "file": "docs/report.pdf"},
        str(placeholder): {"state": "online-only", "file": "docs/report.pdf"}}
    sync_all(b, a, b)
    assert (a.folder / "docs/report.pdf").read_bytes() == content  # the cloud is untouched
    assert transferred(b.synced()) == (0, 0)

    _ok(b, "offline", str(placeholder))
    assert real.read_bytes() == content and not placeholder.exists()
    sync_all(b, a)
    assert tree_of(a.folder) == tree_of(b.folder)


def test_free_is_refused_for_local_changes_conflicts_and_outside_paths(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"a.txt": b"one", "c (conflicted copy, x, 2026-01-01 0000).txt":
                                    b"copy"})
    edited = write(b.folder, "a.txt", b"changed here, not uploaded")
    for path, words in [(edited, "not uploaded"),
                        (b.folder / "c (conflicted copy, x, 2026-01-01 0000).txt", "conflicted"),
                        (tmp_path / "elsewhere.txt", "not inside the sync folder")]:
        before = tree_of(b.folder)
        result = b.run("free", str(path))
        assert result.returncode == 1 and words in one_error_line(result), result.stderr
        assert tree_of(b.folder) == before
    b.synced()
    sync_all(a)
    assert (a.folder / "a.txt").read_bytes() == b"changed here, not uploaded"


def test_a_freed_folder_keeps_new_files_online_only_and_a_pinned_one_brings_them(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"photos/1.jpg": b"one" * 1000, "photos/sub/2.jpg": b"two"})
    _ok(b, "free", str(b.folder / "photos"))
    assert sorted(tree_of(b.folder / "photos")) == ["1.jpg.tandem", "sub", "sub/2.jpg.tandem"]

    write(a.folder, "photos/sub/3.jpg", b"three")
    sync_all(a, b)
    assert (b.folder / "photos/sub/3.jpg.tandem").read_bytes().startswith(HEADER)
    assert not (b.folder / "photos/sub/3.jpg").exists()

    _ok(b, "offline", str(b.folder / "photos"))
    write(a.folder, "photos/4.jpg", b"four")
    sync_all(a, b)
    assert tree_of(b.folder) == tree_of(a.folder)


def test_a_real_file_named_like_a_placeholder_is_an_ordinary_file(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"x.tandem": b"just a file", "x": b"the other one"})
    assert (b.folder / "x.tandem").read_bytes() == b"just a file"
    result = b.run("free", str(b.folder / "x"))  # its placeholder name is taken
    assert result.returncode == 1 and "in the way" in one_error_line(result)
    write(b.folder, "x.tandem", b"edited")
    sync_all(b, a)
    assert (a.folder / "x.tandem").read_bytes() == b"edited"
    assert (a.folder / "x").read_bytes() == b"the other one"


def test_a_long_name_gets_a_shortened_placeholder_and_comes_back_whole(
        server: RunningServer, tmp_path: Path) -> None:
    name = "é" * 120 + ".pdf"  # 244 bytes: with ".tandem" over the 255-byte limit
    a, b = _pair(server, tmp_path, {name: b"long"})
    _ok(b, "free", str(b.folder / name))
    [placeholder] = [p for p in b.folder.iterdir() if p.name != ".tandem"]
    assert len(placeholder.name.encode()) <= MAX_NAME_BYTES and placeholder.name.endswith(".tandem")
    assert f"Name:     {name}\n" in placeholder.read_text()  # the real name, not the short one
    _ok(b, "offline", str(placeholder))
    assert (b.folder / name).read_bytes() == b"long"
    sync_all(b, a)
    assert tree_of(a.folder) == tree_of(b.folder)


def test_renaming_moving_and_deleting_placeholders_act_on_the_cloud_files(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"r.bin": b"rename me", "m.bin": b"move me", "d.bin": b"delete me"})
    _ok(b, "free", str(b.folder / "r.bin"), str(b.folder / "m.bin"), str(b.folder / "d.bin"))
    (b.folder / "r.bin.tandem").rename(b.folder / "renamed.bin.tandem")
    (b.folder / "inner").mkdir()
    (b.folder / "m.bin.tandem").rename(b.folder / "inner/m.bin.tandem")
    (b.folder / "d.bin.tandem").unlink()
    sync_all(b, a)
    assert tree_of(a.folder) == {"renamed.bin": b"rename me", "inner": "DIR",
                                 "inner/m.bin": b"move me"}
    sent, _ = transferred(b.synced())
    assert sent == 0
    # The deleted one is in the trash, byte-identical.
    _ok(a, "trash", "restore", str(a.folder / "d.bin"))
    sync_all(a)
    assert (a.folder / "d.bin").read_bytes() == b"delete me"


def test_real_bytes_over_a_placeholder_upload_as_a_new_version_never_the_text(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"doc.txt": b"version one"})
    _ok(b, "free", str(b.folder / "doc.txt"))
    write(b.folder, "doc.txt.tandem", b"version two, copied over the placeholder")
    sync_all(b, a)
    assert (a.folder / "doc.txt").read_bytes() == b"version two, copied over the placeholder"
    assert (b.folder / "doc.txt").read_bytes() == b"version two, copied over the placeholder"
    assert not (b.folder / "doc.txt.tandem").exists()
    versions = json.loads(_ok(a, "versions", str(a.folder / "doc.txt"), "--json"))["versions"]
    assert len(versions) == 2


def test_placeholder_text_saved_again_is_never_uploaded(server: RunningServer,
                                                        tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"doc.txt": b"the content"})
    _ok(b, "free", str(b.folder / "doc.txt"))
    placeholder = b.folder / "doc.txt.tandem"
    placeholder.write_bytes(placeholder.read_bytes() + b"a note the user typed\n")
    sync_all(b, a, b)
    assert (a.folder / "doc.txt").read_bytes() == b"the content"
    assert _status(b, placeholder)[str(placeholder)]["state"] == "online-only"


def test_a_cloud_edit_updates_the_placeholder_and_downloads_nothing(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"big.bin": os.urandom(100_000)})
    _ok(b, "free", str(b.folder / "big.bin"))
    write(a.folder, "big.bin", os.urandom(250_000))
    a.synced()
    assert transferred(b.synced()) == (0, 0)
    assert b"250,000 bytes" in (b.folder / "big.bin.tandem").read_bytes()
    _ok(b, "offline", str(b.folder / "big.bin.tandem"))
    assert (b.folder / "big.bin").read_bytes() == (a.folder / "big.bin").read_bytes()


def test_a_placeholder_deleted_here_while_its_file_is_edited_elsewhere_comes_back(
        server: RunningServer, tmp_path: Path) -> None:
    """Edit beats delete for an online-only file too (found by the simulation, seed 1005):
    the placeholder is written anew, where before every pass retried and skipped it."""
    a, b = _pair(server, tmp_path, {"doc.txt": b"first"})
    _ok(b, "free", str(b.folder / "doc.txt"))
    (b.folder / "doc.txt.tandem").unlink()
    write(a.folder, "doc.txt", b"edited elsewhere")
    sync_all(a, b)
    assert (b.folder / "doc.txt.tandem").is_file()
    _ok(b, "check")
    _ok(b, "offline", str(b.folder / "doc.txt.tandem"))
    assert (b.folder / "doc.txt").read_bytes() == b"edited elsewhere"


def test_a_cloud_move_renames_the_placeholder_and_its_text_names_the_new_path(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"old.bin": b"moving", "sub/keep.txt": b"k"})
    _ok(b, "free", str(b.folder / "old.bin"))
    (a.folder / "old.bin").rename(a.folder / "sub/new.bin")
    a.synced()
    assert transferred(b.synced()) == (0, 0)
    assert not (b.folder / "old.bin.tandem").exists()
    text = (b.folder / "sub/new.bin.tandem").read_text()
    assert "Name:     new.bin\n" in text and "old.bin" not in text
    command = next(line for line in text.splitlines() if "tandem offline" in line)
    assert str(b.folder.resolve() / "sub/new.bin") in command
    _ok(b, "offline", str(b.folder / "sub/new.bin"))
    assert (b.folder / "sub/new.bin").read_bytes() == b"moving"
    sync_all(b, a)
    assert tree_of(a.folder) == tree_of(b.folder)


def test_a_placeholder_that_cannot_be_made_deletes_nothing(server: RunningServer,
                                                           tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"inbox/old.txt": b"old"})
    _ok(b, "free", str(b.folder / "inbox"))
    write(b.folder, "inbox/new.txt.tandem", b"a real file in the way")
    write(a.folder, "inbox/new.txt", b"new")
    a.synced()
    result = b.sync()
    assert result.returncode == 1 and "in the way" in result.stderr
    sync_all(a)
    assert (a.folder / "inbox/new.txt").read_bytes() == b"new"
    assert (a.folder / "inbox/new.txt.tandem").read_bytes() == b"a real file in the way"


def test_an_interrupted_offline_converges_with_nothing_deleted(server: RunningServer,
                                                               tmp_path: Path) -> None:
    """The state a kill -9 leaves between linking the file in and recording it: the file and
    its placeholder both there, the record still saying online-only. The real file wins."""
    a, b = _pair(server, tmp_path, {"f.bin": b"precious"})
    _ok(b, "free", str(b.folder / "f.bin"))
    write(b.folder, "f.bin", b"precious")
    sync_all(b, a, b)
    assert tree_of(b.folder) == {"f.bin": b"precious"} == tree_of(a.folder)
    state = StateDB(b.home / "state.db")
    try:
        assert state.placeholders() == {}
    finally:
        state.close()


def test_free_and_offline_go_through_a_running_daemon(server: RunningServer,
                                                      tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"v.bin": b"video" * 10_000})
    with daemons(b):
        wait_until(lambda: (b.home / "control.sock").exists(), timeout=30, what="the socket")
        _ok(b, "free", str(b.folder / "v.bin"))
        assert (b.folder / "v.bin.tandem").exists() and not (b.folder / "v.bin").exists()
        reply = json.loads(_ok(b, "status", "--json"))
        assert reply["daemon"] is True and reply["online_only"] == 1
        _ok(b, "offline", str(b.folder / "v.bin.tandem"))
        assert (b.folder / "v.bin").read_bytes() == b"video" * 10_000
    sync_all(a)
    assert tree_of(a.folder) == tree_of(b.folder)


def test_status_shows_a_large_upload_as_syncing_with_its_bytes_advancing(
        server: RunningServer, tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    big = a.folder / "big.bin"
    total = 192 * 1024 * 1024
    seen: list[dict[str, Any]] = []

    def advanced() -> bool:
        """Two readings of `syncing`, each with bytes done strictly between 0 and total."""
        state = _status(a, big)[str(big)]
        seen.append(state)
        partial = {s["bytes_done"] for s in seen
                   if s["state"] == "syncing" and 0 < s["bytes_done"] < total}
        return len(partial) >= 2

    with daemons(a):
        wait_until(lambda: (a.home / "control.sock").exists(), timeout=30, what="the socket")
        staged = tmp_path / "staged.bin"  # written outside, then moved in whole
        with open(staged, "wb") as handle:
            for _ in range(48):
                handle.write(os.urandom(4 * 1024 * 1024))
        staged.rename(big)
        wait_until(advanced, timeout=120, interval=0.01, what="upload progress in the status")
        assert seen[-1]["bytes_total"] == total
        wait_until(lambda: _status(a, big)[str(big)]["state"] == "synced", timeout=180,
                   interval=0.2, what="the upload to finish")
    b.synced()
    assert (b.folder / "big.bin").read_bytes() == big.read_bytes()


def test_status_names_each_state_with_its_detail(server: RunningServer, tmp_path: Path) -> None:
    a, b = _pair(server, tmp_path, {"synced.txt": b"s", "free.txt": b"f", "both.txt": b"v1"})
    _ok(b, "free", str(b.folder / "free.txt"))
    write(b.folder, ".tandemignore", "*.log\n")
    write(b.folder, "debug.log", b"ignored")
    write(a.folder, "both.txt", b"edited on a")
    a.synced()
    write(b.folder, "both.txt", b"edited on b")
    b.synced()  # the conflicted copy is made, and the new files are sent
    write(b.folder, "new.txt", b"not synced yet")
    copies = [p for p in b.folder.iterdir() if "(conflicted copy, " in p.name]
    states = _status(b, b.folder / "synced.txt", b.folder / "free.txt.tandem",
                     b.folder / "debug.log", copies[0], b.folder / "new.txt")
    assert states[str(b.folder / "synced.txt")] == {"state": "synced"}
    assert states[str(b.folder / "free.txt.tandem")]["state"] == "online-only"
    assert states[str(b.folder / "debug.log")] == {"state": "ignored", "reason": "*.log"}
    assert states[str(copies[0])]["state"] == "conflict"
    assert states[str(b.folder / "new.txt")] == {"state": "pending", "direction": "upload"}


def test_kill_9_of_the_daemon_during_a_free_deletes_nothing_and_converges(
        server: RunningServer, tmp_path: Path) -> None:
    files = {f"album/{i:03d}.jpg": os.urandom(2000 + i) for i in range(300)}
    a, b = _pair(server, tmp_path, files)
    env = {**os.environ, "TANDEM_HOME": str(b.home)}
    with daemons(b) as [daemon]:
        wait_until(lambda: (b.home / "control.sock").exists(), timeout=30, what="the socket")
        freeing = subprocess.Popen([sys.executable, "-m", "tandem", "free", str(b.folder / "album")],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: any(p.name.endswith(".tandem") for p in (b.folder / "album").iterdir()),
                       timeout=60, interval=0.005, what="the first placeholder")
            daemon.kill()
            daemon.wait(timeout=10)
        finally:
            freeing.wait(timeout=60)
    sync_all(b, a, b)
    assert tree_of(a.folder) == {"album": "DIR", **files}  # nothing deleted in the cloud
    for relative, data in files.items():  # each file is either here or a placeholder
        real, placeholder = b.folder / relative, b.folder / (relative + ".tandem")
        assert real.exists() != placeholder.exists(), relative
        assert not real.exists() or real.read_bytes() == data
    assert transferred(b.synced()) == (0, 0)
    _ok(b, "offline", str(b.folder / "album"))
    assert tree_of(b.folder) == tree_of(a.folder)
