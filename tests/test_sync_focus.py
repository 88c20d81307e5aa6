"""A daemon's pass plans only its focus: the paths where something may have changed."""

import pytest

from tandem.sync.focus import paths_of_nodes, restrict, widen
from tandem.sync.model import RemoteEntry, SyncedEntry

TREE = {"a": 1, "a/x": 2, "a/y/z": 3, "ab": 4, "b": 5, "b/c": 6}


@pytest.mark.parametrize(
    ("focus", "expected"),
    [
        (None, TREE),
        (set(), {}),
        ({"a"}, {"a": 1, "a/x": 2, "a/y/z": 3}),  # "ab" is not under "a"
        ({"a/y"}, {"a/y/z": 3}),
        ({"a/x", "b"}, {"a/x": 2, "b": 5, "b/c": 6}),
        ({"missing"}, {}),
    ],
)
def test_restrict_keeps_what_is_at_or_under_the_focus(focus: set[str] | None, expected: dict) -> None:
    assert restrict(TREE, focus) == expected


@pytest.mark.parametrize(
    ("focus", "paths", "expected"),
    [
        (None, ["a"], None),  # everything stays everything
        (set(), [], set()),
        (set(), ["a", "b"], {"a", "b"}),
        ({"a"}, ["b"], {"a", "b"}),
        ({"a"}, [""], None),  # the root is everything
    ],
)
def test_widen(focus: set[str] | None, paths: list[str], expected: set[str] | None) -> None:
    assert widen(focus, paths) == expected


def test_a_changed_node_is_looked_at_where_it_is_and_where_it_was() -> None:
    remote = {"new/place": RemoteEntry("n1", "folder", 2), "other": RemoteEntry("n2", "file", 1)}
    synced = {"old/place": SyncedEntry("n1", "folder", 1), "other": SyncedEntry("n2", "file", 1),
              "gone": SyncedEntry("n3", "file", 1)}
    assert paths_of_nodes({"n1"}, remote, synced) == {"new/place", "old/place"}
    assert paths_of_nodes({"n3"}, remote, synced) == {"gone"}  # deleted in the cloud
    assert paths_of_nodes(set(), remote, synced) == set()


def test_the_focus_follows_moves_in_the_cloud_and_on_disk() -> None:
    from tandem.sync.focus import with_identities
    from tandem.sync.model import LocalEntry

    synced = {"old": SyncedEntry("n1", "file", 1, None, 5), "f": SyncedEntry("n2", "folder", 1, None, 7),
              "f/x": SyncedEntry("n3", "file", 1, None, 8), "other": SyncedEntry("n4", "file", 1, None, 9)}
    remote = {"new": RemoteEntry("n1", "file", 2), "g": RemoteEntry("n2", "folder", 2),
              "g/x": RemoteEntry("n3", "file", 1), "other": RemoteEntry("n4", "file", 1)}
    local = {"moved-here": LocalEntry("file", inode=5), "f": LocalEntry("folder", inode=7),
             "f/x": LocalEntry("file", inode=8), "other": LocalEntry("file", inode=9)}
    # a problem at the old path: the node is now at "new" in the cloud, its inode at "moved-here"
    assert with_identities({"old"}, synced, local, remote) == {"old", "new", "moved-here"}
    # a folder moved in the cloud: its new place comes along, with what is under it
    assert with_identities({"f"}, synced, local, remote) == {"f", "g"}
    # a file inside it: its own new place (its folder's move is the folder's business)
    assert with_identities({"f/x"}, synced, local, remote) == {"f/x", "g/x"}
    assert with_identities({"other"}, synced, local, remote) == {"other"}
    assert with_identities(None, synced, local, remote) is None
