"""The executor: applies a plan's operations, each after re-checking what it expects.

Local effects first (conflict copies, moves, folders, downloads, deletes), then remote ones
(uploads and tree changes, committed in batches). Every operation checks its precondition
right before its side effect (the file on disk is still the one planned for; the server
refuses a stale revision), records the new synced state only once the effect is durable,
and turns a failure into a per-path problem instead of aborting the pass (STYLE.md).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tandem.client.api import ClientError
from tandem.client.transfer import KnownContent, Transfers, UploadResult
from tandem.core.crypto import DecryptionError
from tandem.sync import planner as p
from tandem.sync.commit import RemoteBatch
from tandem.sync.download import Downloader
from tandem.sync.live import LiveStatus
from tandem.sync.localfs import FolderPaths, PreconditionFailed, describe, matches
from tandem.sync.manifests import RecentManifests
from tandem.sync.model import LocalTree, RemoteTree, SyncedEntry, parent_of
from tandem.sync.names import conflict_name
from tandem.sync.ondemand import ONLINE_ONLY, policy_for
from tandem.sync.ondemand_io import Placeholders
from tandem.sync.remote import RemoteMirror
from tandem.sync.state import Placeholder, StateDB

STATE_FOLDER = ".tandem"


class _Placeholder:
    """The group of operations on online-only files (their placeholders stand in for them)."""


@dataclass
class Outcome:
    done: int = 0
    problems: dict[str, str] = field(default_factory=dict)
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0


class Executor:
    def __init__(self, root: Path, state: StateDB, mirror: RemoteMirror, transfers: Transfers,
                 device_name: str, clock: Callable[[], float] = time.time,
                 live: LiveStatus | None = None) -> None:
        self.root = root
        self.state = state
        self.mirror = mirror
        self.transfers = transfers
        self.device_name = device_name
        self.clock = clock
        self.live = live or LiveStatus()
        self.temp_dir = root / STATE_FOLDER / "tmp"
        self.paths = FolderPaths(root)
        #: The manifests of the files last scanned or downloaded (an upload then reads only
        #: what is missing; a download into a file copies its chunks without cutting it), and
        #: the chunks the last scan saw stored (sent ahead: the upload need not ask).
        self.recent_manifests = RecentManifests()
        self.stored_chunks: set[str] = set()
        self.downloads = Downloader(self.paths, state, transfers, self.temp_dir, self.live,
                                    self.recent_manifests)
        self.placeholders = Placeholders(self.paths, state, transfers, self.temp_dir)

    # ---- the whole plan -------------------------------------------------------------------

    def run(self, plan: p.Plan, local: LocalTree, remote: RemoteTree) -> Outcome:
        outcome = Outcome()
        self.paths.forget_checked()
        ops = plan.ops
        # Online-only files (and new files in online-only folders) get placeholders instead.
        records = self.state.placeholders()
        policies = self.state.folder_policies()
        kinds: dict[type, list[Any]] = {}
        for op in ops:
            on_demand = op.path in records or (
                isinstance(op, p.Download) and op.expect is None
                and policy_for(parent_of(op.path), policies) == ONLINE_ONLY)
            if on_demand and isinstance(op, p.Download | p.SetLocalTime | p.DeleteLocal
                                        | p.MoveLocal):
                kinds.setdefault(_Placeholder, []).append(op)
            else:
                kinds.setdefault(type(op), []).append(op)

        def each(kind: type, action: Callable[[Any], None], order: int = 0) -> None:
            items = kinds.get(kind, [])
            if order:
                items = sorted(items, key=lambda op: op.path.count("/"), reverse=order < 0)
            for op in items:
                self._attempt(outcome, op.path, lambda op=op: action(op))

        with self.state.transaction():
            each(p.ConflictCopy, lambda op: self._conflict_copy(op, local))
        each(p.MoveSynced, lambda op: self.state.move_synced(op.path, op.to, op.rev), order=1)
        each(p.MoveLocal, lambda op: self._move_local(op, local, remote), order=1)
        each(_Placeholder, lambda op: self._placeholder(op, records.get(op.path), remote))
        with self.state.transaction():
            each(p.CreateLocalFolder, lambda op: self._create_local_folder(op), order=1)
        self.downloads.run(kinds.get(p.Download, []), local, outcome)
        with self.state.transaction():
            each(p.DeleteLocal, lambda op: self._delete_local(op, local), order=-1)
            # Recorded together (one statement for a thousand touched files), in the same
            # transaction as their effects, each only once its effect is done.
            settled: list[tuple[str, SyncedEntry]] = []
            each(p.RecordSynced, lambda op: settled.append(_synced_as_scanned(op)))
            each(p.SetLocalTime, lambda op: settled.append(self._set_local_time(op, local)))
            self.state.record_synced(settled)
            each(p.ForgetSynced, lambda op: self.state.forget_synced([op.path]))
        remote_ops = [op for op in ops if isinstance(
            op, p.Upload | p.CreateRemoteFolder | p.DeleteRemote | p.MoveRemote)]
        if remote_ops:
            self._remote(remote_ops, local, remote, outcome)
        return outcome

    def _placeholder(self, op: p.Op, record: Placeholder | None, remote: RemoteTree) -> None:
        if isinstance(op, p.Download | p.SetLocalTime):
            self.placeholders.place(op.path, op.remote, record)
        elif record is None:
            raise PreconditionFailed(op.path)
        elif isinstance(op, p.MoveLocal):
            self.placeholders.move(op.path, op.to, remote[op.to], record)
        elif isinstance(op, p.DeleteLocal):
            self.placeholders.delete(op.path, record)

    def _attempt(self, outcome: Outcome, path: str, action: Callable[[], None]) -> None:
        try:
            action()
            outcome.done += 1
        except PreconditionFailed:
            pass  # the next scan sees what changed and the next plan acts on it
        except FileNotFoundError as exc:
            if exc.filename and Path(exc.filename).is_relative_to(self.temp_dir):
                outcome.problems[path] = str(exc)
        except OSError as exc:
            outcome.problems[path] = describe(exc)
        except (ClientError, DecryptionError) as exc:
            outcome.problems[path] = str(exc)

    # ---- local effects --------------------------------------------------------------------

    def _conflict_copy(self, op: p.ConflictCopy, local: LocalTree) -> None:
        source = self.paths.disk(op.path, local)
        self.paths.check_inside(source)
        if not matches(source, op.expect):
            raise PreconditionFailed(op.path)
        moment = time.localtime(self.clock())
        for attempt in range(1, 1000):
            target = source.with_name(conflict_name(source.name, self.device_name, moment, attempt))
            if not os.path.lexists(target):
                os.rename(source, target)
                self._forget_inode(op.path)
                return
        raise OSError(errno.EEXIST, "no free name for a conflicted copy", str(source))

    def _forget_inode(self, path: str) -> None:
        """A conflicted copy keeps its inode: unlink it from the synced entry, so the copy is a
        new file, not a move of the synced one."""
        base = self.state.synced_entry(path)
        if base is not None:
            self.state.record_synced([(path, replace(base, inode=0))])

    def _move_local(self, op: p.MoveLocal, local: LocalTree, remote: RemoteTree) -> None:
        source, target = self.paths.disk(op.path, local), self.root / op.to
        self.paths.check_inside(source)
        self.paths.check_inside(target)
        if not matches(source, op.expect) or os.path.lexists(target):
            raise PreconditionFailed(op.path)
        self.paths.make_folders(target.parent)
        os.rename(source, target)
        self.state.move_synced(op.path, op.to, remote[op.to].rev)

    def _create_local_folder(self, op: p.CreateLocalFolder) -> None:
        target = self.root / op.path
        self.paths.check_inside(target)
        self.paths.make_folders(target)
        if target.is_symlink() or not target.is_dir():
            raise PreconditionFailed(op.path)
        st = os.stat(target)
        self.state.record_synced([(op.path, SyncedEntry(op.remote.node_id, "folder", op.remote.rev,
                                                        None, st.st_ino, 0, 0))])

    def _delete_local(self, op: p.DeleteLocal, local: LocalTree) -> None:
        target = self.paths.disk(op.path, local)
        self.paths.check_inside(target)
        if not matches(target, op.expect):
            raise PreconditionFailed(op.path)
        if op.expect.kind == "folder":
            try:
                os.rmdir(target)
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise PreconditionFailed(op.path) from None  # something new inside: kept
                raise
            self.state.forget_synced_subtree(op.path)
        else:
            os.unlink(target)
            self.state.forget_synced([op.path])

    def _set_local_time(self, op: p.SetLocalTime, local: LocalTree) -> tuple[str, SyncedEntry]:
        """Give the file the cloud's mtime; its synced entry, for the caller to record."""
        target = self.paths.disk(op.path, local)
        self.paths.check_inside(target)
        if not matches(target, op.expect):
            raise PreconditionFailed(op.path)
        os.utime(target, ns=(op.remote.mtime_ns, op.remote.mtime_ns), follow_symlinks=False)
        st = os.lstat(target)
        return op.path, SyncedEntry(op.remote.node_id, "file", op.remote.rev, op.remote.content,
                                    st.st_ino, st.st_size, st.st_mtime_ns)

    # ---- remote effects -------------------------------------------------------------------

    def _known_uploads(self, uploads: list[p.Upload], local: LocalTree,
                       remote: RemoteTree) -> dict[str, UploadResult]:
        """Uploads whose content the server already holds at that path (only the time
        changed): committed with the server's manifest, without reading the file again. The
        file must still be as scanned; if it changes later, the next scan sees it."""
        known: dict[str, UploadResult] = {}
        for op in uploads:
            there = remote.get(op.path)
            if there is None or there.kind != "file" or there.content != op.local.content:
                continue
            disk = self.paths.disk(op.path, local)
            if matches(disk, op.local):
                known[op.path] = UploadResult(disk, op.local.size, op.local.mtime_ns,
                                              list(there.manifest))
        return known

    def _remote(self, ops: list[p.Op], local: LocalTree, remote: RemoteTree,
                outcome: Outcome) -> None:
        """Tree changes first, in one batch; then uploads in slices, each committed as soon
        as its chunks are on the server, so other devices start fetching the first files
        while later ones are still being read and sent."""
        batch = RemoteBatch(self, local, remote, outcome)
        uploads = [op for op in ops if isinstance(op, p.Upload)]
        uploaded = self._known_uploads(uploads, local, remote)
        uploads = [op for op in uploads if op.path not in uploaded]
        first = [op for op in ops if not isinstance(op, p.Upload) or op.path in uploaded]
        for op in sorted(first, key=lambda op: (not isinstance(op, p.CreateRemoteFolder),
                                               op.path.count("/"), op.path)):
            batch.add(op, uploaded.get(op.path))
        batch.commit()
        for op in uploads:
            self.live.start_transfer(op.path, op.local.size)
        try:
            for part in upload_slices(uploads):
                self._upload_and_commit(part, local, batch, outcome)
        finally:
            for op in uploads:
                self.live.finish_transfer(op.path)

    def _upload_and_commit(self, uploads: list[p.Upload], local: LocalTree, batch: RemoteBatch,
                           outcome: Outcome) -> None:
        known: list[KnownContent | None] = []
        for op in uploads:
            manifest = self.recent_manifests.get(op.local.content or "")
            known.append(None if manifest is None else (manifest, (
                op.local.size, op.local.mtime_ns, op.local.ctime_ns, op.local.inode)))
        results = self.transfers.upload([self.paths.disk(op.path, local) for op in uploads],
                                        lambda index, count: self.live.advance(
                                            uploads[index].path, count), known,
                                        self.stored_chunks)
        for op, result in zip(uploads, results, strict=True):
            if isinstance(result, Exception):
                outcome.problems[op.path] = describe(result) if isinstance(result, OSError) else str(result)
            else:
                batch.add(op, result)
            self.live.finish_transfer(op.path)
        batch.commit()


#: The first slice of uploads is committed after this many files or bytes; each next slice
#: may be twice as large, up to the last limits (few commits for many files, an early first).
_FIRST_SLICE = (64, 8 << 20)
_LAST_SLICE = (2048, 128 << 20)


def upload_slices(uploads: list[p.Upload]) -> list[list[p.Upload]]:
    """Uploads in path order, cut into slices of growing size (a file larger than the limit
    is a slice of its own)."""
    slices: list[list[p.Upload]] = []
    files, size = _FIRST_SLICE
    current: list[p.Upload] = []
    current_bytes = 0
    for op in sorted(uploads, key=lambda op: op.path):
        if current and (len(current) >= files or current_bytes + op.local.size > size):
            slices.append(current)
            current, current_bytes = [], 0
            files, size = min(files * 2, _LAST_SLICE[0]), min(size * 2, _LAST_SLICE[1])
        current.append(op)
        current_bytes += op.local.size
    if current:
        slices.append(current)
    return slices


def _synced_as_scanned(op: p.RecordSynced) -> tuple[str, SyncedEntry]:
    """Both sides hold the same thing already: the synced entry is the pair of them."""
    return op.path, SyncedEntry(op.remote.node_id, op.remote.kind, op.remote.rev,
                                op.remote.content, op.local.inode, op.local.size,
                                op.local.mtime_ns)
