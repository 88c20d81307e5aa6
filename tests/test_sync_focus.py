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
