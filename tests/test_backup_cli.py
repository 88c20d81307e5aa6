"""Backups through the real CLI against a real server: round trips, older snapshots, dedup,
changed chunks only, unreadable files, refusals, and the server holding no plaintext."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.conftest import RunningServer, stop_server
from tests.helpers_api import data_files
from tests.sync_helpers import NO_DAC, Device, link_devices, one_error_line, tree_of, write
from tests.test_zero_knowledge import encodings

MIB = 1024 * 1024
#: An mtime well in the past: the scanner's racily-clean rule re-reads files written within
#: its timestamp tick of the last read, which would blur "an unchanged file is not read".
OLD = 1_600_000_000


def device_with_folder(server: RunningServer, tmp_path: Path) -> Device:
    return link_devices(server, tmp_path, 1)[0]


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def counts(result: subprocess.CompletedProcess[str]) -> tuple[int, int, int]:
    """(files read, chunks sent, bytes sent) from a run's summary line."""
    found = re.search(r"(\d+) file\(s\) read, (\d+) chunk\(s\) \((\d+) bytes\) sent", result.stdout)
    assert found, result.stdout + result.stderr
    return int(found[1]), int(found[2]), int(found[3])


def snapshots(device: Device) -> list[dict[str, Any]]:
    listed = json.loads(ok(device.run("backup", "list", "--json")).stdout)
    return [s for b in listed["backups"] for s in b["snapshots"]]


def age(folder: Path) -> None:
    for path in folder.rglob("*"):
        os.utime(path, (OLD, OLD))


def sample_tree(folder: Path) -> None:
    write(folder, "notes.txt", "hello\n")
    write(folder, "docs/ünïcode näme.md", "# title\n" * 100)
    write(folder, "docs/deep/empty.bin", b"")
    write(folder, "big/random.bin", os.urandom(3 * MIB + 12345))
    (folder / "empty folder").mkdir()


def test_back_up_delete_originals_back_up_again_restore(server: RunningServer, tmp_path: Path) -> None:
    device = device_with_folder(server, tmp_path)
    sample_tree(device.folder)
    original = tree_of(device.folder)
    ok(device.run("backup", "add", str(device.folder)))
    ok(device.run("backup", "run"))
    for child in device.folder.iterdir():
        subprocess.run(["rm", "-rf", str(child)], check=True)
    ok(device.run("backup", "run", str(device.folder)))
    first, latest = snapshots(device)
    assert (first["files"], latest["files"]) == (4, 0)

    ok(device.run("backup", "restore", str(device.folder), "--snapshot", first["id"][:8],
                  "--to", str(tmp_path / "whole")))
    assert tree_of(tmp_path / "whole") == original
    # The latest snapshot lacks the folder: --path finds it in the older one.
    ok(device.run("backup", "restore", str(device.folder), "--path", "docs", "--to",
                  str(tmp_path / "one")))
    assert tree_of(tmp_path / "one") == {k: v for k, v in original.items() if k.startswith("docs")}
    ok(device.run("backup", "restore", str(device.folder), "--path",
                  str(device.folder / "big/random.bin"), "--to", str(tmp_path / "file")))
    assert tree_of(tmp_path / "file") == {"random.bin": original["big/random.bin"]}
    assert ok(device.run("backup", "restore", str(device.folder), "--to",
                         str(tmp_path / "empty"))).stdout.startswith("Restored 0 file(s)")


def test_restore_one_file_from_an_older_snapshot(server: RunningServer, tmp_path: Path) -> None:
    device = device_with_folder(server, tmp_path)
    write(device.folder, "report.txt", "first draft\n")
    ok(device.run("backup", "add", str(device.folder)))
    ok(device.run("backup", "run"))
    write(device.folder, "report.txt", "second draft, longer\n")
    ok(device.run("backup", "run"))
    first, _ = snapshots(device)
    ok(device.run("backup", "restore", str(device.folder), "--snapshot", first["id"],
                  "--path", "report.txt", "--to", str(tmp_path / "old")))
    assert (tmp_path / "old/report.txt").read_text() == "first draft\n"
    ok(device.run("backup", "restore", str(device.folder), "--path", "report.txt",
                  "--to", str(tmp_path / "new")))
    assert (tmp_path / "new/report.txt").read_text() == "second draft, longer\n"
    # Never over an existing file without --overwrite; nothing is written when refused.
    line = one_error_line(device.run("backup", "restore", str(device.folder), "--snapshot",
                                     first["id"], "--to", str(tmp_path / "new")))
    assert "report.txt exists" in line and "--overwrite" in line
    assert (tmp_path / "new/report.txt").read_text() == "second draft, longer\n"
    ok(device.run("backup", "restore", str(device.folder), "--snapshot", first["id"],
                  "--to", str(tmp_path / "new"), "--overwrite"))
    assert (tmp_path / "new/report.txt").read_text() == "first draft\n"


def test_unchanged_folder_uploads_nothing_and_changed_file_only_its_chunks(
        server: RunningServer, tmp_path: Path) -> None:
    device = device_with_folder(server, tmp_path)
    for index in range(5):
        write(device.folder, f"part{index}.bin", os.urandom(10 * MIB))
    age(device.folder)
    ok(device.run("backup", "add", str(device.folder)))
    read, sent, sent_bytes = counts(ok(device.run("backup", "run")))
    assert read == 5 and sent_bytes > 50 * MIB
    # An unchanged 50 MiB folder: nothing read, nothing sent (the document is the same chunk).
    assert counts(ok(device.run("backup", "run"))) == (0, 0, 0)
    with open(device.folder / "part2.bin", "r+b") as handle:
        handle.seek(5 * MIB)
        handle.write(os.urandom(4096))
    read, sent, sent_bytes = counts(ok(device.run("backup", "run")))
    assert read == 1 and 1 <= sent <= 3 and sent_bytes < 9 * MIB, (sent, sent_bytes)
    ok(device.run("backup", "restore", str(device.folder), "--to", str(tmp_path / "out")))
    assert tree_of(tmp_path / "out") == tree_of(device.folder)


def test_unreadable_file_is_reported_and_the_rest_is_saved(server: RunningServer,
                                                           tmp_path: Path) -> None:
    device = device_with_folder(server, tmp_path)
    write(device.folder, "fine.txt", "fine")
    secret = write(device.folder, "locked.txt", "locked")
    secret.chmod(0)
    ok(device.run("backup", "add", str(device.folder)))
    result = device.run("backup", "run", prefix=NO_DAC)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "locked.txt: cannot read" in result.stderr
    assert [s["files"] for s in snapshots(device)] == [1]
    ok(device.run("backup", "restore", str(device.folder), "--to", str(tmp_path / "out")))
    assert tree_of(tmp_path / "out") == {"fine.txt": b"fine"}


def test_usage_and_refusals(server: RunningServer, tmp_path: Path) -> None:
    device = device_with_folder(server, tmp_path)
    write(device.folder, "a.txt", "a")
    assert device.run("backup", "add", str(device.folder), "--every", "5x").returncode == 2
    assert device.run("backup", "restore", str(device.folder)).returncode == 2
    assert "not backed up" in one_error_line(device.run("backup", "run", str(device.folder)))
    assert "nothing to back up" in one_error_line(device.run("backup", "run"))
    ok(device.run("backup", "add", str(device.folder), "--every", "6h"))
    assert "no snapshot yet" in one_error_line(
        device.run("backup", "restore", str(device.folder), "--to", str(tmp_path / "out")))
    ok(device.run("backup", "run"))
    assert "not in any snapshot" in one_error_line(device.run(
        "backup", "restore", str(device.folder), "--path", "nope.txt", "--to", str(tmp_path / "o")))
    assert "not inside" in one_error_line(device.run(
        "backup", "restore", str(device.folder), "--path", "../x", "--to", str(tmp_path / "o")))
    assert "is not a snapshot" in one_error_line(device.run(
        "backup", "restore", str(device.folder), "--snapshot", "ffff", "--to", str(tmp_path / "o")))
    # Removing stops the runs; the snapshots stay restorable.
    ok(device.run("backup", "remove", str(device.folder)))
    assert "nothing to back up" in one_error_line(device.run("backup", "run"))
    ok(device.run("backup", "restore", str(device.folder), "--to", str(tmp_path / "kept")))
    assert tree_of(tmp_path / "kept") == {"a.txt": b"a"}
    listed = json.loads(ok(device.run("backup", "list", "--json")).stdout)["backups"]
    assert listed[0]["removed"] is True and len(listed[0]["snapshots"]) == 1


NAME_MARKER = "MARKER-NAME-b4c2"
CONTENT_MARKER = "MARKER-CONTENT-e8d1"


def test_server_holds_no_plaintext_of_backups(server: RunningServer, tmp_path: Path) -> None:
    device = device_with_folder(server, tmp_path)
    folder = tmp_path / f"backed up {NAME_MARKER}"
    write(folder, f"{NAME_MARKER}/{NAME_MARKER}.txt", CONTENT_MARKER * 10)
    write(folder, f"big {NAME_MARKER}.bin", os.urandom(64) + (CONTENT_MARKER * 40000).encode())
    ok(device.run("backup", "add", str(folder)))
    ok(device.run("backup", "run"))
    ok(device.run("backup", "run"))
    stop_server(server)
    needles = {**{f"name {k}": v for k, v in encodings(NAME_MARKER).items()},
               **{f"content {k}": v for k, v in encodings(CONTENT_MARKER).items()}}
    files = data_files(server.data_dir)
    assert any(p.name == "meta.db" for p in files)
    leaks = [(str(p.relative_to(server.data_dir)), form)
             for p in files for form, needle in needles.items() if needle in p.read_bytes()]
    assert leaks == []
