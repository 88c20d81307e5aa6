"""The client's state DB: the three trees and the journal cursor, in one SQLite file (WAL).

The synced tree (the merge base) is written one entry at a time, right after the effect it
records is durable (promise 4); the local tree after each scan; the remote mirror as the
journal is read. Everything lives under TANDEM_HOME, never in the sync folder.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tandem.sync.model import LocalEntry, LocalTree, SyncedEntry, SyncedTree

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS remote_nodes (
    node_id TEXT PRIMARY KEY, parent_id TEXT, name TEXT, kind TEXT NOT NULL, rev INTEGER NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, manifest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS local_entries (
    path TEXT PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, content TEXT, disk_name TEXT,
    hashed_at_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS synced (
    path TEXT PRIMARY KEY, node_id TEXT NOT NULL, kind TEXT NOT NULL, rev INTEGER NOT NULL,
    content TEXT, inode INTEGER NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS problems (path TEXT PRIMARY KEY, message TEXT NOT NULL,
    since INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS online_only (
    path TEXT PRIMARY KEY, placeholder TEXT NOT NULL UNIQUE, inode INTEGER NOT NULL,
    size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS folder_policy (path TEXT PRIMARY KEY, policy TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Placeholder:
    """An online-only file: its tree path is kept here (the state DB says what is a placeholder,
    never the name), with the placeholder's path on disk and the stat it had when written."""

    placeholder: str
    inode: int
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class RemoteNode:
    """A server node as mirrored here; `name` is the decrypted name (None: undecryptable)."""

    node_id: str
    parent_id: str | None
    name: str | None
    kind: str
    rev: int
    size: int
    mtime_ns: int
    manifest: tuple[tuple[str, int], ...]


class StateDB:
    """Thread-safe (one connection, one lock): the engine, its poller and the control API
    share it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._lock = threading.RLock()
        # The local and synced trees as last read or written: a daemon's pass would otherwise
        # read thousands of rows twice. Writes keep them current; a rollback drops them.
        self._local: LocalTree | None = None
        self._synced: SyncedTree | None = None
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable commit; nested uses join the outer one (so the effects of a whole
        batch of operations cost one fsync, not one each)."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._local = self._synced = None
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @property
    def changes(self) -> int:
        """Rows written through this connection so far: a reader that sees the same number
        again sees the same state (this process is the DB's only writer while it syncs)."""
        with self._lock:
            return self._db.total_changes

    # ---- meta -----------------------------------------------------------------------------

    def get(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def put(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def cursor(self) -> int:
        return int(self.get("cursor", "0") or 0)

    # ---- remote mirror --------------------------------------------------------------------

    def remote_nodes(self) -> dict[str, RemoteNode]:
        with self._lock:
            rows = self._db.execute("SELECT node_id, parent_id, name, kind, rev, size, mtime_ns,"
                                    " manifest FROM remote_nodes").fetchall()
        return {r[0]: RemoteNode(r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                                 tuple((c, s) for c, s in json.loads(r[7]))) for r in rows}

    def update_remote(self, upserts: Iterable[RemoteNode], deletions: Iterable[str],
                      cursor: int | None = None, replace_all: bool = False) -> None:
        """Apply a page of the journal (and move the cursor) in one transaction."""
        with self.transaction() as db:
            if replace_all:
                db.execute("DELETE FROM remote_nodes")
            db.executemany(
                "INSERT OR REPLACE INTO remote_nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(n.node_id, n.parent_id, n.name, n.kind, n.rev, n.size, n.mtime_ns,
                  json.dumps(n.manifest)) for n in upserts])
            db.executemany("DELETE FROM remote_nodes WHERE node_id = ?", [(i,) for i in deletions])
            if cursor is not None:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('cursor', ?)",
                           (str(cursor),))

    # ---- local tree -----------------------------------------------------------------------

    def local_tree(self) -> LocalTree:
        with self._lock:
            if self._local is None:
                rows = self._db.execute("SELECT path, kind, size, mtime_ns, ctime_ns, inode,"
                                        " content, disk_name, hashed_at_ns FROM local_entries")
                self._local = {r[0]: LocalEntry(*r[1:]) for r in rows.fetchall()}
            return dict(self._local)

    def save_local(self, previous: LocalTree, tree: LocalTree) -> None:
        """Write only what changed since `previous` (what the DB held)."""
        gone = [(p,) for p in previous if p not in tree]
        changed = [(p, e.kind, e.size, e.mtime_ns, e.ctime_ns, e.inode, e.content, e.disk_name,
                    e.hashed_at_ns) for p, e in tree.items() if previous.get(p) != e]
        if not gone and not changed:
            return
        with self.transaction() as db:
            db.executemany("DELETE FROM local_entries WHERE path = ?", gone)
            db.executemany("INSERT OR REPLACE INTO local_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           changed)
            if self._local is not None:
                for (path,) in gone:
                    self._local.pop(path, None)
                self._local.update((row[0], tree[row[0]]) for row in changed)

    def put_local(self, items: Iterable[tuple[str, LocalEntry]]) -> None:
        """Record entries the executor knows without a scan (a file it just placed)."""
        items = list(items)
        with self.transaction() as db:
            if self._local is not None:
                self._local.update(items)
            db.executemany("INSERT OR REPLACE INTO local_entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(p, e.kind, e.size, e.mtime_ns, e.ctime_ns, e.inode, e.content,
                             e.disk_name, e.hashed_at_ns) for p, e in items])

    def forget_local(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        with self.transaction() as db:
            for path in paths:
                if self._local is not None:
                    self._local.pop(path, None)
            db.executemany("DELETE FROM local_entries WHERE path = ?", [(p,) for p in paths])

    # ---- synced tree ----------------------------------------------------------------------

    def synced_tree(self) -> SyncedTree:
        with self._lock:
            if self._synced is None:
                rows = self._db.execute("SELECT path, node_id, kind, rev, content, inode, size,"
                                        " mtime_ns FROM synced")
                self._synced = {r[0]: SyncedEntry(*r[1:]) for r in rows.fetchall()}
            return dict(self._synced)

    def synced_entry(self, path: str) -> SyncedEntry | None:
        with self._lock:
            row = self._db.execute("SELECT node_id, kind, rev, content, inode, size, mtime_ns"
                                   " FROM synced WHERE path = ?", (path,)).fetchone()
        return SyncedEntry(*row) if row else None

    def record_synced(self, items: Iterable[tuple[str, SyncedEntry]]) -> None:
        items = list(items)
        with self.transaction() as db:
            if self._synced is not None:
                self._synced.update(items)
            db.executemany("INSERT OR REPLACE INTO synced VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           [(p, e.node_id, e.kind, e.rev, e.content, e.inode, e.size, e.mtime_ns)
                            for p, e in items])

    def forget_synced(self, paths: Iterable[str]) -> None:
        paths = list(paths)
        with self.transaction() as db:
            for path in paths:
                if self._synced is not None:
                    self._synced.pop(path, None)
            db.executemany("DELETE FROM synced WHERE path = ?", [(p,) for p in paths])

    def forget_synced_subtree(self, path: str) -> None:
        """Forget `path` and everything under it ('' is the whole tree)."""
        with self.transaction() as db:
            self._synced = None
            if not path:
                db.execute("DELETE FROM synced")
                return
            db.execute("DELETE FROM synced WHERE path = ? OR substr(path, 1, ?) = ?",
                       (path, len(path) + 1, path + "/"))

    def move_synced(self, old: str, new: str, rev: int | None = None) -> None:
        """Re-key a synced entry and everything under it after a move (either side)."""
        with self.transaction() as db:
            self._synced = None
            rows = db.execute("SELECT path, node_id, kind, rev, content, inode, size, mtime_ns"
                              " FROM synced WHERE path = ? OR substr(path, 1, ?) = ?",
                              (old, len(old) + 1, old + "/")).fetchall()
            moved = {r[0]: SyncedEntry(*r[1:]) for r in rows}
            db.executemany("DELETE FROM synced WHERE path = ?", [(p,) for p in moved])
            rows = []
            for p, e in moved.items():
                target = new + p[len(old):]
                e_rev = rev if (p == old and rev is not None) else e.rev
                rows.append((target, e.node_id, e.kind, e_rev, e.content, e.inode, e.size, e.mtime_ns))
            db.executemany("INSERT OR REPLACE INTO synced VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            # An online-only file's record follows it (its placeholder moved, or is moved next).
            db.execute("UPDATE online_only SET path = ? || substr(path, ?)"
                       " WHERE path = ? OR substr(path, 1, ?) = ?",
                       (new, len(old) + 1, old, len(old) + 1, old + "/"))

    # ---- problems -------------------------------------------------------------------------

    def set_problems(self, problems: dict[str, str], now: int) -> None:
        """Replace the recorded per-path problems with this pass's."""
        if not problems and not self.problems():
            return
        with self.transaction() as db:
            old = dict(db.execute("SELECT path, since FROM problems").fetchall())
            db.execute("DELETE FROM problems")
            db.executemany("INSERT INTO problems VALUES (?, ?, ?)",
                           [(p, m, old.get(p, now)) for p, m in problems.items()])

    def problems(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT path, message FROM problems").fetchall())

    # ---- files on demand ------------------------------------------------------------------

    def placeholders(self) -> dict[str, Placeholder]:
        with self._lock:
            rows = self._db.execute("SELECT path, placeholder, inode, size, mtime_ns"
                                    " FROM online_only").fetchall()
        return {r[0]: Placeholder(*r[1:]) for r in rows}

    def put_placeholder(self, path: str, record: Placeholder) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM online_only WHERE placeholder = ?", (record.placeholder,))
            db.execute("INSERT OR REPLACE INTO online_only VALUES (?, ?, ?, ?, ?)",
                       (path, record.placeholder, record.inode, record.size, record.mtime_ns))

    def drop_placeholder(self, path: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM online_only WHERE path = ?", (path,))

    def folder_policies(self) -> dict[str, str]:
        """Folder -> 'online-only' (new files arrive as placeholders) or 'offline' (pinned)."""
        with self._lock:
            return dict(self._db.execute("SELECT path, policy FROM folder_policy").fetchall())

    def set_folder_policy(self, path: str, policy: str) -> None:
        """Set a folder's policy; the ones set inside it before give way to it."""
        with self.transaction() as db:
            if path:
                db.execute("DELETE FROM folder_policy WHERE path = ? OR substr(path, 1, ?) = ?",
                           (path, len(path) + 1, path + "/"))
            else:
                db.execute("DELETE FROM folder_policy")
            db.execute("INSERT INTO folder_policy VALUES (?, ?)", (path, policy))
