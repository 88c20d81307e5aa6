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
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from tandem.client.api import ClientError
from tandem.client.transfer import NEW_FILE_MODE, Transfers, UploadResult
from tandem.core.chunking import MIN_CHUNK, iter_chunks
from tandem.core.crypto import DecryptionError
from tandem.fileio import sync_filesystem, write_temp_file
from tandem.sync import planner as p
from tandem.sync.commit import RemoteBatch
from tandem.sync.live import LiveStatus
from tandem.sync.model import LocalEntry, LocalTree, RemoteTree, SyncedEntry
from tandem.sync.names import conflict_name
from tandem.sync.remote import RemoteMirror
from tandem.sync.state import StateDB

A = TypeVar("A")
R = TypeVar("R")
STATE_FOLDER = ".tandem"
#: Files up to this size are downloaded in batches (few requests, two flushes per batch).
SMALL_FILE = 256 * 1024
SMALL_BATCH = 500
SMALL_BATCH_BYTES = 8 * 1024 * 1024


@dataclass
class Outcome:
    done: int = 0
    problems: dict[str, str] = field(default_factory=dict)
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0


class PreconditionFailed(Exception):
    """The disk no longer holds what the plan was made for: skip, the next plan will see it."""


def _matches(path: Path, expect: LocalEntry | None) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return expect is None
    if expect is None:
        return False
    if expect.kind == "folder":
        return os.path.isdir(path) and not os.path.islink(path)
    # ctime too: a same-size rewrite with its old mtime put back still moves the ctime.
    return ((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            == (expect.inode, expect.size, expect.mtime_ns, expect.ctime_ns))


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
        self._real_folders: set[Path] = set()

    # ---- paths ----------------------------------------------------------------------------

    def _disk(self, path: str, local: LocalTree) -> Path:
        """The on-disk path for a tree path (names as they are on disk, e.g. NFD)."""
        parts, prefix = [], ""
        for name in path.split("/"):
            prefix = f"{prefix}/{name}" if prefix else name
            entry = local.get(prefix)
            parts.append(entry.disk_name if entry is not None and entry.disk_name else name)
        return self.root.joinpath(*parts)

    def _check_inside(self, target: Path) -> None:
        """Never act through a symlink: every folder between the root and `target` must be a
        real folder (nothing is read, written or deleted outside the sync folder). Folders
        checked once in a run are remembered for that run."""
        current = self.root
        for part in target.relative_to(self.root).parts[:-1]:
            current = current / part
            if current in self._real_folders:
                continue
            if current.is_symlink():
                raise PreconditionFailed(f"{current} is a symbolic link")
            if current.is_dir():
                self._real_folders.add(current)

    # ---- the whole plan -------------------------------------------------------------------

    def run(self, plan: p.Plan, local: LocalTree, remote: RemoteTree) -> Outcome:
        outcome = Outcome()
        self._real_folders.clear()
        ops = plan.ops
        kinds: dict[type, list[Any]] = {}
        for op in ops:
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
        with self.state.transaction():
            each(p.CreateLocalFolder, lambda op: self._create_local_folder(op), order=1)
        self._downloads(kinds.get(p.Download, []), local, outcome)
        with self.state.transaction():
            each(p.DeleteLocal, lambda op: self._delete_local(op, local), order=-1)
            each(p.RecordSynced, self._record_synced)
            each(p.SetLocalTime, lambda op: self._set_local_time(op, local))
            each(p.ForgetSynced, lambda op: self.state.forget_synced([op.path]))
        remote_ops = [op for op in ops if isinstance(
            op, p.Upload | p.CreateRemoteFolder | p.DeleteRemote | p.MoveRemote)]
        if remote_ops:
            self._remote(remote_ops, local, remote, outcome)
        return outcome

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
        source = self._disk(op.path, local)
        self._check_inside(source)
        if not _matches(source, op.expect):
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
        source, target = self._disk(op.path, local), self.root / op.to
        self._check_inside(source)
        self._check_inside(target)
        if not _matches(source, op.expect) or os.path.lexists(target):
            raise PreconditionFailed(op.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
        self.state.move_synced(op.path, op.to, remote[op.to].rev)

    def _create_local_folder(self, op: p.CreateLocalFolder) -> None:
        target = self.root / op.path
        self._check_inside(target)
        target.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or not target.is_dir():
            raise PreconditionFailed(op.path)
        st = os.stat(target)
        self.state.record_synced([(op.path, SyncedEntry(op.remote.node_id, "folder", op.remote.rev,
                                                        None, st.st_ino, 0, 0))])

    def _downloads(self, ops: list[p.Download], local: LocalTree, outcome: Outcome) -> None:
        if not ops:
            return
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        small = [op for op in ops if op.remote.size <= SMALL_FILE]
        large = [op for op in ops if op.remote.size > SMALL_FILE]
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="tandem-download") as pool:
            # Workers fetch and decrypt; this thread alone creates files, since threads
            # creating files in one folder mostly wait on that folder's lock.
            batches = _batches(small)
            fetched = _ordered_map(pool, self._fetch_batch, batches, ahead=3)
            for batch, contents in zip(batches, fetched, strict=True):
                self._place_small_files(batch, contents, local, outcome)
                for op in batch:
                    self.live.finish_transfer(op.path)
            done = pool.map(lambda op: self._download_checked(op, local), large)
            for op, error in zip(large, done, strict=True):
                if error is None:
                    outcome.done += 1
                    outcome.bytes_downloaded += op.remote.size
                elif error:
                    outcome.problems[op.path] = error

    def _fetch_batch(self, batch: list[p.Download]) -> list[bytes] | BaseException:
        """The contents of a batch of small files, in few requests."""
        for op in batch:
            self.live.start_transfer(op.path, op.remote.size)
        manifest = [entry for op in batch for entry in op.remote.manifest]
        try:
            chunks = iter(list(self.transfers.iter_content(manifest)))
        except (ClientError, DecryptionError, OSError) as exc:
            return exc
        return [b"".join(next(chunks) for _ in op.remote.manifest) for op in batch]

    def _place_small_files(self, batch: list[p.Download], contents: list[bytes] | BaseException,
                           local: LocalTree, outcome: Outcome) -> None:
        """Temp files, one flush, renames (each re-checked just before), one flush, then the
        records: a file appears only complete, and is recorded only once that is durable."""
        if isinstance(contents, BaseException):
            for op in batch:
                outcome.problems[op.path] = describe(contents)
            return
        written: list[tuple[p.Download, Path]] = []
        for op, data in zip(batch, contents, strict=True):
            try:
                written.append((op, write_temp_file(self.temp_dir, data, NEW_FILE_MODE,
                                                    op.remote.mtime_ns)))
            except OSError as exc:
                outcome.problems[op.path] = describe(exc)
        if not written:
            return
        sync_filesystem(self.temp_dir)
        placed: list[tuple[str, os.stat_result, p.Download]] = []
        known_at = time.time_ns()
        for op, temp in written:
            try:
                target = self._disk(op.path, local) if op.expect else self.root / op.path
                self._check_inside(target)
                if not _matches(target, op.expect):
                    raise PreconditionFailed(op.path)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(temp, target)
                placed.append((op.path, os.lstat(target), op))
            except PreconditionFailed:
                temp.unlink(missing_ok=True)
            except OSError as exc:
                temp.unlink(missing_ok=True)
                outcome.problems[op.path] = describe(exc)
        if placed:
            sync_filesystem(self.root)
            self._record_downloads(placed, known_at)
            outcome.done += len(placed)
            outcome.bytes_downloaded += sum(op.remote.size for _, _, op in placed)

    def _record_downloads(self, placed: list[tuple[str, os.stat_result, p.Download]],
                          known_at: int) -> None:
        """The synced entries, and the local ones too: the content of a file just placed is
        known, so the next scan need not read it again (unless racily clean)."""
        with self.state.transaction():
            self.state.record_synced([(path, SyncedEntry(
                op.remote.node_id, "file", op.remote.rev, op.remote.content, st.st_ino,
                st.st_size, st.st_mtime_ns)) for path, st, op in placed])
            self.state.put_local([(path, LocalEntry(
                "file", st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                op.remote.content, None, known_at)) for path, st, op in placed])

    def _download_checked(self, op: p.Download, local: LocalTree) -> str | None:
        """None when done; '' when skipped; else the problem."""
        self.live.start_transfer(op.path, op.remote.size)
        try:
            self._download(op, local)
            return None
        except PreconditionFailed:
            return ""
        except OSError as exc:
            return describe(exc)
        except (ClientError, DecryptionError) as exc:
            return str(exc)
        finally:
            self.live.finish_transfer(op.path)

    def _download(self, op: p.Download, local: LocalTree) -> None:
        target = self._disk(op.path, local) if op.expect else self.root / op.path
        self._check_inside(target)
        if not _matches(target, op.expect):
            raise PreconditionFailed(op.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=self.temp_dir, prefix="download-")
        try:
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), NEW_FILE_MODE)
                for piece in self._new_content(op, target):
                    handle.write(piece)
                    self.live.advance(op.path, len(piece))
                handle.flush()
                os.fsync(handle.fileno())
            os.utime(temp_name, ns=(op.remote.mtime_ns, op.remote.mtime_ns))
            # Re-checked right before the rename: a local edit since the plan is never lost.
            if not _matches(target, op.expect):
                raise PreconditionFailed(op.path)
            known_at = time.time_ns()
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        self._record_downloads([(op.path, os.lstat(target), op)], known_at)

    def _new_content(self, op: p.Download, target: Path) -> Iterator[bytes]:
        """The new version's plaintext, chunk by chunk. Chunks the file being replaced
        already holds are copied from it, not fetched (each copy is checked against its keyed
        id, so it is as good as a download): an edit inside a large file costs a download of
        the chunks it changed."""
        manifest = list(op.remote.manifest)
        if op.expect is None or op.expect.kind != "file" or op.expect.size < MIN_CHUNK:
            yield from self.transfers.iter_content(manifest)
            return
        keys = self.transfers.keys
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, "rb") as old:
            wanted = {chunk_id for chunk_id, _ in manifest}
            offsets: dict[str, int] = {}
            position = 0
            for chunk in iter_chunks(old):
                chunk_id = keys.chunk_id(chunk)
                if chunk_id in wanted:
                    offsets.setdefault(chunk_id, position)
                position += len(chunk)
            fetched = iter(self.transfers.iter_content(
                [entry for entry in manifest if entry[0] not in offsets]))
            for chunk_id, size in manifest:
                if chunk_id not in offsets:
                    yield next(fetched)
                    continue
                old.seek(offsets[chunk_id])
                data = old.read(size)
                if len(data) != size or keys.chunk_id(data) != chunk_id:
                    raise PreconditionFailed(op.path)  # changed under us: the next pass
                yield data

    def _delete_local(self, op: p.DeleteLocal, local: LocalTree) -> None:
        target = self._disk(op.path, local)
        self._check_inside(target)
        if not _matches(target, op.expect):
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

    def _set_local_time(self, op: p.SetLocalTime, local: LocalTree) -> None:
        target = self._disk(op.path, local)
        self._check_inside(target)
        if not _matches(target, op.expect):
            raise PreconditionFailed(op.path)
        os.utime(target, ns=(op.remote.mtime_ns, op.remote.mtime_ns), follow_symlinks=False)
        st = os.lstat(target)
        self.state.record_synced([(op.path, SyncedEntry(
            op.remote.node_id, "file", op.remote.rev, op.remote.content, st.st_ino, st.st_size,
            st.st_mtime_ns))])

    def _record_synced(self, op: p.RecordSynced) -> None:
        entry = SyncedEntry(op.remote.node_id, op.remote.kind, op.remote.rev, op.remote.content,
                            op.local.inode, op.local.size, op.local.mtime_ns)
        self.state.record_synced([(op.path, entry)])

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
            disk = self._disk(op.path, local)
            if _matches(disk, op.local):
                known[op.path] = UploadResult(disk, op.local.size, op.local.mtime_ns,
                                              list(there.manifest))
        return known

    def _remote(self, ops: list[p.Op], local: LocalTree, remote: RemoteTree,
                outcome: Outcome) -> None:
        batch = RemoteBatch(self, local, remote, outcome)
        uploads = [op for op in ops if isinstance(op, p.Upload)]
        uploaded = self._known_uploads(uploads, local, remote)
        uploads = [op for op in uploads if op.path not in uploaded]
        for op in uploads:
            self.live.start_transfer(op.path, op.local.size)
        try:
            results = (self.transfers.upload([self._disk(op.path, local) for op in uploads])
                       if uploads else [])
        finally:
            for op in uploads:
                self.live.finish_transfer(op.path)
        for op, result in zip(uploads, results, strict=True):
            if isinstance(result, Exception):
                outcome.problems[op.path] = describe(result) if isinstance(result, OSError) else str(result)
            else:
                uploaded[op.path] = result
        for op in sorted(ops, key=lambda op: (not isinstance(op, p.CreateRemoteFolder),
                                             op.path.count("/"), op.path)):
            batch.add(op, uploaded.get(op.path))
        batch.commit()


def _ordered_map(pool: ThreadPoolExecutor, work: Callable[[A], R], items: list[A],
                 ahead: int) -> Iterator[R]:
    """`pool.map` with at most `ahead` results waiting: memory stays bounded by the window."""
    window: deque[Future[R]] = deque()
    for item in items:
        window.append(pool.submit(work, item))
        if len(window) > ahead:
            yield window.popleft().result()
    while window:
        yield window.popleft().result()


def _batches(ops: list[p.Download]) -> list[list[p.Download]]:
    """Small downloads grouped: at most SMALL_BATCH files and SMALL_BATCH_BYTES per group."""
    groups: list[list[p.Download]] = [[]]
    size = 0
    for op in ops:
        if groups[-1] and (len(groups[-1]) >= SMALL_BATCH or size + op.remote.size > SMALL_BATCH_BYTES):
            groups.append([])
            size = 0
        groups[-1].append(op)
        size += op.remote.size
    return [group for group in groups if group]


def describe(exc: BaseException) -> str:
    """One line for a user about a failed local operation."""
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return "no space left on the disk: will retry"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "permission denied"
        return exc.strerror or str(exc)
    return str(exc)
