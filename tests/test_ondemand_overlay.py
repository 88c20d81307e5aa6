"""Files on demand, the pure part: how recorded placeholders on disk read as the files they stand
for (`ondemand.overlay`), as a table of named cases, each planned against the cloud where the
planner's answer is what the case is about."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tandem.sync import planner
from tandem.sync.model import (
    LocalEntry,
    LocalTree,
    RemoteEntry,
    RemoteTree,
    SyncedEntry,
    SyncedTree,
    content_id,
    join,
    name_of,
    parent_of,
)
from tandem.sync.ondemand import (
    OFFLINE,
    ONLINE_ONLY,
    policy_for,
    unchanged,
    virtual_entry,
    virtual_path,
)
from tandem.sync.ondemand import overlay as make_overlay
from tandem.sync.placeholder import MAX_NAME_BYTES, SUFFIX, placeholder_name
from tandem.sync.planner import DeleteRemote, MoveRemote, Op
from tandem.sync.state import Placeholder

MTIME = 1_700_000_000_123_456_789  # the file's mtime, which its placeholder also gets
PH_SIZE = 312  # a placeholder's text is small
FOLDER_INODE = 50


def manifest(text: str) -> tuple[tuple[str, int], ...]:
    return ((hashlib.sha256(text.encode()).hexdigest(), 4096), (hashlib.sha256(text[::-1].encode())
                                                                 .hexdigest(), len(text) + 1))


def folder(inode: int = FOLDER_INODE) -> LocalEntry:
    return LocalEntry("folder", inode=inode)


def real_file(text: str, inode: int) -> LocalEntry:
    return LocalEntry("file", len(text), MTIME + 7, MTIME + 7, inode, content_id(manifest(text)))


def ph_entry(record: Placeholder) -> LocalEntry:
    """The placeholder as scanned: its stat as written (the ctime moves with any rename) and the
    hash of its text (placeholder text, never the file's content)."""
    return LocalEntry("file", record.size, record.mtime_ns, MTIME + 99, record.inode,
                      content_id(manifest("placeholder text of " + record.placeholder)))


@dataclass(frozen=True)
class File:
    """An online-only file: synced, in the cloud as synced, with its placeholder record."""

    path: str
    node: str
    inode: int
    rev: int = 3
    size: int = 5000

    @property
    def text(self) -> str:
        return "content of " + self.node

    @property
    def record(self) -> Placeholder:
        return Placeholder(join(parent_of(self.path), placeholder_name(name_of(self.path))),
                           self.inode, PH_SIZE, MTIME)

    @property
    def synced(self) -> SyncedEntry:
        # As `Placeholders.place`/`free` record it: the placeholder's inode, the file's size/time.
        return SyncedEntry(self.node, "file", self.rev, content_id(manifest(self.text)),
                           self.inode, self.size, MTIME)

    @property
    def remote(self) -> RemoteEntry:
        return RemoteEntry(self.node, "file", self.rev, self.size, MTIME, manifest(self.text))


REPORT = File("docs/report.pdf", "n-report", 77)
PH = REPORT.record.placeholder  # docs/report.pdf.tandem
LONG = File("docs/" + "L" * 246 + ".pdf", "n-long", 78)  # a 250-byte name
LONG_PH = LONG.record.placeholder


def synced_of(*files: File, folders: dict[str, int] | None = None) -> SyncedTree:
    folders = {"docs": FOLDER_INODE} if folders is None else folders
    tree: SyncedTree = {p: SyncedEntry("d-" + p, "folder", 1, None, i) for p, i in folders.items()}
    tree.update({f.path: f.synced for f in files})
    return tree


def remote_of(synced: SyncedTree) -> RemoteTree:
    """The cloud exactly as synced: same node, rev, content (content_id of the manifest) and time."""
    tree: RemoteTree = {}
    for path, base in synced.items():
        if base.kind == "folder":
            tree[path] = RemoteEntry(base.node_id, "folder", base.rev)
        else:
            text = next(f for f in (REPORT, LONG, A, A_TANDEM) if f.node == base.node_id).text
            tree[path] = RemoteEntry(base.node_id, "file", base.rev, base.size, base.mtime_ns,
                                     manifest(text))
            assert tree[path].content == base.content
    return tree


def moved_ph(record: Placeholder, to: str) -> Placeholder:
    return replace(record, placeholder=to)


def stand_in(file: File, record: Placeholder | None = None) -> LocalEntry:
    return virtual_entry(file.synced, record or file.record)


A = File("docs/a", "n-a", 81)
A_TANDEM = File("docs/a.tandem", "n-a-tandem", 82)


@dataclass
class Case:
    local: LocalTree
    tree: LocalTree  # overlay.local, exactly
    records: dict[str, Placeholder] = field(default_factory=lambda: {REPORT.path: REPORT.record})
    synced: SyncedTree = field(default_factory=lambda: synced_of(REPORT))
    ignored: tuple[str, ...] = ()
    moved: dict[str, Placeholder] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    remove_files: dict[str, Placeholder] = field(default_factory=dict)
    materialize: dict[str, str] = field(default_factory=dict)
    ops: list[Op] | None = None  # the plan against a cloud as synced (None: not planned)


RENAMED = moved_ph(REPORT.record, "docs/other.pdf.tandem")
IN_PAPERS = moved_ph(REPORT.record, "papers/report.pdf.tandem")
NO_SUFFIX = moved_ph(REPORT.record, "archive/notes.txt")
LONG_MOVED = moved_ph(LONG.record, "archive/" + name_of(LONG_PH))
ONTO_REAL = moved_ph(REPORT.record, "docs/taken.pdf.tandem")
SUFFIX_DROPPED = moved_ph(REPORT.record, REPORT.path)
DOCS = {"docs": folder()}
BOTH_DIRS = {"docs": folder(), "archive": folder(51)}

CASES: dict[str, Case] = {
    "1 unchanged placeholder reads as the synced file": Case(
        local={**DOCS, PH: ph_entry(REPORT.record)},
        tree={**DOCS, REPORT.path: stand_in(REPORT)},
        ops=[],
    ),
    "2 renamed in its folder to other.pdf.tandem: the file moves to other.pdf": Case(
        local={**DOCS, RENAMED.placeholder: ph_entry(RENAMED)},
        tree={**DOCS, "docs/other.pdf": stand_in(REPORT, RENAMED)},
        moved={REPORT.path: RENAMED},
        ops=[MoveRemote(REPORT.path, "docs/other.pdf", REPORT.node, REPORT.rev)],
    ),
    "3 its folder renamed: the file keeps its name in the new folder": Case(
        local={"papers": folder(), IN_PAPERS.placeholder: ph_entry(IN_PAPERS)},
        tree={"papers": folder(), "papers/report.pdf": stand_in(REPORT, IN_PAPERS)},
        moved={REPORT.path: IN_PAPERS},
        ops=[MoveRemote("docs", "papers", "d-docs", 1)],  # the file moves with its folder
    ),
    "4 moved and renamed without the suffix: that name is the file's": Case(
        local={**BOTH_DIRS, NO_SUFFIX.placeholder: ph_entry(NO_SUFFIX)},
        tree={**BOTH_DIRS, "archive/notes.txt": stand_in(REPORT, NO_SUFFIX)},
        moved={REPORT.path: NO_SUFFIX},
        synced=synced_of(REPORT, folders={"docs": FOLDER_INODE, "archive": 51}),
        ops=[MoveRemote(REPORT.path, "archive/notes.txt", REPORT.node, REPORT.rev)],
    ),
    "5 long name, shortened placeholder, moved: the long name stays": Case(
        local={**BOTH_DIRS, LONG_MOVED.placeholder: ph_entry(LONG_MOVED)},
        records={LONG.path: LONG.record},
        synced=synced_of(LONG, folders={"docs": FOLDER_INODE, "archive": 51}),
        tree={**BOTH_DIRS, "archive/" + name_of(LONG.path): stand_in(LONG, LONG_MOVED)},
        moved={LONG.path: LONG_MOVED},
        ops=[MoveRemote(LONG.path, "archive/" + name_of(LONG.path), LONG.node, LONG.rev)],
    ),
    "6 placeholder deleted: the file is deleted (in the cloud, to the trash)": Case(
        local={**DOCS, "docs/unrelated.txt": real_file("other", 90)},
        tree={**DOCS, "docs/unrelated.txt": real_file("other", 90)},
        ops=[DeleteRemote(REPORT.path, REPORT.node, REPORT.rev),
             # the unrelated file was never synced: it goes up, nothing else happens
             planner.Upload("docs/unrelated.txt", real_file("other", 90))],
    ),
    "7a absent but its path is ignored: unchanged, not deleted": Case(
        local={**DOCS},
        ignored=(PH,),
        tree={**DOCS, REPORT.path: stand_in(REPORT)},
    ),
    "7b absent but its folder is ignored: unchanged, not deleted": Case(
        local={},
        ignored=("docs",),
        tree={REPORT.path: stand_in(REPORT)},
    ),
    "8a overwritten (new size) at its own path: materialized": Case(
        local={**DOCS, PH: replace(ph_entry(REPORT.record), size=123_456)},
        tree={**DOCS},
        materialize={PH: REPORT.path},
    ),
    "8b overwritten (new mtime) at its own path: materialized": Case(
        local={**DOCS, PH: replace(ph_entry(REPORT.record), mtime_ns=MTIME + 1)},
        tree={**DOCS},
        materialize={PH: REPORT.path},
    ),
    "8c replaced by a new inode (an editor's save) at its own path: materialized": Case(
        local={**DOCS, PH: replace(ph_entry(REPORT.record), inode=500, size=9)},
        tree={**DOCS},
        materialize={PH: REPORT.path},
    ),
    "9 the real file is back beside an unchanged placeholder (interrupted free)": Case(
        local={**DOCS, PH: ph_entry(REPORT.record), REPORT.path: real_file(REPORT.text, 90)},
        tree={**DOCS, REPORT.path: real_file(REPORT.text, 90)},
        dropped=[REPORT.path],
        remove_files={REPORT.path: REPORT.record},
    ),
    "10a the cloud file is gone and recorded, placeholder unchanged: record and file go": Case(
        local={**DOCS, PH: ph_entry(REPORT.record)},
        synced=synced_of(),
        tree={**DOCS},
        dropped=[REPORT.path],
        remove_files={REPORT.path: REPORT.record},
        ops=[],
    ),
    "10b the cloud file is gone and recorded, placeholder gone too: record goes": Case(
        local={**DOCS},
        synced=synced_of(),
        tree={**DOCS},
        dropped=[REPORT.path],
        ops=[],
    ),
    "11 moved onto the name of a real file: shown under the placeholder's own name": Case(
        local={**DOCS, "docs/taken.pdf": real_file("mine", 91), ONTO_REAL.placeholder: ph_entry(ONTO_REAL)},
        tree={**DOCS, "docs/taken.pdf": real_file("mine", 91),
              ONTO_REAL.placeholder: stand_in(REPORT, ONTO_REAL)},
        moved={REPORT.path: ONTO_REAL},
    ),
    "12 a real x.tandem with no record is an ordinary file": Case(
        local={**DOCS, PH: ph_entry(REPORT.record), "docs/x.tandem": real_file("x", 92),
               "x.tandem": real_file("root x", 93)},
        tree={**DOCS, REPORT.path: stand_in(REPORT), "docs/x.tandem": real_file("x", 92),
              "x.tandem": real_file("root x", 93)},
    ),
    "12b no records at all: the tree is the scan": Case(
        local={**DOCS, "docs/x.tandem": real_file("x", 92)},
        records={},
        synced=synced_of(),
        tree={**DOCS, "docs/x.tandem": real_file("x", 92)},
    ),
    # Found while writing these: the placeholder renamed to the file's own name (the user
    # dropped `.tandem`) is a move of the placeholder (same inode, size, mtime), like case 4,
    # not "the real file is back". Read as the real file, its text is uploaded over the file.
    "14 renamed to the file's own name (suffix dropped in place): still the placeholder": Case(
        local={**DOCS, REPORT.path: ph_entry(SUFFIX_DROPPED)},
        tree={**DOCS, REPORT.path: stand_in(REPORT, SUFFIX_DROPPED)},
        moved={REPORT.path: SUFFIX_DROPPED},
        ops=[],
    ),
    # Found while writing these: `a` and `a.tandem` both online-only (free `a.tandem` first,
    # then `a`; or both arriving in an online-only folder): a's placeholder `a.tandem` is not
    # the real `a.tandem` come back.
    "15 files a and a.tandem both online-only: both stand": Case(
        local={**DOCS, A.record.placeholder: ph_entry(A.record),
               A_TANDEM.record.placeholder: ph_entry(A_TANDEM.record)},
        records={A.path: A.record, A_TANDEM.path: A_TANDEM.record},
        synced=synced_of(A, A_TANDEM),
        tree={**DOCS, A.path: stand_in(A), A_TANDEM.path: stand_in(A_TANDEM)},
        ops=[],
    ),
    # Found by the simulation (seed 1024): the placeholder deleted, then a new file that
    # reused its inode was read as the file moved there, and the record followed the move
    # onto the real file, whose placeholder is nowhere: the real file wins, the record goes.
    "16 the record followed a move onto a real file: the real file wins": Case(
        local={**DOCS, "docs/new.txt": real_file("typed anew", REPORT.inode)},
        records={"docs/new.txt": REPORT.record},
        synced={**synced_of(), "docs/new.txt": replace(REPORT.synced, size=len("typed anew"))},
        tree={**DOCS, "docs/new.txt": real_file("typed anew", REPORT.inode)},
        dropped=["docs/new.txt"],
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_overlay(case: Case) -> None:
    scanned = dict(case.local)
    records = dict(case.records)
    view = make_overlay(case.local, case.records, case.synced, case.ignored)
    assert case.local == scanned and case.records == records  # inputs are not changed

    assert view.local == case.tree
    assert view.moved == case.moved
    assert view.dropped == case.dropped
    assert view.remove_files == case.remove_files
    assert view.materialize == case.materialize
    assert view.needs_disk == bool(case.remove_files or case.materialize)
    if case.ops is not None:
        assert planner.plan(case.synced, view.local, remote_of(case.synced)).ops == case.ops


def test_overwritten_needs_disk() -> None:
    """An overwritten placeholder must be renamed on disk before any plan (until then the file
    would read as deleted): the engine scans again first."""
    view = make_overlay({**DOCS, PH: replace(ph_entry(REPORT.record), size=1)},
                        {REPORT.path: REPORT.record}, synced_of(REPORT))
    assert view.needs_disk
    assert PH not in view.local and REPORT.path not in view.local


def test_pure_functions_agree_with_the_table() -> None:
    base, record = REPORT.synced, REPORT.record
    assert virtual_entry(base, record) == LocalEntry("file", base.size, base.mtime_ns, 0,
                                                     record.inode, base.content)
    assert unchanged(ph_entry(record), record)
    assert not unchanged(None, record)
    assert not unchanged(replace(ph_entry(record), kind="folder"), record)
    assert unchanged(replace(ph_entry(record), ctime_ns=1), record)  # a rename moves the ctime
    assert virtual_path(REPORT.path, record) == REPORT.path
    assert virtual_path(REPORT.path, RENAMED) == "docs/other.pdf"
    assert virtual_path(REPORT.path, moved_ph(record, "docs/" + SUFFIX)) == "docs/" + SUFFIX
    assert virtual_path(REPORT.path, moved_ph(record, "top.pdf.tandem")) == "top.pdf"
    assert len(name_of(LONG.path).encode()) == 250
    assert name_of(LONG_PH) != name_of(LONG.path) + SUFFIX
    assert len(name_of(LONG_PH).encode()) <= MAX_NAME_BYTES
    assert virtual_path(LONG.path, LONG.record) == LONG.path


POLICIES = {"": OFFLINE, "work": ONLINE_ONLY, "work/keep": OFFLINE}
POLICY_CASES: dict[str, tuple[str, dict[str, str], str | None]] = {
    "the folder's own policy": ("work", POLICIES, ONLINE_ONLY),
    "the parent's policy": ("work/a.pdf", POLICIES, ONLINE_ONLY),
    "nearest ancestor wins over a farther one": ("work/keep/deep/a.pdf", POLICIES, OFFLINE),
    "a sibling folder's policy does not apply": ("work/other/a.pdf", POLICIES, ONLINE_ONLY),
    "a name prefix is not an ancestor": ("workshop/a.pdf", POLICIES, OFFLINE),
    "root policy under '' for a top-level file": ("a.pdf", POLICIES, OFFLINE),
    "root policy under '' for the root itself": ("", POLICIES, OFFLINE),
    "no policy anywhere": ("work/a.pdf", {}, None),
    "no policy above (only a sibling's)": ("music/a.mp3", {"work": ONLINE_ONLY}, None),
    "a prefix-named folder without root policy": ("workshop/a.pdf", {"work": ONLINE_ONLY}, None),
}


@pytest.mark.parametrize(("path", "policies", "expected"), list(POLICY_CASES.values()),
                         ids=list(POLICY_CASES))
def test_policy_for(path: str, policies: dict[str, str], expected: str | None) -> None:
    assert policy_for(path, policies) == expected


# ---- property: unchanged placeholders read exactly as their files, with no fixups ---------------

_NAMES = st.one_of(
    st.text("ab.", min_size=1, max_size=4).filter(lambda n: n not in {".", ".."}),
    st.sampled_from(["a.tandem", "b.pdf.tandem", ".tandem", "report.pdf"]),
    st.sampled_from(["x" * 250, "x" * 249 + "y", "é" * 125 + ".pdf"]),  # shortened placeholders
)
_FILES = st.dictionaries(
    st.tuples(st.sampled_from(["", "D", "D/E", "F"]), _NAMES).map(lambda t: join(*t)),
    st.tuples(st.integers(0, 10**6), st.integers(0, 2**62)),
    max_size=8,
)


@settings(max_examples=300, deadline=None, database=None)
@given(_FILES)
def test_unchanged_placeholders_read_as_their_files(files: dict[str, tuple[int, int]]) -> None:
    folders = {"D": 60, "D/E": 61, "F": 62}
    local: LocalTree = {p: folder(i) for p, i in folders.items()}
    synced: SyncedTree = {p: SyncedEntry("d-" + p, "folder", 1, None, i) for p, i in folders.items()}
    records: dict[str, Placeholder] = {}
    for inode, (path, (size, mtime)) in enumerate(sorted(files.items()), start=1000):
        record = Placeholder(join(parent_of(path), placeholder_name(name_of(path))), inode,
                             size % 2000, mtime)
        records[path] = record
        synced[path] = SyncedEntry("n-" + path, "file", 1, content_id(manifest(path)), inode, size,
                                   mtime)
        local[record.placeholder] = ph_entry(record)

    view = make_overlay(local, records, synced)

    assert set(view.local) == set(folders) | set(files)
    for path, record in records.items():
        assert view.local[path] == virtual_entry(synced[path], record)
    assert (view.moved, view.dropped, view.remove_files, view.materialize) == ({}, [], {}, {})
    assert not view.needs_disk
