"""The scanner: what it hashes, what it ignores, and that no error ever reads as a deletion.

Tests run as root, where chmod does not deny anything: permission errors are simulated
through the hasher (files) and the injectable `list_dir` (folders).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tandem.core.chunking import MIN_CHUNK, chunk_bytes
from tandem.core.crypto import AccountKeys
from tandem.sync import scanner
from tandem.sync.ignore import IgnoreRules
from tandem.sync.model import EMPTY_CONTENT, LocalEntry, LocalTree, content_id
from tandem.sync.scanner import (
    FINE_RACY_WINDOW_NS,
    RACY_WINDOW_NS,
    FileChangedWhileReading,
    RootUnavailable,
    ScanResult,
    make_hasher,
    scan,
)

KEYS = AccountKeys(bytes(range(32)))
REAL_HASHER = make_hasher(KEYS)
SECOND = 1_000_000_000
ListDir = Callable[[str], AbstractContextManager[Iterator[os.DirEntry[str]]]]


LATER = time.time_ns() + 3600 * SECOND


def late() -> int:
    """A clock for scans long after the last write: nothing on disk is racily clean."""
    return LATER


def expected_content(data: bytes) -> str:
    return content_id((KEYS.chunk_id(chunk), len(chunk)) for chunk in chunk_bytes(data))


class Hasher:
    """The real hasher, counting calls by relative path; chosen paths raise instead."""

    def __init__(self, root: Path, failures: dict[str, Exception] | None = None) -> None:
        self.root = root
        self.failures = failures or {}
        self.calls: list[str] = []

    def __call__(self, path: Path) -> str:
        relative = path.relative_to(self.root).as_posix()
        self.calls.append(relative)
        if relative in self.failures:
            raise self.failures[relative]
        return REAL_HASHER(path)


def refusing(*folders: Path) -> ListDir:
    """`os.scandir`, except that listing one of `folders` is refused."""

    def list_dir(path: str) -> AbstractContextManager[Iterator[os.DirEntry[str]]]:
        if Path(path) in folders:
            raise PermissionError(13, "Permission denied", path)
        return os.scandir(path)

    return list_dir


def run(
    root: Path,
    previous: LocalTree | None = None,
    hasher: Hasher | None = None,
    subtrees: list[str] | None = None,
    now_ns: Callable[[], int] = late,
    list_dir: ListDir = os.scandir,
) -> ScanResult:
    return scan(
        root, previous or {}, hasher or Hasher(root), IgnoreRules.load(root), subtrees, now_ns, list_dir
    )


def write(path: Path, data: bytes | str = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "sync"
    write(folder / "a.txt", "alpha")
    write(folder / "empty.txt")
    write(folder / "docs/b.txt", "bravo")
    write(folder / "docs/deep/c.txt", "charlie")
    (folder / "empty-folder").mkdir()
    return folder


# ---- what a scan finds --------------------------------------------------------------------


def test_first_scan_finds_files_empty_files_and_empty_folders(root: Path) -> None:
    result = run(root)
    assert sorted(result.tree) == [
        "a.txt",
        "docs",
        "docs/b.txt",
        "docs/deep",
        "docs/deep/c.txt",
        "empty-folder",
        "empty.txt",
    ]
    assert result.problems == {} and result.ignored == {}
    a = result.tree["a.txt"]
    info = (root / "a.txt").stat()
    assert (a.kind, a.size, a.mtime_ns, a.ctime_ns, a.inode) == (
        "file",
        5,
        info.st_mtime_ns,
        info.st_ctime_ns,
        info.st_ino,
    )
    assert a.content == expected_content(b"alpha")
    assert result.tree["empty.txt"].content == EMPTY_CONTENT
    assert result.tree["empty-folder"] == LocalEntry("folder", inode=(root / "empty-folder").stat().st_ino)


def test_hashed_at_is_taken_just_before_reading(root: Path) -> None:
    events: list[str] = []

    def clock() -> int:
        events.append("clock")
        return 42

    def hasher(path: Path) -> str:
        events.append("read")
        return REAL_HASHER(path)

    result = scan(root, {}, hasher, IgnoreRules(), subtrees=["a.txt"], now_ns=clock)
    assert events == ["clock", "read"]
    assert result.tree["a.txt"].hashed_at_ns == 42


def test_unchanged_files_are_not_read_again(root: Path) -> None:
    first = run(root)
    hasher = Hasher(root)
    second = run(root, first.tree, hasher)
    assert hasher.calls == []
    assert second.tree == first.tree


def _change_size(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"!")


def _change_mtime_only(path: Path) -> None:
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns - 5 * SECOND))


def _change_ctime_only(path: Path) -> None:
    time.sleep(0.02)  # past the kernel's timestamp tick
    path.chmod(0o600)


def _same_size_edit_with_mtime_put_back(path: Path) -> None:
    info = path.stat()
    time.sleep(0.02)
    path.write_bytes(b"ALPHA")
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def _replace_by_rename(path: Path) -> None:
    info = path.stat()
    temp = write(path.with_name("temp"), path.read_bytes())
    os.utime(temp, ns=(info.st_atime_ns, info.st_mtime_ns))
    temp.replace(path)


@pytest.mark.parametrize(
    ("change", "content_after"),
    [
        (_change_size, b"alpha!"),
        (_change_mtime_only, b"alpha"),
        (_change_ctime_only, b"alpha"),
        (_same_size_edit_with_mtime_put_back, b"ALPHA"),
        (_replace_by_rename, b"alpha"),
    ],
)
def test_a_changed_stat_is_read_again(
    root: Path, change: Callable[[Path], None], content_after: bytes
) -> None:
    first = run(root)
    before = (root / "a.txt").stat()
    change(root / "a.txt")
    after = (root / "a.txt").stat()
    assert (before.st_ino, before.st_size, before.st_mtime_ns, before.st_ctime_ns) != (
        after.st_ino,
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
    )
    hasher = Hasher(root)
    second = run(root, first.tree, hasher)
    assert hasher.calls == ["a.txt"]
    entry = second.tree["a.txt"]
    assert entry.content == expected_content(content_after)
    assert (entry.inode, entry.size, entry.mtime_ns, entry.ctime_ns) == (
        after.st_ino,
        after.st_size,
        after.st_mtime_ns,
        after.st_ctime_ns,
    )


@pytest.mark.parametrize(
    ("hashed_after_last_write", "read_again"),
    [
        (-SECOND, True),
        (0, True),
        (FINE_RACY_WINDOW_NS, True),
        (FINE_RACY_WINDOW_NS + 1, False),
        (60 * SECOND, False),
    ],
)
def test_a_racily_clean_file_is_read_again(
    root: Path, hashed_after_last_write: int, read_again: bool
) -> None:
    # The stat is the same as recorded, but a write in the same clock tick as the hash
    # would not show in it: only the time of the hash can tell.
    info = (root / "a.txt").stat()
    last_write = info.st_mtime_ns
    recorded = LocalEntry(
        "file",
        info.st_size,
        info.st_mtime_ns,
        info.st_ctime_ns,
        info.st_ino,
        content="stale",
        hashed_at_ns=last_write + hashed_after_last_write,
    )
    hasher = Hasher(root)
    result = run(root, {"a.txt": recorded}, hasher, subtrees=["a.txt"])
    assert hasher.calls == (["a.txt"] if read_again else [])
    assert result.tree["a.txt"].content == (expected_content(b"alpha") if read_again else "stale")


@pytest.mark.parametrize(
    ("mtime_ns", "ctime_ns", "window"),
    [
        (5 * SECOND, 7 * SECOND, RACY_WINDOW_NS),  # whole-second timestamps: a coarse filesystem
        (5 * SECOND + 1, 7 * SECOND, FINE_RACY_WINDOW_NS),
        (5 * SECOND, 7 * SECOND + 123, FINE_RACY_WINDOW_NS),
    ],
)
def test_the_racy_window_follows_the_timestamp_granularity(
    mtime_ns: int, ctime_ns: int, window: int
) -> None:
    assert scanner._racy_window(LocalEntry("file", mtime_ns=mtime_ns, ctime_ns=ctime_ns)) == window


def test_a_file_with_an_old_mtime_is_not_read_again_right_after_its_hash(root: Path) -> None:
    # A copy with its times kept (`cp -a`, a download): the ctime is now, the mtime old. A
    # later write would set the mtime to its own time, so the hash stays good (git's rule).
    hour_ago = time.time_ns() - 3600 * SECOND
    os.utime(root / "a.txt", ns=(hour_ago, hour_ago))
    first = run(root, now_ns=time.time_ns)
    hasher = Hasher(root)
    run(root, first.tree, hasher, now_ns=time.time_ns)
    assert "a.txt" not in hasher.calls


def test_files_of_a_renamed_folder_are_recognised_by_inode_without_reading(root: Path) -> None:
    first = run(root)
    (root / "docs").rename(root / "papers")
    hasher = Hasher(root)
    second = run(root, first.tree, hasher)
    assert hasher.calls == []
    assert second.tree["papers/deep/c.txt"].content == expected_content(b"charlie")


def test_a_new_file_on_a_reused_inode_is_read(root: Path) -> None:
    first = run(root)
    (root / "docs" / "b.txt").unlink()
    write(root / "docs" / "other.txt", "other")  # may take the freed inode; its stat differs
    hasher = Hasher(root)
    second = run(root, first.tree, hasher)
    assert hasher.calls == ["docs/other.txt"]
    assert second.tree["docs/other.txt"].content == expected_content(b"other")


def test_a_file_hashed_right_after_its_write_is_read_again_next_time(root: Path) -> None:
    first = run(root, now_ns=time.time_ns)
    hasher = Hasher(root)
    run(root, first.tree, hasher, now_ns=time.time_ns)
    assert "a.txt" in hasher.calls


# ---- what a scan leaves out ----------------------------------------------------------------


def test_symlinks_are_ignored_and_never_followed(root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "private.txt", "never read")
    (root / "to-outside").symlink_to(outside)
    (root / "to-file").symlink_to(root / "a.txt")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "docs" / "loop").symlink_to(root / "docs")
    listed: list[str] = []

    def list_dir(path: str) -> AbstractContextManager[Iterator[os.DirEntry[str]]]:
        listed.append(path)
        return os.scandir(path)

    hasher = Hasher(root)
    result = run(root, hasher=hasher, list_dir=list_dir)
    reason = "symbolic link (not synced)"
    assert result.ignored == {
        "to-outside": reason,
        "to-file": reason,
        "dangling": reason,
        "docs/loop": reason,
    }
    assert not set(result.tree) & set(result.ignored)
    assert all(not Path(p).is_relative_to(outside) for p in listed)
    assert sorted(hasher.calls) == ["a.txt", "docs/b.txt", "docs/deep/c.txt", "empty.txt"]


def test_pipes_and_sockets_are_ignored_without_opening_them(root: Path) -> None:
    os.mkfifo(root / "pipe")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "sock"))
        result = run(root)
    assert result.ignored == {"pipe": "named pipe (not synced)", "sock": "socket (not synced)"}
    assert "pipe" not in result.tree and "sock" not in result.tree


def test_ignore_rules_and_built_in_defaults(root: Path) -> None:
    write(root / ".tandemignore", "*.log\nbuild/\n")
    write(root / "app.log", "x")
    write(root / "docs/build/out.o", "x")
    write(root / ".tandem/state.db", "x")
    write(root / "docs/.b.txt.swp", "x")
    write(root / ".DS_Store", "x")
    result = run(root)
    assert ".tandemignore" in result.tree
    assert result.ignored == {
        "app.log": "*.log",
        "docs/build": "build/",
        ".tandem": "built-in: Tandem's state folder",
        "docs/.b.txt.swp": "built-in: editor swap file",
        ".DS_Store": "built-in: system metadata file",
    }
    assert not any(path.startswith(tuple(result.ignored)) for path in result.tree if path != ".tandemignore")


def test_ignored_folders_are_not_listed(root: Path) -> None:
    write(root / ".tandemignore", "node_modules/\n")
    write(root / "node_modules/pkg/index.js", "x")
    write(root / ".tandem/cache/blob", "x")
    result = run(root, list_dir=refusing(root / "node_modules", root / ".tandem"))
    assert result.problems == {}
    assert set(result.ignored) == {"node_modules", ".tandem"}


# ---- errors are never deletions -------------------------------------------------------------


def test_a_file_that_cannot_be_read_keeps_its_previous_entry(root: Path) -> None:
    first = run(root)
    write(root / "a.txt", "changed")
    write(root / "new.txt", "new")
    denied = PermissionError(13, "Permission denied")
    result = run(root, first.tree, Hasher(root, {"a.txt": denied, "new.txt": denied}))
    assert result.tree["a.txt"] == first.tree["a.txt"]
    assert "new.txt" not in result.tree
    assert result.problems == {
        "a.txt": "cannot read: Permission denied",
        "new.txt": "cannot read: Permission denied",
    }


def test_a_folder_that_cannot_be_listed_keeps_what_was_under_it(root: Path) -> None:
    first = run(root)
    shutil.rmtree(root / "docs" / "deep")
    write(root / "docs/new.txt", "new")
    result = run(root, first.tree, list_dir=refusing(root / "docs"))
    assert result.problems == {"docs": "cannot list folder: Permission denied"}
    assert result.tree == first.tree


def test_a_folder_first_seen_unlistable_is_present_and_empty(root: Path) -> None:
    result = run(root, list_dir=refusing(root / "docs"))
    assert result.tree["docs"].kind == "folder"
    assert not any(path.startswith("docs/") for path in result.tree)
    assert result.problems == {"docs": "cannot list folder: Permission denied"}


def test_a_folder_replacing_a_file_then_unlistable_keeps_nothing_invented(root: Path) -> None:
    first = run(root)
    (root / "a.txt").unlink()
    write(root / "a.txt/inner.txt", "x")
    result = run(root, first.tree, list_dir=refusing(root / "a.txt"))
    assert result.tree["a.txt"].kind == "folder"
    assert "a.txt/inner.txt" not in result.tree


def test_a_file_changed_while_read_keeps_its_previous_entry(root: Path) -> None:
    first = run(root)
    write(root / "a.txt", "edited")
    write(root / "new.txt", "new")

    def appending(path: Path) -> str:
        content = REAL_HASHER(path)
        with open(path, "ab") as handle:
            handle.write(b" more")
        return content

    result = scan(root, first.tree, appending, IgnoreRules(), ["a.txt", "new.txt"], late)
    assert result.tree["a.txt"] == first.tree["a.txt"]
    assert "new.txt" not in result.tree
    assert result.problems == {
        "a.txt": "changed while reading; will retry",
        "new.txt": "changed while reading; will retry",
    }


def test_a_hasher_reporting_a_change_keeps_the_previous_entry(root: Path) -> None:
    first = run(root)
    write(root / "a.txt", "edited")
    hasher = Hasher(root, {"a.txt": FileChangedWhileReading("moving")})
    result = run(root, first.tree, hasher)
    assert result.tree["a.txt"] == first.tree["a.txt"]
    assert result.problems == {"a.txt": "changed while reading; will retry"}


@pytest.mark.parametrize("make", ["missing", "file"])
def test_an_unavailable_root_stops_the_scan(tmp_path: Path, make: str) -> None:
    root = tmp_path / "sync"
    if make == "file":
        write(root, "not a folder")
    with pytest.raises(RootUnavailable, match="sync folder"):
        scan(root, {"a.txt": LocalEntry("file")}, REAL_HASHER, IgnoreRules())


@pytest.mark.parametrize("subtrees", [None, ["docs"]])
def test_an_unreadable_root_stops_the_scan(root: Path, subtrees: list[str] | None) -> None:
    with pytest.raises(RootUnavailable, match="cannot be read: Permission denied"):
        run(root, subtrees=subtrees, list_dir=refusing(root))


# ---- names -------------------------------------------------------------------------------------


def test_nfd_names_get_nfc_paths_and_keep_their_disk_name(root: Path) -> None:
    nfd_folder, nfd_file = "Re\u0301sume\u0301s", "cafe\u0301.txt"
    write(root / nfd_folder / nfd_file, "x")
    result = run(root)
    folder, file = result.tree["R\u00e9sum\u00e9s"], result.tree["R\u00e9sum\u00e9s/caf\u00e9.txt"]
    assert (folder.kind, folder.disk_name) == ("folder", nfd_folder)
    assert (file.disk_name, file.content) == (nfd_file, expected_content(b"x"))
    assert result.tree["a.txt"].disk_name is None


def test_two_names_equal_in_nfc_keep_one_and_report_the_other(root: Path) -> None:
    write(root / "cafe\u0301.txt", "decomposed")
    write(root / "caf\u00e9.txt", "composed")
    result = run(root)
    kept = result.tree["caf\u00e9.txt"]
    assert (kept.disk_name, kept.content) == (None, expected_content(b"composed"))
    assert list(result.problems) == ["cafe\u0301.txt"]
    assert "Unicode-normalised" in result.problems["cafe\u0301.txt"]


# ---- partial scans ---------------------------------------------------------------------------


def _add_file(root: Path) -> list[str]:
    write(root / "docs/new.txt", "new")
    return ["docs/new.txt"]


def _remove_file(root: Path) -> list[str]:
    (root / "docs/b.txt").unlink()
    return ["docs/b.txt"]


def _remove_folder(root: Path) -> list[str]:
    shutil.rmtree(root / "docs")
    return ["docs"]


def _remove_folder_report_a_child(root: Path) -> list[str]:
    shutil.rmtree(root / "docs")
    return ["docs/deep/c.txt"]


def _file_becomes_folder(root: Path) -> list[str]:
    (root / "a.txt").unlink()
    write(root / "a.txt/inner.txt", "inner")
    return ["a.txt"]


def _folder_becomes_file(root: Path) -> list[str]:
    shutil.rmtree(root / "docs")
    write(root / "docs", "now a file")
    return ["docs/b.txt"]


def _new_parents(root: Path) -> list[str]:
    write(root / "new/sub/f.txt", "f")
    write(root / "new/sibling.txt", "s")
    return ["new/sub/f.txt"]


def _edit_and_add_in_two_places(root: Path) -> list[str]:
    write(root / "docs/deep/c.txt", "changed")
    write(root / "empty-folder/x.txt", "x")
    return ["docs/deep", "empty-folder/x.txt", "docs/deep/c.txt"]


def _newly_ignored_folder(root: Path) -> list[str]:
    write(root / "docs/.tandemignore", "not read: only the root's file counts")
    write(root / ".tandemignore", "deep/\n")
    return ["docs/deep/c.txt", "docs/.tandemignore", ".tandemignore"]


def _folder_becomes_symlink(root: Path) -> list[str]:
    shutil.rmtree(root / "docs")
    (root / "docs").symlink_to(root / "empty-folder")
    return ["docs/b.txt"]


def _everything(root: Path) -> list[str]:
    (root / "a.txt").unlink()
    write(root / "z.txt", "z")
    return ["docs", ""]


@pytest.mark.parametrize(
    "change",
    [
        _add_file,
        _remove_file,
        _remove_folder,
        _remove_folder_report_a_child,
        _file_becomes_folder,
        _folder_becomes_file,
        _new_parents,
        _edit_and_add_in_two_places,
        _newly_ignored_folder,
        _folder_becomes_symlink,
        _everything,
    ],
)
def test_a_partial_scan_of_the_changed_paths_equals_a_full_scan(
    root: Path, change: Callable[[Path], list[str]]
) -> None:
    first = run(root)
    subtrees = change(root)
    partial = run(root, first.tree, subtrees=subtrees)
    full = run(root, first.tree)
    assert partial.tree == full.tree
    assert partial.problems == full.problems == {}


def test_a_partial_scan_looks_only_at_its_subtrees(root: Path) -> None:
    first = run(root)
    write(root / "a.txt", "changed, but not reported")
    (root / "empty-folder").rmdir()
    write(root / "docs/b.txt", "changed and reported")
    hasher = Hasher(root)
    result = run(root, first.tree, hasher, subtrees=["docs/b.txt"])
    assert hasher.calls == ["docs/b.txt"]
    assert result.tree == {**first.tree, "docs/b.txt": result.tree["docs/b.txt"]}
    assert result.tree["docs/b.txt"].content == expected_content(b"changed and reported")


def test_a_partial_scan_under_an_unlistable_folder_keeps_the_old_entries(root: Path) -> None:
    first = run(root)
    shutil.rmtree(root / "docs" / "deep")
    result = run(root, first.tree, subtrees=["docs/deep/c.txt"], list_dir=refusing(root / "docs"))
    assert result.tree == first.tree
    assert result.problems == {"docs": "cannot list folder: Permission denied"}


def test_a_partial_scan_finds_nfd_folders_by_their_nfc_path(root: Path) -> None:
    write(root / "Re\u0301sume\u0301/old.txt", "old")
    first = run(root)
    write(root / "Re\u0301sume\u0301/new.txt", "new")
    result = run(root, first.tree, subtrees=["R\u00e9sum\u00e9/new.txt"])
    assert result.tree["R\u00e9sum\u00e9/new.txt"].content == expected_content(b"new")
    assert result.tree == run(root, first.tree).tree


@pytest.mark.parametrize("subtree", ["../outside", "a/../../x", "/abs/../x", "a//b", "./a"])
def test_a_subtree_must_stay_inside_the_root(root: Path, subtree: str) -> None:
    with pytest.raises(ValueError, match="not a relative path"):
        run(root, subtrees=[subtree])


# ---- size ----------------------------------------------------------------------------------------


def test_a_deep_tree(tmp_path: Path) -> None:
    root = tmp_path / "sync"
    parts = [f"level{i}" for i in range(50)]
    write(root.joinpath(*parts, "bottom.txt"), "deep")
    result = run(root)
    assert len(result.tree) == 51
    assert result.tree["/".join([*parts, "bottom.txt"])].content == expected_content(b"deep")
    partial = run(root, result.tree, subtrees=["/".join(parts[:30])])
    assert partial.tree == result.tree


def test_a_wide_folder(tmp_path: Path) -> None:
    root = tmp_path / "sync"
    (root / "wide").mkdir(parents=True)
    for i in range(20_000):
        os.close(os.open(root / "wide" / f"f{i:05}", os.O_CREAT | os.O_WRONLY))
    result = run(root)
    assert len(result.tree) == 20_001
    assert {e.content for p, e in result.tree.items() if p != "wide"} == {EMPTY_CONTENT}
    hasher = Hasher(root)
    assert run(root, result.tree, hasher).tree == result.tree
    assert hasher.calls == []


# ---- the hasher ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, MIN_CHUNK - 1, MIN_CHUNK, 5 * MIN_CHUNK + 7, 9 << 20])
def test_the_hasher_gives_the_manifest_an_upload_would_cut(tmp_path: Path, size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert REAL_HASHER(write(tmp_path / "f", data)) == expected_content(data)


def test_the_hasher_streams(tmp_path: Path) -> None:
    path = write(tmp_path / "big", random.Random(7).randbytes(48 << 20))
    tracemalloc.start()
    try:
        REAL_HASHER(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_the_hasher_does_not_follow_a_symlink_or_hang_on_a_pipe(tmp_path: Path) -> None:
    write(tmp_path / "target", "x")
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(OSError):
        REAL_HASHER(tmp_path / "link")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(FileChangedWhileReading):
        REAL_HASHER(tmp_path / "pipe")
