"""The state DB's in-memory trees stay equal to what is on disk, through every write and a
rolled-back transaction (a fresh StateDB on the same file is the oracle)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tandem.sync.model import LocalEntry, SyncedEntry
from tandem.sync.state import Placeholder, StateDB


def _fresh(path: Path) -> tuple[dict[str, LocalEntry], dict[str, SyncedEntry]]:
    other = StateDB(path)
    try:
        return other.local_tree(), other.synced_tree()
    finally:
        other.close()


def test_cached_trees_follow_every_write(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state = StateDB(path)
    try:
        state.local_tree(), state.synced_tree()  # fill the caches first
        state.record_synced([("a", SyncedEntry("n1", "folder", 1)),
                             ("a/x", SyncedEntry("n2", "file", 1, "c", 5, 1, 2)),
                             ("b", SyncedEntry("n3", "file", 1, "d", 6, 1, 2))])
        state.save_local({}, {"a": LocalEntry("folder"), "a/x": LocalEntry("file", 1, 2, 3, 5, "c")})
        state.put_local([("b", LocalEntry("file", 1, 2, 3, 6, "d"))])
        state.save_local({"a": LocalEntry("folder")}, {"a": LocalEntry("folder", inode=9)})
        state.forget_local(["b"])
        state.move_synced("a", "z", rev=4)
        state.put_placeholder("z/x", Placeholder("z/x.tandem", 7, 300, 2))
        state.forget_synced(["b"])
        with pytest.raises(RuntimeError), state.transaction():
            state.record_synced([("lost", SyncedEntry("n9", "file", 1))])
            state.forget_local(["a/x"])
            raise RuntimeError("rolled back")
        assert (state.local_tree(), state.synced_tree()) == _fresh(path)
        state.forget_synced_subtree("z")
        assert (state.local_tree(), state.synced_tree()) == _fresh(path)
        assert state.synced_tree() == {}
    finally:
        state.close()
