"""`tandem check`'s comparison, table-tested: trees in, findings out (sync/check.py)."""

from __future__ import annotations

import pytest

from tandem.sync.check import NONE, REHASH, RELIST, REMERGE, Trees, compare
from tandem.sync.model import LocalEntry, RemoteEntry, SyncedEntry, content_id
from tandem.sync.state import Placeholder, RemoteNode

A = (("a" * 64, 5),)
B = (("b" * 64, 5),)
CA, CB = content_id(A), content_id(B)
BASE = {"d": SyncedEntry("n-d", "folder", 1), "d/f": SyncedEntry("n-f", "file", 2, CA, 7, 5, 100)}
LOCAL = {"d": LocalEntry("folder", inode=6), "d/f": LocalEntry("file", 5, 100, 100, 7, CA)}
NODES = {"n-d": RemoteNode("n-d", "root", "d", "folder", 1, 0, 0, ()),
         "n-f": RemoteNode("n-f", "n-d", "f", "file", 2, 5, 100, A)}
REMOTE = {"d": RemoteEntry("n-d", "folder", 1), "d/f": RemoteEntry("n-f", "file", 2, 5, 100, A)}


def trees(**changes: object) -> Trees:
    """A device at rest, in sync, with `changes` applied."""
    fields: dict[str, object] = {
        "synced": dict(BASE), "seen_local": dict(LOCAL), "disk": dict(LOCAL),
        "seen_remote": dict(REMOTE), "cloud": dict(REMOTE), "mirror": dict(NODES),
        "server": dict(NODES), "in_flux": set()}
    fields.update(changes)
    return Trees(**fields)  # type: ignore[arg-type]


def kinds(t: Trees) -> list[tuple[str, str, str]]:
    return [(f.path, f.kind, f.repair) for f in compare(t).findings]


EDITED = {**LOCAL, "d/f": LocalEntry("file", 5, 100, 101, 7, CB)}
NEWER = {**REMOTE, "d/f": RemoteEntry("n-f", "file", 3, 5, 100, B)}
NEWER_NODES = {**NODES, "n-f": RemoteNode("n-f", "n-d", "f", "file", 3, 5, 100, B)}
NEW_NODE = RemoteNode("n-g", "n-d", "g", "file", 4, 5, 100, A)

CASES = {
    "in sync": (trees(), []),
    # Pending: the next pass will see and sync these. Not discrepancies.
    "local edit seen by the next scan": (trees(seen_local=EDITED, disk=EDITED), []),
    "local delete": (trees(seen_local={"d": LOCAL["d"]}, disk={"d": LOCAL["d"]}), []),
    "new local file": (trees(seen_local={**LOCAL, "d/g": LOCAL["d/f"]},
                             disk={**LOCAL, "d/g": LOCAL["d/f"]}), []),
    "touched (time only)": (trees(seen_local={**LOCAL, "d/f": LocalEntry("file", 5, 200, 200, 7, CA)},
                                  disk={**LOCAL, "d/f": LocalEntry("file", 5, 200, 200, 7, CA)}), []),
    "cloud edit after the cursor": (trees(seen_remote=NEWER, cloud=NEWER, server=NEWER_NODES,
                                          mirror=NODES, in_flux={"n-f"}), []),
    "cloud delete after the cursor": (trees(seen_remote={"d": REMOTE["d"]}, cloud={"d": REMOTE["d"]},
                                            server={"n-d": NODES["n-d"]}, in_flux={"n-f"}), []),
    "cursor too old (relist next)": (trees(seen_remote=NEWER, cloud=NEWER, server=NEWER_NODES,
                                           in_flux=None), []),
    # Discrepancies: no pass would ever notice these.
    "content changed, stat as recorded": (trees(disk=EDITED), [("d/f", "local_unnoticed", REHASH)]),
    "cloud edit before the cursor": (trees(cloud=NEWER, server=NEWER_NODES),
                                     [("d/f", "cloud_unnoticed", RELIST)]),
    "cloud node never seen": (trees(cloud={**REMOTE, "d/g": RemoteEntry("n-g", "file", 4, 5, 100, A)},
                                    server={**NODES, "n-g": NEW_NODE}),
                              [("d/g", "cloud_unnoticed", RELIST)]),
    "node gone, still mirrored": (trees(cloud={"d": REMOTE["d"]}, server={"n-d": NODES["n-d"]}),
                                  [("d/f", "cloud_unnoticed", RELIST)]),
    "mirror lost a node": (trees(mirror={"n-d": NODES["n-d"]}, seen_remote={"d": REMOTE["d"]}),
                           [("d/f", "unseen_node", RELIST)]),
    "synced entry outside any synced folder": (
        trees(synced={"d/f": BASE["d/f"]}, seen_local={"d/f": LOCAL["d/f"]}, disk={"d/f": LOCAL["d/f"]},
              seen_remote={"d/f": REMOTE["d/f"]}, cloud={"d/f": REMOTE["d/f"]}),
        [("d/f", "orphan_synced", REMERGE)]),
    "two synced paths, one node": (
        trees(synced={**BASE, "d/g": BASE["d/f"]}, seen_local={**LOCAL, "d/g": LOCAL["d/f"]},
              disk={**LOCAL, "d/g": LOCAL["d/f"]}),
        [("d/g", "duplicate_node", REMERGE)]),
    "undecryptable cloud name": (trees(cloud_problems={"d/<node 1234>": "does not decrypt"}),
                                 [("d/<node 1234>", "cloud_name", NONE)]),
    "placeholder of a gone node": (
        trees(placeholders={"d/f": Placeholder("d/f.tandem", 9, 10, 100)},
              cloud={"d": REMOTE["d"]}, server={"n-d": NODES["n-d"]}),
        [("d/f", "placeholder_orphan", RELIST)]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_compare(name: str) -> None:
    given, expected = CASES[name]
    assert kinds(given) == expected


def test_pending_paths_are_listed() -> None:
    result = compare(trees(seen_local=EDITED, disk=EDITED))
    assert result.pending == ["d/f"] and result.findings == []
