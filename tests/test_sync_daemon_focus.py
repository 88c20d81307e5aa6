"""Daemons plan only where something changed (the watcher's folders, the journal's nodes):
moves, deletes and nested creates on one side still reach the other whole."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import RunningServer
from tests.sync_helpers import daemons, link_devices, sync_all, tree_of, wait_until, write


def test_daemons_carry_folder_renames_deletes_and_nested_creates(server: RunningServer,
                                                                  tmp_path: Path) -> None:
    a, b = link_devices(server, tmp_path)
    for top in ("keep", "move", "drop"):
        for i in range(5):
            write(a.folder, f"{top}/sub/f{i}.txt", f"{top} {i}\n")
    sync_all(a, b)
    with daemons(a, b) as running:
        def same() -> bool:
            for process, device in zip(running, (a, b), strict=True):
                assert process.poll() is None, f"{device.name} daemon died:\n{device.daemon_log()}"
            return tree_of(a.folder) == tree_of(b.folder)

        (b.folder / "move").rename(b.folder / "keep" / "moved")  # a folder moved into another
        wait_until(lambda: (a.folder / "keep/moved/sub/f0.txt").is_file() and same(),
                   what="beta's folder move on alpha")
        for path in sorted((b.folder / "drop").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (b.folder / "drop").rmdir()
        write(b.folder, "new/deep/er/file.txt", "nested\n")
        wait_until(lambda: not (a.folder / "drop").exists() and same(),
                   what="beta's delete and nested create on alpha")
        write(a.folder, "keep/moved/sub/f0.txt", "edited on alpha\n")
        wait_until(lambda: (b.folder / "keep/moved/sub/f0.txt").read_text() == "edited on alpha\n",
                   what="alpha's edit inside the moved folder on beta")
    assert tree_of(a.folder) == tree_of(b.folder)
    assert "drop" not in tree_of(a.folder) and tree_of(a.folder)["new/deep/er/file.txt"] == b"nested\n"
