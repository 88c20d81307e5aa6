"""The walk beside a backup run that counts what it will read (for the time left)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tandem.backup.estimate import bytes_to_read
from tandem.sync.ignore import IgnoreRules
from tandem.sync.scanner import scan


def _hash(path: Path) -> str:
    return f"content-of-{path.name}"


def test_counts_new_and_changed_files_not_unchanged_or_ignored(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "same.txt").write_bytes(b"x" * 100)
    (tmp_path / "docs" / "edited.txt").write_bytes(b"y" * 200)
    previous = scan(tmp_path, {}, _hash, IgnoreRules()).tree
    (tmp_path / "docs" / "edited.txt").write_bytes(b"z" * 250)
    (tmp_path / "new.bin").write_bytes(b"n" * 1000)
    (tmp_path / "skipped").mkdir()
    (tmp_path / "skipped" / "big.bin").write_bytes(b"s" * 5000)
    (tmp_path / "editor.swp").write_bytes(b"w" * 7000)  # ignored by the built-in rules
    os.symlink(tmp_path / "new.bin", tmp_path / "link")  # never followed
    rules = IgnoreRules(["skipped/"])
    assert bytes_to_read(str(tmp_path), previous, rules) == 250 + 1000
    assert bytes_to_read(str(tmp_path), {}, rules) == 100 + 250 + 1000


def test_stops_when_the_run_ends_first(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    stop = threading.Event()
    stop.set()
    assert bytes_to_read(str(tmp_path), {}, IgnoreRules(), stop) is None
