"""Atomic durable writes: files appear only whole, under their name, never over another."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tandem.fileio import link_unnamed, write_atomically, write_batch_atomically, write_unnamed


def test_an_unnamed_file_appears_only_when_linked_whole_with_its_time(tmp_path: Path) -> None:
    fd = write_unnamed(tmp_path, b"content" * 1000, 0o640, mtime_ns=1_700_000_000_123_456_789)
    try:
        assert list(tmp_path.iterdir()) == []  # written, yet nowhere to be seen
        link_unnamed(fd, tmp_path / "file.bin")
    finally:
        os.close(fd)
    st = (tmp_path / "file.bin").stat()
    assert (tmp_path / "file.bin").read_bytes() == b"content" * 1000
    assert st.st_mtime_ns == 1_700_000_000_123_456_789
    assert st.st_mode & 0o777 == 0o640 & ~_umask()


def test_an_unnamed_file_never_replaces_a_name_taken_meanwhile(tmp_path: Path) -> None:
    (tmp_path / "taken.txt").write_bytes(b"the user's file")
    fd = write_unnamed(tmp_path, b"a download", 0o644)
    try:
        with pytest.raises(FileExistsError):
            link_unnamed(fd, tmp_path / "taken.txt")
    finally:
        os.close(fd)
    assert (tmp_path / "taken.txt").read_bytes() == b"the user's file"
    assert [p.name for p in tmp_path.iterdir()] == ["taken.txt"]  # nothing left behind


def test_an_unnamed_file_never_linked_leaves_nothing(tmp_path: Path) -> None:
    os.close(write_unnamed(tmp_path, b"x" * 100_000, 0o644))
    assert list(tmp_path.iterdir()) == []


def test_atomic_writes_replace_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_atomically(target, b"one")
    write_atomically(target, b"two", mode=0o600)
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600
    temp = tmp_path / "tmp"
    temp.mkdir()
    write_batch_atomically([(tmp_path / "b", b"bee"), (target, b"three")], temp)
    assert (tmp_path / "b").read_bytes() == b"bee" and target.read_bytes() == b"three"
    assert list(temp.iterdir()) == []


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current
