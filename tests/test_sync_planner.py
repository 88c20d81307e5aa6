"""The planner as a table of named cases: every pair of (local change, remote change) on files
and folders, through the pure function (STYLE.md: Mutagen's TestReconcile)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest

from tandem.sync import planner
from tandem.sync.model import LocalEntry, RemoteEntry, SyncedEntry, content_id
from tandem.sync.planner import (
    ConflictCopy,
    CreateLocalFolder,
    CreateRemoteFolder,
    DeleteLocal,
    DeleteRemote,
    Download,
    ForgetSynced,
    MoveLocal,
    MoveRemote,
    MoveSynced,
    RecordSynced,
    SetLocalTime,
    Upload,
)


def manifest(text: str) -> tuple[tuple[str, int], ...]:
    return ((hashlib.sha256(text.encode()).hexdigest(), len(text) or 1),)


def lf(text: str, inode: int = 1, mtime: int = 10) -> LocalEntry:
    return LocalEntry("file", size=len(text), mtime_ns=mtime, inode=inode,
                      content=content_id(manifest(text)))


def ld(inode: int = 50) -> LocalEntry:
    return LocalEntry("folder", inode=inode)


def rf(node: str, rev: int, text: str) -> RemoteEntry:
    return RemoteEntry(node, "file", rev, size=len(text), mtime_ns=10, manifest=manifest(text))


def rd(node: str, rev: int = 1) -> RemoteEntry:
    return RemoteEntry(node, "folder", rev)


def sf(node: str, rev: int, text: str, inode: int = 1, mtime: int = 10) -> SyncedEntry:
    return SyncedEntry(node, "file", rev, content_id(manifest(text)), inode, len(text), mtime)


def sd(node: str, rev: int = 1, inode: int = 50) -> SyncedEntry:
    return SyncedEntry(node, "folder", rev, None, inode)


@dataclass
class Case:
    synced: dict[str, SyncedEntry] = field(default_factory=dict)
    local: dict[str, LocalEntry] = field(default_factory=dict)
    remote: dict[str, RemoteEntry] = field(default_factory=dict)
    expect: set[tuple[type, str]] = field(default_factory=set)


BASE = {"a.txt": sf("n1", 1, "v1")}
SAME_L = {"a.txt": lf("v1")}
SAME_R = {"a.txt": rf("n1", 1, "v1")}

LOCAL = {  # how the local side changed a synced file a.txt (inode 1)
    "none": SAME_L,
    "modify": {"a.txt": lf("v2")},
    "delete": {},
    "move": {"b.txt": lf("v1")},
    "type": {"a.txt": ld(inode=2)},
}
REMOTE = {  # how the cloud changed it (node n1)
    "none": SAME_R,
    "modify": {"a.txt": rf("n1", 2, "v3")},
    "delete": {},
    "move": {"b.txt": rf("n1", 2, "v1")},
    "type": {"a.txt": rd("n2", 2)},
}
PAIRS: dict[tuple[str, str], set[tuple[type, str]]] = {
    ("none", "none"): set(),
    ("none", "modify"): {(Download, "a.txt")},
    ("none", "delete"): {(DeleteLocal, "a.txt")},
    ("none", "move"): {(MoveLocal, "a.txt")},
    ("none", "type"): {(DeleteLocal, "a.txt")},  # then the folder comes down
    ("modify", "none"): {(Upload, "a.txt")},
    ("modify", "modify"): {(ConflictCopy, "a.txt")},
    ("modify", "delete"): {(Upload, "a.txt")},  # edit beats delete
    ("modify", "move"): {(MoveLocal, "a.txt")},  # the edit follows under the new name
    ("modify", "type"): {(ConflictCopy, "a.txt")},
    ("delete", "none"): {(DeleteRemote, "a.txt")},
    ("delete", "modify"): {(Download, "a.txt")},  # edit beats delete
    ("delete", "delete"): {(ForgetSynced, "a.txt")},
    ("delete", "move"): {(ForgetSynced, "a.txt"), (Download, "b.txt")},
    ("delete", "type"): {(CreateLocalFolder, "a.txt")},
    ("move", "none"): {(MoveRemote, "a.txt")},
    ("move", "modify"): {(MoveRemote, "a.txt")},  # the remote edit follows under the new name
    ("move", "delete"): {(ForgetSynced, "a.txt"), (Upload, "b.txt")},
    ("move", "move"): {(MoveSynced, "a.txt")},  # the same target: only the merge base moves
    ("move", "type"): {(CreateLocalFolder, "a.txt"), (Upload, "b.txt")},
    ("type", "none"): {(DeleteRemote, "a.txt")},  # then the folder goes up
    ("type", "modify"): {(ConflictCopy, "a.txt")},
    ("type", "delete"): {(CreateRemoteFolder, "a.txt")},
    ("type", "move"): {(CreateRemoteFolder, "a.txt"), (Download, "b.txt")},
    ("type", "type"): {(RecordSynced, "a.txt")},
}


def _ops(case: Case) -> set[tuple[type, str]]:
    return {(type(op), op.path) for op in planner.plan(case.synced, case.local, case.remote).ops}


@pytest.mark.parametrize(("local_change", "remote_change"), list(PAIRS),
                         ids=[f"local {a} / remote {b}" for a, b in PAIRS])
def test_file_change_pairs(local_change: str, remote_change: str) -> None:
    case = Case(BASE, LOCAL[local_change], REMOTE[remote_change])
    assert _ops(case) == PAIRS[(local_change, remote_change)]


CASES = {
    "local create": Case(local={"new": lf("x")}, expect={(Upload, "new")}),
    "remote create": Case(remote={"new": rf("n9", 3, "x")}, expect={(Download, "new")}),
    "both create the same content": Case(local={"new": lf("x")}, remote={"new": rf("n9", 3, "x")},
                                         expect={(RecordSynced, "new")}),
    "both create different content": Case(local={"new": lf("x")}, remote={"new": rf("n9", 3, "y")},
                                          expect={(ConflictCopy, "new")}),
    "local file vs remote folder created": Case(local={"new": lf("x")}, remote={"new": rd("n9")},
                                                expect={(ConflictCopy, "new")}),
    "both create a folder": Case(local={"d": ld()}, remote={"d": rd("n9")}, expect={(RecordSynced, "d")}),
    "local empty folder": Case(local={"d": ld()}, expect={(CreateRemoteFolder, "d")}),
    "remote empty folder": Case(remote={"d": rd("n9")}, expect={(CreateLocalFolder, "d")}),
    "identical edits on both sides": Case(BASE, {"a.txt": lf("v2")}, {"a.txt": rf("n1", 2, "v2")},
                                          expect={(RecordSynced, "a.txt")}),
    "local mtime-only change is a metadata update": Case(
        BASE, {"a.txt": lf("v1", mtime=99)}, SAME_R, expect={(Upload, "a.txt")}),
    "remote mtime-only change sets the local time": Case(
        BASE, SAME_L, {"a.txt": RemoteEntry("n1", "file", 2, 2, 99, manifest("v1"))},
        expect={(SetLocalTime, "a.txt")}),
    "both changed only the time": Case(
        BASE, {"a.txt": lf("v1", mtime=98)},
        {"a.txt": RemoteEntry("n1", "file", 2, 2, 99, manifest("v1"))},
        expect={(RecordSynced, "a.txt")}),
    "remote rev moved, content same": Case(BASE, SAME_L, {"a.txt": rf("n1", 5, "v1")},
                                           expect={(RecordSynced, "a.txt")}),
    "remote replaced by a new node with the same content": Case(
        BASE, SAME_L, {"a.txt": rf("n7", 5, "v1")}, expect={(RecordSynced, "a.txt")}),
}

FOLDER_BASE = {"d": sd("n1"), "d/f": sf("n2", 1, "v1", inode=2)}
FOLDER_LOCAL = {"d": ld(), "d/f": lf("v1", inode=2)}
FOLDER_REMOTE = {"d": rd("n1"), "d/f": rf("n2", 1, "v1")}
CASES.update({
    "folder deleted locally: one remote delete for the subtree": Case(
        FOLDER_BASE, {}, FOLDER_REMOTE, expect={(DeleteRemote, "d")}),
    "folder deleted remotely: local files deleted deepest first": Case(
        FOLDER_BASE, FOLDER_LOCAL, {}, expect={(DeleteLocal, "d"), (DeleteLocal, "d/f")}),
    "folder deleted locally while a file was added to it remotely": Case(
        FOLDER_BASE, {}, {**FOLDER_REMOTE, "d/new": rf("n3", 2, "n")},
        expect={(DeleteRemote, "d/f"), (CreateLocalFolder, "d"), (Download, "d/new")}),
    "folder deleted remotely while a file was added to it locally": Case(
        FOLDER_BASE, {**FOLDER_LOCAL, "d/new": lf("n", inode=3)}, {},
        expect={(DeleteLocal, "d/f"), (CreateRemoteFolder, "d"), (Upload, "d/new")}),
    "folder deleted remotely while a file in it was edited locally": Case(
        FOLDER_BASE, {"d": ld(), "d/f": lf("v2", inode=2)}, {},
        expect={(CreateRemoteFolder, "d"), (Upload, "d/f")}),
    "folder renamed locally: one remote move, no content": Case(
        FOLDER_BASE, {"e": ld(), "e/f": lf("v1", inode=2)}, FOLDER_REMOTE,
        expect={(MoveRemote, "d")}),
    "folder renamed remotely: one local move": Case(
        FOLDER_BASE, FOLDER_LOCAL, {"e": rd("n1", 2), "e/f": rf("n2", 1, "v1")},
        expect={(MoveLocal, "d")}),
    "nested folders deleted locally: one remote delete for the whole tree": Case(
        {**FOLDER_BASE, "d/e": sd("n3", inode=51), "d/e/g": sf("n4", 1, "g", inode=4)}, {},
        {**FOLDER_REMOTE, "d/e": rd("n3"), "d/e/g": rf("n4", 1, "g")}, expect={(DeleteRemote, "d")}),
    "folder deleted on both sides": Case(FOLDER_BASE, {}, {},
                                         expect={(ForgetSynced, "d"), (ForgetSynced, "d/f")}),
    "folder move already done on both sides (stale base after a crash)": Case(
        FOLDER_BASE, {"e": ld(), "e/f": lf("v1", inode=2)}, {"e": rd("n1", 2), "e/f": rf("n2", 1, "v1")},
        expect={(MoveSynced, "d")}),
    "case-only rename locally": Case(BASE, {"A.txt": lf("v1")}, SAME_R, expect={(MoveRemote, "a.txt")}),
    "local move onto a name the cloud just gave another file: compared by path": Case(
        BASE, {"b.txt": lf("v1")}, {**SAME_R, "b.txt": rf("n9", 3, "theirs")},
        expect={(DeleteRemote, "a.txt"), (ConflictCopy, "b.txt")}),
    "moving a folder into itself is not planned": Case(
        FOLDER_BASE, {"d": ld(), "d/d": lf("v1", inode=50)}, FOLDER_REMOTE,
        expect={(Upload, "d/d"), (DeleteRemote, "d/f")}),
})


@pytest.mark.parametrize("name", list(CASES))
def test_named_cases(name: str) -> None:
    assert _ops(CASES[name]) == CASES[name].expect


def test_moves_are_planned_alone() -> None:
    """A plan with a move holds only moves; the next plan compares paths that agree."""
    result = planner.plan(BASE | {"c.txt": sf("n5", 1, "c", inode=5)},
                          {"b.txt": lf("v1"), "c.txt": lf("changed", inode=5)},
                          SAME_R | {"c.txt": rf("n5", 1, "c")})
    assert [type(op) for op in result.ops] == [MoveRemote]


def test_mass_delete_counts_the_files_a_plan_deletes_in_the_cloud() -> None:
    synced = {f"d/f{i}": sf(f"n{i}", 1, "x", inode=i + 10) for i in range(3)} | {"d": sd("nd")}
    remote = {f"d/f{i}": rf(f"n{i}", 1, "x") for i in range(3)} | {"d": rd("nd")}
    assert planner.plan(synced, {}, remote).cloud_deletions == 3  # one folder op, three files
    local = {f"d/f{i}": lf("x", inode=i + 10) for i in range(3)} | {"d": ld()}
    assert planner.plan(synced, local, {}).cloud_deletions == 0
