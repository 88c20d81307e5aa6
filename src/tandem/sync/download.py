"""Downloads into the sync folder: small files fetched by workers in batches and created by one
thread (temp files, one flush, renames re-checked one by one, one flush, then the records);
large files one by one (temp file, fsync, rename), copying the chunks the replaced file already
holds. A file appears only complete, and is recorded as synced only once that is durable."""

from __future__ import annotations

import errno
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from tandem.client.api import ClientError
from tandem.client.transfer import NEW_FILE_MODE, DownloadError, Transfers
from tandem.core.chunking import MIN_CHUNK, iter_chunk_views
from tandem.core.crypto import DecryptionError
from tandem.fileio import link_unnamed, sync_filesystem, write_temp_file, write_unnamed
from tandem.sync import planner as p
from tandem.sync.live import LiveStatus
from tandem.sync.localfs import FolderPaths, PreconditionFailed, describe, matches
from tandem.sync.manifests import RecentManifests
from tandem.sync.model import LocalEntry, LocalTree, SyncedEntry
from tandem.sync.state import StateDB

if TYPE_CHECKING:
    from tandem.sync.executor import Outcome

A = TypeVar("A")
R = TypeVar("R")
#: What open(2) answers where a filesystem cannot make unnamed files (O_TMPFILE).
_NO_UNNAMED = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL}
#: Files up to this size are downloaded in batches (few requests, two flushes per batch).
SMALL_FILE = 256 * 1024
SMALL_BATCH = 500
SMALL_BATCH_BYTES = 8 * 1024 * 1024


class Downloader:
    def __init__(self, paths: FolderPaths, state: StateDB, transfers: Transfers,
                 temp_dir: Path, live: LiveStatus, manifests: RecentManifests) -> None:
        self.paths = paths
        self.manifests = manifests
        self.root = paths.root
        self.state = state
        self.transfers = transfers
        self.temp_dir = temp_dir
        self.live = live
        #: Unnamed temp files (O_TMPFILE) work here, until the filesystem says otherwise.
        self._unnamed = hasattr(os, "O_TMPFILE")

    def run(self, ops: list[p.Download], local: LocalTree, outcome: Outcome) -> None:
        if not ops:
            return
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        small = [op for op in ops if op.remote.size <= SMALL_FILE]
        large = [op for op in ops if op.remote.size > SMALL_FILE]
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="tandem-download") as pool:
            # Workers fetch and decrypt; this thread alone creates files, since threads
            # creating files in one folder mostly wait on that folder's lock.
            batches = _batches(small)
            fetched = _ordered_map(pool, self._fetch_batch, batches, ahead=2)
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

    def _fetch_batch(self, batch: list[p.Download]) -> list[bytes | BaseException]:
        """The contents of a batch of small files, in few requests. Content that fails
        verification (a forged or swapped chunk) is one file's problem: the batch is then
        fetched file by file, so the others still arrive and each failure names its file."""
        for op in batch:
            self.live.start_transfer(op.path, op.remote.size)
        manifest = [entry for op in batch for entry in op.remote.manifest]
        try:
            chunks = iter(list(self.transfers.iter_content(manifest)))
        except (DecryptionError, DownloadError) as exc:
            if len(batch) == 1:
                return [exc]
            return [result for op in batch for result in self._fetch_batch([op])]
        except (ClientError, OSError) as exc:
            return [exc] * len(batch)
        return [b"".join(next(chunks) for _ in op.remote.manifest) for op in batch]

    def _place_small_files(self, batch: list[p.Download], contents: list[bytes | BaseException],
                           local: LocalTree, outcome: Outcome) -> None:
        """Temp files, one flush, renames (each re-checked just before), one flush, then the
        records: a file appears only complete, and is recorded only once that is durable. A
        new file's temp file has no name at all (`write_unnamed`) and is linked in: its
        writing is invisible to watchers (a daemon's own inotify would otherwise see five
        events per download), and a crash leaves nothing behind."""
        written: list[tuple[p.Download, Path | int]] = []
        try:
            for op, data in zip(batch, contents, strict=True):
                if isinstance(data, BaseException):
                    outcome.problems[op.path] = describe(data)
                    continue
                try:
                    written.append((op, self._write(op, data)))
                except PreconditionFailed:
                    pass  # the next pass looks again
                except OSError as exc:
                    outcome.problems[op.path] = describe(exc)
            if not written:
                return
            sync_filesystem(self.temp_dir)
            placed: list[tuple[str, os.stat_result, p.Download]] = []
            known_at = time.time_ns()
            for op, temp in written:
                try:
                    placed.append((op.path, self._place(op, temp, local), op))
                except PreconditionFailed:
                    pass
                except OSError as exc:
                    outcome.problems[op.path] = describe(exc)
        finally:
            for _, temp in written:
                if isinstance(temp, int):
                    os.close(temp)  # linked, or gone with its last descriptor
                else:
                    temp.unlink(missing_ok=True)
        if placed:
            sync_filesystem(self.root)
            self._record_downloads(placed, known_at)
            outcome.done += len(placed)
            outcome.bytes_downloaded += sum(op.remote.size for _, _, op in placed)

    def _write(self, op: p.Download, data: bytes) -> Path | int:
        """The content of one small download, not visible yet: an unnamed file in its folder
        (a new file, where the filesystem can) or a temp file in the state folder."""
        if op.expect is None and self._unnamed:
            target = self.root / op.path
            self.paths.check_inside(target)
            self.paths.make_folders(target.parent)
            try:
                return write_unnamed(target.parent, data, NEW_FILE_MODE, op.remote.mtime_ns)
            except OSError as exc:
                if exc.errno in _NO_UNNAMED:
                    self._unnamed = False
                elif exc.errno != errno.EMFILE:  # (a batch's descriptors past a low limit)
                    raise
        return write_temp_file(self.temp_dir, data, NEW_FILE_MODE, op.remote.mtime_ns)

    def _place(self, op: p.Download, temp: Path | int, local: LocalTree) -> os.stat_result:
        """Put a written download under its name, if its path is still as planned."""
        target = self.paths.disk(op.path, local) if op.expect else self.root / op.path
        self.paths.check_inside(target)
        if isinstance(temp, int):
            try:
                link_unnamed(temp, target)  # never over anything: a name taken is a change
            except FileExistsError:
                raise PreconditionFailed(op.path) from None
            return os.lstat(target)
        if not matches(target, op.expect):
            raise PreconditionFailed(op.path)
        self.paths.make_folders(target.parent)
        os.replace(temp, target)
        return os.lstat(target)

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
        target = self.paths.disk(op.path, local) if op.expect else self.root / op.path
        self.paths.check_inside(target)
        if not matches(target, op.expect):
            raise PreconditionFailed(op.path)
        self.paths.make_folders(target.parent)
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
            if not matches(target, op.expect):
                raise PreconditionFailed(op.path)
            known_at = time.time_ns()
            os.replace(temp_name, target)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        self._record_downloads([(op.path, os.lstat(target), op)], known_at)
        if op.remote.content is not None:  # the next version of this file can reuse its chunks
            self.manifests.remember(op.remote.content, list(op.remote.manifest))

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
        known = self.manifests.get(op.expect.content) if op.expect.content else None
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with open(fd, "rb") as old:
            offsets = _chunk_offsets(old, keys.chunk_id, {chunk_id for chunk_id, _ in manifest},
                                     known)
            fetched = iter(self.transfers.iter_content(
                [entry for entry in manifest if entry[0] not in offsets]))
            for chunk_id, size in manifest:
                if chunk_id not in offsets:
                    yield next(fetched)
                    continue
                old.seek(offsets[chunk_id])
                data = old.read(size)
                if len(data) != size or keys.chunk_id(data) != chunk_id:
                    if known is not None and op.expect.content:
                        self.manifests.forget(op.expect.content)  # next time: cut the file
                    raise PreconditionFailed(op.path)  # changed under us: the next pass
                yield data


def _chunk_offsets(old: BinaryIO, identify: Callable[[memoryview], str], wanted: set[str],
                   known: list[tuple[str, int]] | None) -> dict[str, int]:
    """Where each wanted chunk starts in the file being replaced: from its manifest when it is
    remembered (a daemon downloaded or scanned it), else by cutting the whole file. Either way
    each chunk is checked against its id as it is copied."""
    offsets: dict[str, int] = {}
    position = 0
    for chunk_id, size in known if known is not None else (
            (identify(chunk), len(chunk)) for chunk in iter_chunk_views(old)):
        if chunk_id in wanted:
            offsets.setdefault(chunk_id, position)
        position += size
    return offsets


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
